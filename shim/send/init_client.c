/* Load-time set-up of libproxyshim-client.so (the same configuration parser as the
 * receiving side, so the same variables fail the same way). */
#include "fdtable.h"
#include "inherit.h"
#include "log.h"
#include "real.h"
#include "send.h"
#include "send_udp.h"
#include "shim.h"

#include <errno.h>
#include <pthread.h>

static struct ps_config config;
static const struct ps_config *_Atomic active;

const struct ps_config *ps_send_active(void)
{
	return __atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

static bool takes(long n)
{
	return n == SYS_sendmmsg && ps_send_udp_on();
}

__attribute__((constructor)) static void ps_client_init(void)
{
	ps_load(&config);
	pthread_atfork(NULL, NULL, ps_fd_fork_child);
	if (!config.send_active)
		return;
	ps_log_init(&config);
	const char *first;  /* once per chain at info, as the receiving side */
	enum ps_log_level level = ps_chain_start(&first) ? PS_LOG_INFO : PS_LOG_DEBUG;
	ps_log(level, "client active in %s%s%s: %u destinations, PROXY v%u, proxyshim %s",
	       program_invocation_short_name, level == PS_LOG_DEBUG ? ", in the chain of pid " : "",
	       level == PS_LOG_DEBUG ? first : "", config.send_to.n, config.send_version, PS_VERSION);
	ps_send_init();
	__atomic_store_n(&active, &config, __ATOMIC_RELEASE);
	if (config.send_udp)
		ps_syscall_takes = takes;
}
