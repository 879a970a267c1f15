#include "acceptors.h"
#include "real.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Where this thread is counted while in the real accept: the word and the generation
 * it was counted in. Left set by a thread that did not return from accept. */
struct counted {
	_Atomic uint64_t *word;
	uint32_t gen;
};
static __thread __attribute__((tls_model("initial-exec"))) struct counted here;
static __thread __attribute__((tls_model("initial-exec"))) bool registered;

static pthread_key_t exit_key;
static bool have_key;

/* Counts the thread off, unless its word started a new generation since (or its count
 * is already 0: a fork child's copy). The record is taken in one instruction: a signal
 * handler that accepts meanwhile finds it taken, or takes it itself, never both. (A
 * handler that accepts while its thread is in accept can still leave a count one off,
 * which costs one wait at most: see ps_acceptors_doubt.) */
static void count_off(struct counted *c)
{
	uint32_t gen = c->gen;
	_Atomic uint64_t *w = __atomic_exchange_n(&c->word, NULL, __ATOMIC_RELAXED);
	if (!w)
		return;
	uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
	while ((uint32_t)(v >> 32) == gen && (uint32_t)v &&
	       !atomic_compare_exchange_weak_explicit(w, &v, v - 1, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

/* A thread that exits still counted (cancelled inside accept). */
static void at_exit(void *c)
{
	count_off(c);
}

void ps_acceptors_init(void)
{
	have_key = pthread_key_create(&exit_key, at_exit) == 0;
}

int ps_acceptors_accept(struct ps_acceptors *a, int lfd, struct sockaddr *sa, socklen_t *sl,
			int flags)
{
	count_off(&here);  /* left counted by a jump out of an earlier accept */
	if (!a)
		return real_accept4(lfd, sa, sl, flags);
	if (!registered)
		registered = have_key && pthread_setspecific(exit_key, &here) == 0;
	uint64_t v = atomic_fetch_add_explicit(&a->word, 1, memory_order_relaxed);
	here.gen = (uint32_t)(v >> 32);
	atomic_signal_fence(memory_order_seq_cst);
	__atomic_store_n(&here.word, &a->word, __ATOMIC_RELAXED);
	int fd = real_accept4(lfd, sa, sl, flags);
	count_off(&here);
	return fd;
}

unsigned ps_acceptors(struct ps_acceptors *a, uint64_t *word)
{
	*word = a ? atomic_load_explicit(&a->word, memory_order_relaxed) : 0;
	if (!a || *word == atomic_load_explicit(&a->doubted, memory_order_relaxed))
		return 0;
	return (uint32_t)*word;
}

void ps_acceptors_doubt(struct ps_acceptors *a, uint64_t word)
{
	atomic_store_explicit(&a->doubted, word, memory_order_relaxed);
}

void ps_acceptors_reset(struct ps_acceptors *a)
{
	uint64_t v = atomic_load_explicit(&a->word, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&a->word, &v, ((v >> 32) + 1) << 32,
						      memory_order_relaxed, memory_order_relaxed))
		;
}
