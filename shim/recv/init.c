/* Load-time set-up of libproxyshim.so: configuration, log, fork handling, inherited
 * sockets. */
#include "acceptors.h"
#include "inherit.h"
#include "keep.h"
#include "log.h"
#include "real.h"
#include "recv.h"
#include "udp.h"

#include <errno.h>
#include <pthread.h>

static struct ps_config config;
static const struct ps_config *_Atomic active;

const struct ps_config *ps_active(void)
{
	return __atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

static void fork_child(void)
{
	ps_fd_fork_child();
	ps_ready_fork_child();
	ps_accept_fork_child();
	ps_keep_init();
	if (ps_udp_on)
		ps_udp_fork_child();
}

static bool takes(long n)
{
	return n == SYS_sendmmsg || n == SYS_recvmmsg;
}

__attribute__((constructor)) static void ps_init(void)
{
	ps_load(&config);
	if (!config.active) {
		ps_inherit_init(NULL);
		return;
	}
	ps_log_init(&config);
	if (config.trusted.any)
		ps_log(PS_LOG_WARN, "PROXYSHIM_TRUSTED=*: headers are honoured from any source");
	/* Once per chain at info (a start script's every `sh -c` is noise there); each
	 * listener the shim applies to is announced at info when it appears. */
	const char *first;
	enum ps_log_level level = ps_chain_start(&first) ? PS_LOG_INFO : PS_LOG_DEBUG;
	ps_log(level, "active in %s%s%s: %u trusted networks, policy %s, timeout %u ms, proxyshim %s",
	       program_invocation_short_name, level == PS_LOG_DEBUG ? ", in the chain of pid " : "",
	       level == PS_LOG_DEBUG ? first : "", config.trusted.n,
	       config.policy == PS_POLICY_REQUIRE ? "require" : "optional", config.timeout_ms, PS_VERSION);
	ps_on_forget = ps_keep_forget;
	ps_acceptors_init();
	pthread_atfork(NULL, ps_accept_forked, fork_child);
	__atomic_store_n(&active, &config, __ATOMIC_RELEASE);
	if (config.udp_active) {
		ps_udp_init();
		ps_syscall_takes = takes;
		ps_log(level, "udp: mode %s, idle %u ms",
		       config.udp_first ? "first" : "every", config.udp_idle_ms);
	}
	ps_inherit_init(&config);
}
