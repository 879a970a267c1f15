/* Load-time set-up: resolve libc, parse the configuration (fail fast), open the log. */
#include "inherit.h"
#include "keep.h"
#include "log.h"
#include "real.h"
#include "shim.h"

#include <stdio.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static struct ps_config config;
static const struct ps_config *_Atomic active;

const struct ps_config *ps_active(void)
{
	return __atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

static const char *env(const char *name)
{
	return secure_getenv(name);
}

__attribute__((constructor)) static void ps_init(void)
{
	char err[400], line[480];
	ps_real_resolve();
	if (ps_config_parse(&config, env, err, sizeof(err)) < 0) {
		/* A security control never silently degrades: stop the process. */
		int n = snprintf(line, sizeof(line), "proxyshim: %s\n", err);
		if (write(2, line, (size_t)n) < 0) {}
		_exit(1);
	}
	if (!config.active) {
		ps_inherit_init(NULL);
		return;
	}
	ps_log_init(&config);
	if (config.trusted.any)
		ps_log(PS_LOG_WARN, "PROXYSHIM_TRUSTED=*: headers are honoured from any source");
	ps_log(PS_LOG_INFO, "active in %s: %u trusted networks, policy %s, timeout %u ms",
	       program_invocation_short_name, config.trusted.n,
	       config.policy == PS_POLICY_REQUIRE ? "require" : "optional", config.timeout_ms);
	ps_on_forget = ps_keep_forget;
	pthread_atfork(NULL, NULL, ps_keep_init);
	__atomic_store_n(&active, &config, __ATOMIC_RELEASE);
	ps_inherit_init(&config);
}
