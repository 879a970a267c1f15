/* The runtime's one lock and one clock, in both libraries.
 *
 * The lock is a spinlock tagged with its holder's thread. Hooks run in signal
 * handlers too, so the holder may be the very thread now asking: that is seen at
 * once and the caller is told no (waiting would never end). Another thread holding it
 * is waited for, bounded (spins, then yields). Every caller has a way on without it
 * (skip a table, fall back to the real call, doom a set for later). The one other
 * lock, the sending side's shared fork slots, lives in memory shared between
 * processes, so it is tagged with kernel thread ids instead (shim/send/send.c). */
#ifndef PS_LOCK_H
#define PS_LOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* A tag for the calling thread, never 0: the address of a thread-local (no system
 * call; distinct for every live thread). */
uintptr_t ps_thread_tag(void);

/* Waiting for another holder (of a lock, or of a slot of the fd table): whether to go
 * on waiting after *tries attempts (spinning, then yielding, then no). */
bool ps_wait_more(unsigned *tries);

struct ps_lock {
	_Atomic uintptr_t holder;  /* 0: free */
};

/* false: held by this thread (a signal handler interrupted it) or for too long. */
bool ps_lock(struct ps_lock *l);
void ps_unlock(struct ps_lock *l);

/* A fork child: a lock another thread held at fork is never released there. */
static inline void ps_lock_reset(struct ps_lock *l)
{
	__atomic_store_n(&l->holder, 0, __ATOMIC_RELAXED);
}

/* CLOCK_MONOTONIC in ns and ms; _coarse: the cheapest read, a few ms behind (for
 * idle times). */
static inline long long ps_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline long long ps_now_ms(void)
{
	return ps_now_ns() / 1000000;
}

static inline long long ps_now_ms_coarse(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A timeout of a call that may be resumed (readiness withdrawn, EINTR): the ms left. */
struct ps_deadline {
	bool forever;
	long long end_ns;
};

static inline void ps_deadline_start(struct ps_deadline *d, int timeout_ms)  /* < 0: forever */
{
	d->forever = timeout_ms < 0;
	d->end_ns = ps_now_ns() + (timeout_ms > 0 ? timeout_ms * 1000000LL : 0);
}

/* -1 forever, 0 expired; never 0 while time is left (rounded up). */
static inline int ps_deadline_left_ms(const struct ps_deadline *d)
{
	if (d->forever)
		return -1;
	long long left = d->end_ns - ps_now_ns();
	if (left <= 0)
		return 0;
	left = (left + 999999) / 1000000;
	return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

#endif
