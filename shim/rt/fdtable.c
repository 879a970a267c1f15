#include "fdtable.h"
#include "lock.h"
#include "real.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define LEAF_BITS 10
#define LEAF_SIZE (1u << LEAF_BITS)
#define WORDS (sizeof(struct ps_fdinfo) / sizeof(uint64_t))

_Static_assert(sizeof(struct ps_fdinfo) % sizeof(uint64_t) == 0, "entry is whole words");

/* state: the low 32 bits a sequence, odd while a writer is inside; the high 32 bits
 * that writer's thread tag (see me()). One word, so that a writer is never seen inside
 * without its tag (a signal handler on its thread must know it at once). */
struct slot {
	_Atomic uint64_t state;
	_Atomic uint64_t w[WORDS];
};

#define ODD(st) ((st) & 1)
#define OWNER(st) ((uint32_t)((st) >> 32))

_Static_assert(sizeof(struct slot) <= 64, "a slot fits a cache line");

static struct slot *_Atomic top[PS_FD_LIMIT / LEAF_SIZE];
static _Atomic unsigned leaves_end;  /* one past the highest leaf ever mapped */

/* fd's slot if its leaf is mapped: the data paths' lookup, inlined. */
static inline __attribute__((always_inline)) struct slot *slot_at(int fd)
{
	if ((unsigned)fd >= PS_FD_LIMIT)  /* negative ones too */
		return NULL;
	struct slot *leaf = atomic_load_explicit(&top[fd >> LEAF_BITS], memory_order_acquire);
	return leaf ? &leaf[fd & (LEAF_SIZE - 1)] : NULL;
}

