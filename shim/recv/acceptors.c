#include "acceptors.h"
#include "real.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define GEN_ONE ((uint64_t)1 << 32)

/* Where this thread is counted while in the real accept: its count and the generation
 * it was counted in. Left set by a thread that did not return from accept. */
struct counted {
	_Atomic uint64_t *count;
	uint32_t gen;
};
static __thread __attribute__((tls_model("initial-exec"))) struct counted here;
static __thread __attribute__((tls_model("initial-exec"))) bool registered;

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool have_key;

/* Counts the thread off, unless its count started anew since (or is already 0: a fork
 * child's copy). */
static void count_off(struct counted *c)
{
	if (!c->count)
		return;
	uint64_t v = atomic_load_explicit(c->count, memory_order_relaxed);
	while ((uint32_t)(v >> 32) == c->gen && (uint32_t)v &&
	       !atomic_compare_exchange_weak_explicit(c->count, &v, v - 1, memory_order_relaxed,
						      memory_order_relaxed))
		;
	c->count = NULL;
}

/* A thread that exits (cancelled inside accept, say) still counted. */
static void at_exit(void *c)
{
	count_off(c);
}

static void make_key(void)
{
	have_key = pthread_key_create(&exit_key, at_exit) == 0;
}

int ps_acceptors_accept(_Atomic uint64_t *count, int lfd, struct sockaddr *sa, socklen_t *sl,
			int flags)
{
	count_off(&here);  /* left counted by a jump out of an earlier accept */
	if (!count)
		return real_accept4(lfd, sa, sl, flags);
	if (!registered) {
		pthread_once(&exit_once, make_key);
		registered = have_key && pthread_setspecific(exit_key, &here) == 0;
	}
	uint64_t v = atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
	here = (struct counted){count, (uint32_t)(v >> 32)};
	int fd = real_accept4(lfd, sa, sl, flags);
	count_off(&here);
	return fd;
}

unsigned ps_acceptors(_Atomic uint64_t *count)
{
	return count ? (uint32_t)atomic_load_explicit(count, memory_order_relaxed) : 0;
}

void ps_acceptors_reset(_Atomic uint64_t *count)
{
	uint64_t v = atomic_load_explicit(count, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(count, &v, ((v >> 32) + 1) << 32,
						      memory_order_relaxed, memory_order_relaxed))
		;
}
