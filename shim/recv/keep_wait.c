#include "keep_wait.h"
#include "keep.h"
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* The descriptor of listener fd's set when it holds kept connections, else -1. */
static int set_of(int fd)
{
	struct ps_fdinfo li;
	if (!ps_fd_get(fd, &li) || li.kind != PS_FD_LISTENER)
		return -1;
	return ps_keep_fd(fd, &li);
}

/* Room for the arguments of one extended call, taken in up to two pieces: on the stack
 * while they fit, else each mapped (nothing is kept between calls: a signal handler's
 * own poll never shares it, and no memory stays behind). */
struct scratch {
	size_t used;               /* of the stack */
	unsigned maps;
	void *map[2];
	size_t len[2];
	_Alignas(16) unsigned char stack[2048];
};

static void scratch_init(struct scratch *sc)
{
	sc->used = 0;
	sc->maps = 0;
}

static void *scratch_get(struct scratch *sc, size_t len)
{
	len = (len + 15) & ~(size_t)15;
	if (len <= sizeof(sc->stack) - sc->used) {
		sc->used += len;
		return sc->stack + sc->used - len;
	}
	if (sc->maps == 2)
		return NULL;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	sc->map[sc->maps] = p;
	sc->len[sc->maps++] = len;
	return p;
}

static void scratch_put(struct scratch *sc)
{
	for (unsigned i = 0; i < sc->maps; i++)
		munmap(sc->map[i], sc->len[i]);
}

/* An entry that may watch a listener with kept connections: listeners' numbers lie in
 * the span, connections' mostly do not, so a large array costs a compare per entry. */
static bool in_span(const struct pollfd *f, int lo, int hi)
{
	return (f->events & (POLLIN | POLLRDNORM)) && f->fd >= lo && f->fd <= hi;
}

/* Puts the m set descriptors in entries of 'all' (n of them, the caller's copy) whose
 * fd is negative, which the kernel skips: for an array as long as RLIMIT_NOFILE allows,
 * where appending fails with EINVAL. pos[j]: where extra j went, n when it found no
 * room (that listener then hears of its kept connections at the next accept). */
static void borrow(struct pollfd *all, nfds_t n, nfds_t m, nfds_t *pos)
{
	nfds_t free = 0;
	for (nfds_t j = 0; j < m; j++) {
		while (free < n && all[free].fd >= 0)
			free++;
		pos[j] = free;
		if (free < n)
			all[free++] = all[n + j];
	}
}