static struct slot *slot_of(int fd, bool create)
{
	struct slot *s = slot_at(fd);
	if (s || !create || (unsigned)fd >= PS_FD_LIMIT)  /* negative ones too */
		return s;
	/* mmap, not malloc: safe in a signal handler and across fork. */
	void *m = mmap(NULL, LEAF_SIZE * sizeof(struct slot), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	struct slot *leaf = NULL, *fresh = m;
	if (atomic_compare_exchange_strong(&top[fd >> LEAF_BITS], &leaf, fresh)) {
		leaf = fresh;
		unsigned end = atomic_load(&leaves_end), mine = ((unsigned)fd >> LEAF_BITS) + 1;
		while (end < mine && !atomic_compare_exchange_weak(&leaves_end, &end, mine))
			;
	} else {
		munmap(m, LEAF_SIZE * sizeof(struct slot));
	}
	return &leaf[fd & (LEAF_SIZE - 1)];
}

/* A slot's writer, in the state word: the low bits of its thread tag (shim/rt/lock.h). */
static uint32_t me(void)
{
	return (uint32_t)ps_thread_tag() | 1;
}

/* Whether to wait on for a slot's writer: bounded as the runtime's lock, and never
 * for ourselves (a signal handler that interrupted this thread's own write would wait
 * for nothing). */
static bool wait_turn(uint64_t st, unsigned *tries)
{
	return OWNER(st) != me() && ps_wait_more(tries);
}

/* false if the slot stayed busy: the entry is then left as it is (a lookup's identity
 * check catches a stale one). */
static bool write_slot(struct slot *s, const struct ps_fdinfo *info)
{
	uint64_t w[WORDS];
	unsigned tries = 0;
	uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
	do {
		while (ODD(st)) {
			if (!wait_turn(st, &tries))
				return false;
			st = atomic_load_explicit(&s->state, memory_order_relaxed);
		}
	} while (!atomic_compare_exchange_weak_explicit(
		&s->state, &st, (uint64_t)me() << 32 | (uint32_t)(st + 1), memory_order_acquire,
		memory_order_relaxed));
	atomic_thread_fence(memory_order_release);
	memcpy(w, info, sizeof(w));
	for (size_t i = 0; i < WORDS; i++)
		atomic_store_explicit(&s->w[i], w[i], memory_order_relaxed);
	atomic_store_explicit(&s->state, (uint32_t)(st + 2), memory_order_release);
	return true;
}

/* One try at its first n words; false if a writer was inside or came by. */
static inline __attribute__((always_inline)) bool try_read(struct slot *s, uint64_t *w,
							  size_t n, uint64_t *seen)
{
	uint64_t before = atomic_load_explicit(&s->state, memory_order_acquire);
	for (size_t i = 0; i < n; i++)
		w[i] = atomic_load_explicit(&s->w[i], memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	*seen = atomic_load_explicit(&s->state, memory_order_relaxed);
	return !ODD(before) && before == *seen;
}

/* The tries after a first one failed: out of line, the common read stays short. */
static __attribute__((noinline)) bool read_retry(struct slot *s, uint64_t *w, size_t n,
						 uint64_t seen)
{
	unsigned tries = 0;
	while (wait_turn(seen, &tries))
		if (try_read(s, w, n, &seen))
			return true;
	return false;
}

/* Its first n words into out (the rest of out untouched), or zeros if no consistent
 * snapshot could be had; whether there is an entry. */
static inline __attribute__((always_inline)) bool get_words(int fd, struct ps_fdinfo *out,
							   size_t n)
{
	uint64_t w[WORDS], seen;
	struct slot *s = slot_at(fd);
	if (s && (try_read(s, w, n, &seen) || read_retry(s, w, n, seen)))
		memcpy(out, w, n * sizeof(uint64_t));
	else
		memset(out, 0, n * sizeof(uint64_t));
	return out->kind != PS_FD_NONE;
}

bool ps_fd_get(int fd, struct ps_fdinfo *out)
{
	return get_words(fd, out, WORDS);
}

_Static_assert(offsetof(struct ps_fdinfo, cookie) + sizeof(uint64_t) == 2 * sizeof(uint64_t),
	       "the head is the first two words");

bool ps_fd_get_head(int fd, struct ps_fdinfo *out)
{
	return get_words(fd, out, 2);
}

bool ps_fd_set(int fd, const struct ps_fdinfo *info)
{
	struct slot *s = slot_of(fd, true);
	return s && write_slot(s, info);
}

void ps_fd_clear(unsigned first, unsigned last)
{
	static const struct ps_fdinfo none;
	unsigned end = atomic_load(&leaves_end) * LEAF_SIZE;
	if (last >= end)
		last = end - 1;  /* nothing recorded beyond; end 0 makes the loop empty */
	for (unsigned fd = first; end && fd <= last; fd++) {
		struct slot *s = slot_at((int)fd);
		if (!s) {  /* no leaf: skip to the next one */
			fd |= LEAF_SIZE - 1;
			continue;
		}
		if (atomic_load_explicit(&s->w[0], memory_order_relaxed))
			write_slot(s, &none);
	}
}

void ps_fd_copy(int from, int to)
{
	struct ps_fdinfo info;
	if (ps_fd_get(from, &info) || ps_fd_get(to, &(struct ps_fdinfo){0}))
		ps_fd_set(to, &info);
}

void ps_fd_fork_child(void)
{
	static const struct ps_fdinfo none;
	unsigned end = atomic_load(&leaves_end);
	for (unsigned li = 0; li < end; li++) {
		struct slot *leaf = atomic_load(&top[li]);
		for (unsigned i = 0; leaf && i < LEAF_SIZE; i++) {
			uint64_t st = atomic_load(&leaf[i].state);
			if (ODD(st)) {  /* a write another thread had begun: drop the torn entry */
				atomic_store(&leaf[i].state, (uint32_t)(st + 1));
				write_slot(&leaf[i], &none);
			}
		}
	}
}

void ps_fd_each(void (*fn)(int fd, const struct ps_fdinfo *info, void *ctx), void *ctx)
{
	unsigned end = atomic_load(&leaves_end) * LEAF_SIZE;
	struct ps_fdinfo info;
	for (unsigned fd = 0; fd < end; fd++) {
		if (!slot_at((int)fd)) {
			fd |= LEAF_SIZE - 1;
			continue;
		}
		if (ps_fd_get((int)fd, &info))
			fn((int)fd, &info, ctx);
	}
}

uint64_t ps_fd_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	if (real_getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) < 0)
		return 0;
	return cookie;
}
