/* Receiving-side configuration: parsed once from the environment, then read-only. */
#ifndef PS_CONFIG_H
#define PS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include "cidr.h"

enum ps_policy { PS_POLICY_REQUIRE, PS_POLICY_OPTIONAL };
enum ps_untrusted { PS_UNTRUSTED_PASS, PS_UNTRUSTED_REJECT };
enum ps_local { PS_LOCAL_REAL, PS_LOCAL_HEADER };
enum ps_log_target { PS_LOG_STDERR, PS_LOG_SYSLOG, PS_LOG_FILE };
enum ps_log_level { PS_LOG_ERROR, PS_LOG_WARN, PS_LOG_INFO, PS_LOG_DEBUG };

#define PS_PATH_MAX 4096

struct ps_config {
	bool active;                 /* PROXYSHIM_TRUSTED is set */
	struct ps_netlist trusted;
	enum ps_policy policy;
	enum ps_untrusted untrusted;
	unsigned timeout_ms;
	struct ps_portset ports;
	enum ps_local local;
	enum ps_log_target log_target;
	char log_path[PS_PATH_MAX];
	enum ps_log_level log_level;
};

/* Looks a variable up; NULL when unset. The library passes secure_getenv. */
typedef const char *(*ps_getenv_fn)(const char *name);

/* Parses every receiving variable. Returns 0, or -1 with err holding the one-line
 * message: PROXYSHIM_X: "value": what is wrong. */
int ps_config_parse(struct ps_config *c, ps_getenv_fn get, char *err, size_t errlen);

#endif
