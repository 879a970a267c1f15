/* Load-time set-up of libproxyshim-client.so (the same configuration parser as the
 * receiving side, so the same variables fail the same way). */
#include "fdtable.h"
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
	ps_log(PS_LOG_INFO, "client active in %s: %u destinations, PROXY v%u",
	       program_invocation_short_name, config.send_to.n, config.send_version);
	ps_send_init();
	__atomic_store_n(&active, &config, __ATOMIC_RELEASE);
	if (config.send_udp)
		ps_syscall_takes = takes;
}
