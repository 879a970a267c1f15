/* Configuration of both libraries: parsed once from the environment, then read-only. */
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
enum ps_send_source { PS_SOURCE_LOCAL, PS_SOURCE_ACCEPTED, PS_SOURCE_FIXED };

/* PROXYSHIM_CHAIN: put by the exec hooks (shim/rt/hooks_exec.c) into a child's environment when it is missing,
 * holding the PID of the program that started the chain. Only the log reads it: the
 * first program of a chain (a wrapper script, `sh -c`, a start script) says at info
 * that the shim is active, the programs it starts say so at debug. A forged, stale or
 * lost value changes nothing but that line's level. */
#define PS_CHAIN_VAR "PROXYSHIM_CHAIN"

#define PS_PATH_MAX 4096
#define PS_KEEP_MAX_LIMIT 1000000   /* PROXYSHIM_KEEP_MAX: kept connections per listener */
#define PS_UDP_FLOWS_LIMIT 1000000  /* PROXYSHIM_UDP_FLOWS: flows per UDP socket */

struct ps_config {
	bool active;                 /* PROXYSHIM_TRUSTED is set */
	struct ps_netlist trusted;
	enum ps_policy policy;
	enum ps_untrusted untrusted;
	unsigned timeout_ms;
	unsigned keep_max;           /* connections kept waiting for a header, per listener */
	struct ps_portset ports;
	enum ps_local local;
	enum ps_log_target log_target;
	char log_path[PS_PATH_MAX];
	enum ps_log_level log_level;

	/* UDP, receiving side: off unless PROXYSHIM_UDP_PORTS is set. */
	bool udp_active;
	struct ps_portset udp_ports;
	bool udp_first;              /* PROXYSHIM_UDP_MODE=first */
	unsigned udp_idle_ms;
	unsigned udp_flows;          /* flows remembered per socket */

	/* Sending side (libproxyshim-client.so). */
	bool send_active;            /* PROXYSHIM_SEND_TO is set */
	struct ps_netlist send_to;
	unsigned send_version;       /* 1 or 2 */
	enum ps_send_source send_source;
	struct ps_addr send_fixed;   /* PS_SOURCE_FIXED */
	bool send_udp;               /* PROXYSHIM_SEND_UDP=every */
};

/* Looks a variable up; NULL when unset. The library passes secure_getenv. */
typedef const char *(*ps_getenv_fn)(const char *name);

/* Parses every PROXYSHIM_* variable, both sides (each library uses its own part). Returns 0, or -1 with err holding the one-line
 * message: PROXYSHIM_X: "value": what is wrong. */
int ps_config_parse(struct ps_config *c, ps_getenv_fn get, char *err, size_t errlen);

#endif
