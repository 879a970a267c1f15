#include "lock.h"

#include <sched.h>

/* Spins first (a holder on another CPU is out in microseconds), then yields (a
 * holder that was preempted needs the CPU); after both, the caller goes on without. */
#define SPINS 1000u
#define YIELDS 100000u

uintptr_t ps_thread_tag(void)
{
	static __thread __attribute__((tls_model("initial-exec"))) char tag;
	return (uintptr_t)&tag;
}

bool ps_wait_more(unsigned *tries)
{
	if (++*tries <= SPINS)
		return true;
	if (*tries > SPINS + YIELDS)
		return false;
	sched_yield();
	return true;
}

bool ps_lock(struct ps_lock *l)
{
	uintptr_t me = ps_thread_tag();
	for (unsigned tries = 0;;) {
		uintptr_t cur = 0;
		if (__atomic_compare_exchange_n(&l->holder, &cur, me, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return true;
		if (cur == me || !ps_wait_more(&tries))
			return false;  /* never wait for this thread itself */
	}
}

void ps_unlock(struct ps_lock *l)
{
	__atomic_store_n(&l->holder, 0, __ATOMIC_RELEASE);
}
