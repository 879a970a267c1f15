/* Load-time set-up of libproxyshim-client.so: resolve libc, parse the configuration
 * (the same parser as the receiving side, so the same variables fail the same way). */
#include "log.h"
#include "real.h"
#include "send.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static struct ps_config config;
static const struct ps_config *_Atomic active;

const struct ps_config *ps_send_active(void)
{
	return __atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

static const char *env(const char *name)
{
	return secure_getenv(name);
}

__attribute__((constructor)) static void ps_client_init(void)
{
	char err[400], line[480];
	ps_real_resolve();
	if (ps_config_parse(&config, env, err, sizeof(err)) < 0) {
		int n = snprintf(line, sizeof(line), "proxyshim: %s\n", err);
		if (write(2, line, (size_t)n) < 0) {}
		_exit(1);
	}
	if (!config.send_active)
		return;
	ps_log_init(&config);
	ps_log(PS_LOG_INFO, "client active in %s: %u destinations, PROXY v%u",
	       program_invocation_short_name, config.send_to.n, config.send_version);
	__atomic_store_n(&active, &config, __ATOMIC_RELEASE);
}