int ps_keep_poll(struct pollfd *fds, nfds_t n, ps_poll_call call, void *ctx)
{
	struct scratch sc;
	int lo, hi, sfd;
	nfds_t c = 0, m = 0;
	if (!n || n > (SIZE_MAX / 4) / sizeof(struct pollfd) || !ps_keep_span(&lo, &hi))
		return call(fds, n, ctx);
	/* Entries that may watch a listener with kept connections, counted for the room;
	 * each is looked up once, below: another thread keeping or handing over meanwhile
	 * changes which ones have sets, never how many can. */
	for (nfds_t i = 0; i < n; i++)
		c += in_span(&fds[i], lo, hi);
	if (!c)
		return call(fds, n, ctx);
	/* The caller's entries, one per watched listener, then for each of those its
	 * listener's index and where its own entry went. */
	scratch_init(&sc);
	struct pollfd *all = scratch_get(&sc, (n + c) * sizeof(*all) + 2 * c * sizeof(nfds_t));
	if (!all) {  /* no memory: kept connections are still decided at the next accept */
		ps_log_limited("poll: no memory to add %lu descriptors' kept connections",
			       (unsigned long)n);
		return call(fds, n, ctx);
	}
	nfds_t *owner = (nfds_t *)(all + n + c), *pos = owner + c;
	for (nfds_t i = 0; i < n && m < c; i++) {
		if (in_span(&fds[i], lo, hi) && (sfd = set_of(fds[i].fd)) >= 0) {
			owner[m] = i;
			pos[m] = n + m;
			all[n + m++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		}
	}
	if (!m) {
		scratch_put(&sc);
		return call(fds, n, ctx);
	}
	memcpy(all, fds, n * sizeof(*fds));
	nfds_t total = n + m;
	int r = call(all, total, ctx);
	if (r < 0 && errno == EINVAL) {  /* more entries than RLIMIT_NOFILE */
		borrow(all, n, m, pos);
		total = n;
		r = call(all, total, ctx);
	}
	for (nfds_t j = 0; r > 0 && j < m; j++) {
		if (pos[j] >= total || !all[pos[j]].revents)
			continue;
		r--;  /* ours, whatever it reports */
		struct pollfd *o = &all[owner[j]];
		if (!(all[pos[j]].revents & POLLIN))
			continue;
		if (!o->revents)
			r++;  /* the listener becomes ready instead, as it was asked */
		o->revents |= o->events & (POLLIN | POLLRDNORM);
	}
	for (nfds_t j = 0; total == n && j < m; j++)  /* borrowed entries given back */
		if (pos[j] < n)
			all[pos[j]] = (struct pollfd){.fd = fds[pos[j]].fd,
						      .events = fds[pos[j]].events};
	if (r >= 0)
		memcpy(fds, all, n * sizeof(*fds));
	scratch_put(&sc);
	return r;
}
/* fd_set bits beyond FD_SETSIZE: select() takes any nfds with bitmaps that large. */
#define WORD_BITS (8 * sizeof(unsigned long))
#define WORDS(nbits) (((size_t)(nbits) + WORD_BITS - 1) / WORD_BITS)

static bool bit_get(const unsigned long *b, int fd)
{
	return b[(unsigned)fd / WORD_BITS] >> ((unsigned)fd % WORD_BITS) & 1;
}

static void bit_set(unsigned long *b, int fd)
{
	b[(unsigned)fd / WORD_BITS] |= 1ul << ((unsigned)fd % WORD_BITS);
}

/* The bits of a bitmap's last word below nfds. */
static unsigned long last_mask(int nfds)
{
	return nfds % WORD_BITS ? (1ul << (nfds % WORD_BITS)) - 1 : ~0ul;
}

/* A copy of the caller's bitmap of nfds bits, widened to 'words' words. Bits at nfds
 * and above are dropped: the caller's call would not look at them, the extended one
 * would. */
static unsigned long *widen(unsigned long *to, const fd_set *from, int nfds, size_t words)
{
	if (!from)
		return NULL;
	memset(to, 0, words * sizeof(*to));
	memcpy(to, from, WORDS(nfds) * sizeof(*to));
	to[WORDS(nfds) - 1] &= last_mask(nfds);
	return to;
}

int ps_keep_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, ps_select_call call,
		   void *ctx)
{
	struct scratch sc;
	int lo, hi, sfd;
	if (!rd || nfds <= 0 || !ps_keep_span(&lo, &hi))
		return call(nfds, rd, wr, ex, ctx);
	hi = hi < nfds ? hi : nfds - 1;
	/* The bits that may watch a listener with kept connections, counted for the room
	 * of the pairs (listener, set descriptor); each is looked up once, below. */
	const unsigned long *in = (const unsigned long *)rd;
	size_t c = 0, m = 0;
	for (int fd = lo; fd <= hi; fd++)
		c += bit_get(in, fd);
	if (!c)
		return call(nfds, rd, wr, ex, ctx);
	scratch_init(&sc);
	int *pair = scratch_get(&sc, 2 * c * sizeof(int)), top = nfds;
	for (int fd = lo; pair && fd <= hi && m < c; fd++) {
		if (bit_get(in, fd) && (sfd = set_of(fd)) >= 0) {
			pair[2 * m] = fd;
			pair[2 * m++ + 1] = sfd;
			if (sfd >= top)
				top = sfd + 1;
		}
	}
	if (pair && !m) {
		scratch_put(&sc);
		return call(nfds, rd, wr, ex, ctx);
	}
	/* Three bitmaps up to the highest set descriptor, which may lie beyond nfds. */
	size_t words = WORDS(top);
	unsigned long *r2 = pair ? scratch_get(&sc, 3 * words * sizeof(long)) : NULL;
	if (!r2) {
		scratch_put(&sc);
		ps_log_limited("select: no memory to add kept connections (%d descriptors)", nfds);
		return call(nfds, rd, wr, ex, ctx);
	}
	unsigned long *w2 = widen(r2 + words, wr, nfds, words);
	unsigned long *e2 = widen(r2 + 2 * words, ex, nfds, words);
	widen(r2, rd, nfds, words);
	for (size_t j = 0; j < m; j++)
		bit_set(r2, pair[2 * j + 1]);
	int r = call(top, (fd_set *)r2, (fd_set *)w2, (fd_set *)e2, ctx);
	for (size_t j = 0; r > 0 && j < m; j++) {
		int lfd = pair[2 * j];
		if (!bit_get(r2, pair[2 * j + 1]))
			continue;
		r--;  /* ours */
		if (!bit_get(r2, lfd) && !(w2 && bit_get(w2, lfd)) && !(e2 && bit_get(e2, lfd)))
			r++;  /* the listener becomes ready instead */
		bit_set(r2, lfd);
	}
	if (r >= 0) {
		/* Only the caller's nfds bits go back; set descriptors above them are ours. */
		size_t back = WORDS(nfds);
		unsigned long mask = last_mask(nfds);
		r2[back - 1] &= mask;
		if (w2)
			w2[back - 1] &= mask;
		if (e2)
			e2[back - 1] &= mask;
		for (size_t j = 0; j < m; j++)
			if (pair[2 * j + 1] < nfds)
				r2[(unsigned)pair[2 * j + 1] / WORD_BITS] &=
					~(1ul << ((unsigned)pair[2 * j + 1] % WORD_BITS));
		memcpy(rd, r2, back * sizeof(long));
		if (wr)
			memcpy(wr, w2, back * sizeof(long));
		if (ex)
			memcpy(ex, e2, back * sizeof(long));
	}
	scratch_put(&sc);
	return r;
}

