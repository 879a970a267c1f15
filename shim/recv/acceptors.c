#include "acceptors.h"
#include "real.h"

#include <pthread.h>
#include <stdatomic.h>

/* Where this thread is counted while in the real accept: the word and the generation
 * it was counted in. Left set by a thread that did not return from accept. */
struct counted {
	_Atomic uint64_t *word;
	uint32_t gen;
};
static __thread __attribute__((tls_model("initial-exec"))) struct counted here;
static __thread __attribute__((tls_model("initial-exec"))) bool registered;
/* Counted by ps_acceptors_claim, for the accept that follows it. */
static __thread __attribute__((tls_model("initial-exec"))) bool claimed;
/* The slot's doubts when this thread was counted: a doubt made since is wrong if this
 * thread takes a connection. */
static __thread __attribute__((tls_model("initial-exec"))) uint32_t seen;

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

void ps_acceptors_settle(void)
{
	claimed = false;
	if (__atomic_load_n(&here.word, __ATOMIC_RELAXED))
		count_off(&here);  /* left counted by a jump out of an earlier accept */
}

/* Records that this thread was counted in a's word v - 1 -> v. */
static void record(struct ps_acceptors *a, uint64_t v)
{
	if (!registered)
		registered = have_key && pthread_setspecific(exit_key, &here) == 0;
	here.gen = (uint32_t)(v >> 32);
	seen = atomic_load_explicit(&a->doubts, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	__atomic_store_n(&here.word, &a->word, __ATOMIC_RELAXED);
}

bool ps_acceptors_claim(struct ps_acceptors *a, uint64_t word)
{
	if (!a)
		return true;
	ps_acceptors_settle();
	if (!atomic_compare_exchange_strong_explicit(&a->word, &word, word + 1,
						     memory_order_relaxed, memory_order_relaxed))
		return false;
	record(a, word + 1);
	claimed = true;
	return true;
}

int ps_acceptors_accept(struct ps_acceptors *a, int lfd, struct sockaddr *sa, socklen_t *sl,
			int flags)
{
	bool mine = claimed && a && __atomic_load_n(&here.word, __ATOMIC_RELAXED) == &a->word;
	if (!mine) {
		ps_acceptors_settle();
		if (!a)
			return real_accept4(lfd, sa, sl, flags);
		record(a, atomic_fetch_add_explicit(&a->word, 1, memory_order_relaxed) + 1);
	}
	claimed = false;
	int fd = real_accept4(lfd, sa, sl, flags);
	count_off(&here);
	/* Counted before a doubt and took a connection: the doubt was wrong. */
	if (fd >= 0 && atomic_load_explicit(&a->doubts, memory_order_relaxed) != seen)
		atomic_store_explicit(&a->doubted, 0, memory_order_relaxed);
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
	uint32_t d = atomic_fetch_add_explicit(&a->doubts, 1, memory_order_relaxed) + 1;
	if (claimed && __atomic_load_n(&here.word, __ATOMIC_RELAXED) == &a->word)
		seen = d;  /* the doubter's own accept proves nothing */
}

void ps_acceptors_reset(struct ps_acceptors *a)
{
	/* Read first: most numbers have nobody counted and nothing doubted, and a fork
	 * child or a close_range need not write (nor dirty) their pages. */
	uint64_t v = atomic_load_explicit(&a->word, memory_order_relaxed);
	while ((uint32_t)v &&
	       !atomic_compare_exchange_weak_explicit(&a->word, &v, ((v >> 32) + 1) << 32,
						      memory_order_relaxed, memory_order_relaxed))
		;
	if (atomic_load_explicit(&a->doubted, memory_order_relaxed))
		atomic_store_explicit(&a->doubted, 0, memory_order_relaxed);
}
