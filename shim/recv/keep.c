#include "keep.h"
#include "acceptors.h"
#include "lock.h"
#include "consume.h"
#include "log.h"
#include "real.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>

/* A set lives in a slot indexed by its listener's fd number, in pages mapped on demand:
 * any number of listeners, found in constant time. Pages are never unmapped, so a
 * pointer to a slot stays valid after its set is released. */
#define PAGE_SETS 1024u
#define PAGES (PS_FD_LIMIT / PAGE_SETS)
#define KEPT_FIRST 16         /* entries of a set's first array; it doubles up to the
			       * configured bound (PROXYSHIM_KEEP_MAX) */
#define KEPT_SHRINK 256       /* an emptied array at least this large is given back */
#define READY_MAX 16          /* events taken from a set's epoll instance at once */
#define TIMER_TAG 0           /* the timer's event data; a kept socket's is its cookie */

struct kept {
	int fd;
	long long deadline;  /* CLOCK_MONOTONIC, ms */
	uint64_t cookie;     /* fd's SO_COOKIE, never 0: its events in the set carry it, and
			      * it is checked before the shim closes or hands over fd, since
			      * a close the hooks miss (fclose, a raw syscall) frees the number
			      * for the application's own files */
	struct ps_addr peer;
	bool nonblock;       /* as accepted (O_NONBLOCK) */
	bool lowat;          /* SO_RCVLOWAT left raised (part of the header came) */
};

#define DOOMED -1       /* lfd1 of a set to destroy when its lock is released */

struct set {
	_Atomic int lfd1;    /* listener fd + 1; 0 when free; DOOMED */
	uint64_t lcookie;    /* the listener's SO_COOKIE: a socket that later takes its
			      * number never gets its connections */
	_Atomic int doom_closes;      /* DOOMED: which of its own descriptors (OWN_*) are
				       * still open, to close */
	struct ps_lock lock;
	int family;
	int epfd, tfd;       /* the set's epoll instance and its deadline timer */
	unsigned n, cap;
	struct kept *k;      /* cap entries, mmap'd (NULL when cap is 0) */
	/* Events of the set's last epoll_wait not yet looked at: one wait serves the
	 * accepts of every connection it found decided. Kept sockets are registered
	 * level-triggered, so one dropped here is reported again. Each event carries its
	 * socket's cookie (0: the timer), so one cached for a socket since gone never
	 * applies to another that takes its number. */
	unsigned next, nready;
	struct epoll_event ready[READY_MAX];
	struct ps_acceptors accepting;  /* ps_keep_acceptors: in use whether or not a set is */
};

static struct set *_Atomic pages[PAGES];
static _Atomic unsigned top_page;    /* pages above it were never mapped */
static struct ps_lock create_lock;
static _Atomic unsigned kept_total;  /* fast path: nothing kept anywhere */
static unsigned live_sets, sweep_at = 64;  /* under create_lock */
/* Every listener with a set has its number in [span_lo, span_hi] (ps_keep_span): widened
 * when a set is made, narrowed to the sets in use when they are swept, both under
 * create_lock. */
static _Atomic int span_lo = INT_MAX, span_hi = -1;


/* Locks are shim/rt/lock.h's: one held by this very thread (a signal handler interrupted
 * the holder) is refused at once; callers fall back (wait, skip, or doom the set). */

/* lfd's slot; NULL beyond the table, or when its page was never mapped and 'map' is
 * false (or mapping fails). mmap, not malloc: safe in a signal handler. */
static struct set *slot(int lfd, bool map)
{
	if (lfd < 0 || (unsigned)lfd >= PS_FD_LIMIT)
		return NULL;
	unsigned pg = (unsigned)lfd / PAGE_SETS;
	struct set *p = atomic_load_explicit(&pages[pg], memory_order_acquire);
	if (!p && map) {
		struct set *m = mmap(NULL, PAGE_SETS * sizeof(struct set), PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		if (atomic_compare_exchange_strong(&pages[pg], &p, m))
			p = m;
		else
			munmap(m, PAGE_SETS * sizeof(struct set));
		for (unsigned t = atomic_load(&top_page); t <= pg;)
			if (atomic_compare_exchange_weak(&top_page, &t, pg + 1))
				break;
	}
	return p ? &p[(unsigned)lfd % PAGE_SETS] : NULL;
}

/* Calls fn on every mapped slot ('all') or every set in use, with its lfd1. */
static void each_slot(bool all, void (*fn)(struct set *s, int v, void *ctx), void *ctx)
{
	unsigned top = atomic_load(&top_page);
	for (unsigned pg = 0; pg < top; pg++) {
		struct set *p = atomic_load_explicit(&pages[pg], memory_order_acquire);
		for (unsigned i = 0; p && i < PAGE_SETS; i++) {
			int v = atomic_load(&p[i].lfd1);
			if (v || all)
				fn(&p[i], v, ctx);
		}
	}
}

static void each_set(void (*fn)(struct set *s, int v, void *ctx), void *ctx)
{
	each_slot(false, fn, ctx);
}

static struct set *find(int lfd, uint64_t lcookie)
{
	struct set *s = slot(lfd, false);
	return s && atomic_load(&s->lfd1) == lfd + 1 && s->lcookie == lcookie ? s : NULL;
}

/* Whether kept connection k is still the socket the shim kept under its number. */
static bool still_ours(const struct kept *k)
{
	return ps_fd_cookie(k->fd) == k->cookie;
}

/* Closes a kept connection that is still the shim's; a number the application has
 * reused is left alone. */
static void close_kept(const struct kept *k)
{
	if (still_ours(k)) {
		ps_fd_clear((unsigned)k->fd, (unsigned)k->fd);
		real_close(k->fd);
	}
}

/* A set's array is given back only once the set no longer points at it, and its count
 * drops before that: a fork child that copied the set while another thread was
 * changing it (drop_parents) finds, at every point, an array mapped with room for the
 * entries it counts. */
static void free_array(struct set *s)
{
	struct kept *k = s->k;
	size_t len = s->cap * sizeof(struct kept);
	s->k = NULL;
	s->cap = 0;
	atomic_thread_fence(memory_order_release);
	if (k)
		munmap(k, len);
}

/* Called with s locked, or unreachable. */
#define OWN_EPFD 1
#define OWN_TFD 2
#define OWN_BOTH (OWN_EPFD | OWN_TFD)

static void close_own(int fd)
{
	ps_fd_clear((unsigned)fd, (unsigned)fd);
	real_close(fd);
}

/* 'close': which of the set's own descriptors are still its to close (OWN_*): one the
 * application closed is not closed again. */
static void destroy(struct set *s, int close)
{
	unsigned n = s->n;
	for (unsigned i = 0; i < n; i++)
		close_kept(&s->k[i]);
	s->n = s->next = s->nready = 0;
	atomic_fetch_sub(&kept_total, n);
	if (close & OWN_EPFD)
		close_own(s->epfd);
	if (close & OWN_TFD)
		close_own(s->tfd);
	free_array(s);
	atomic_store(&s->lfd1, 0);
}

/* Unlocks; a set doomed meanwhile (by a signal handler that found it locked) is
 * destroyed now. */
static void release(struct set *s)
{
	ps_unlock(&s->lock);
	if (atomic_load(&s->lfd1) == DOOMED && ps_lock(&s->lock)) {
		destroy(s, atomic_load(&s->doom_closes));
		ps_unlock(&s->lock);
	}
}

struct swept {
	unsigned live;  /* sets in use */
	int lo, hi;     /* the span of their listeners' numbers */
};

/* A set whose listener is gone without the hooks seeing it close (a raw syscall, or a
 * close racing a keep in another thread) is released: its connections can never be
 * accepted. */
static void sweep_one(struct set *s, int v, void *ctx)
{
	struct swept *w = ctx;
	if (v > 0 && ps_fd_cookie(v - 1) != s->lcookie && ps_lock(&s->lock)) {
		if (atomic_load(&s->lfd1) == v)
			destroy(s, OWN_BOTH);
		ps_unlock(&s->lock);
	}
	if ((v = atomic_load(&s->lfd1)) == 0)
		return;
	w->live++;
	if (v > 0) {  /* a doomed set is never found again: outside the span */
		w->lo = v - 1 < w->lo ? v - 1 : w->lo;
		w->hi = v - 1 > w->hi ? v - 1 : w->hi;
	}
}

/* Under create_lock, when the sets in use doubled since the last sweep: amortized
 * constant per set created, whatever the number of listeners. */
static void sweep(void)
{
	if (++live_sets < sweep_at)
		return;
	struct swept w = {0, INT_MAX, -1};
	each_set(sweep_one, &w);
	atomic_store(&span_lo, w.lo);
	atomic_store(&span_hi, w.hi);
	live_sets = w.live;
	sweep_at = w.live * 2 > 64 ? w.live * 2 : 64;
}

/* The set of listener lfd (identified by lcookie), made if it has none. A set lives
 * as long as its listener (only its array is given back when it empties): another
 * thread may be polling its descriptor, and a number closed under it could be the
 * application's next socket, whose readiness would pass for the listener's. */
static struct set *create(int lfd, uint64_t lcookie, int family)
{
	struct set *s = find(lfd, lcookie);
	if (s)
		return s;
	if (!ps_lock(&create_lock))
		return NULL;
	if ((s = find(lfd, lcookie))) {  /* made meanwhile */
		ps_unlock(&create_lock);
		return s;
	}
	if (!(s = slot(lfd, true))) {
		ps_unlock(&create_lock);
		return NULL;
	}
	/* The number held another listener whose close the hooks missed. */
	if (atomic_load(&s->lfd1) && ps_lock(&s->lock)) {
		if (atomic_load(&s->lfd1))
			destroy(s, OWN_BOTH);
		ps_unlock(&s->lock);
	}
	if (atomic_load(&s->lfd1)) {  /* locked by an interrupted thread */
		ps_unlock(&create_lock);
		return NULL;
	}
	sweep();
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	int tfd = epfd >= 0 ? timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC) : -1;
	if (tfd < 0 || real_epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev) < 0) {
		if (epfd >= 0)
			real_close(epfd);
		if (tfd >= 0)
			real_close(tfd);
		live_sets--;
		ps_unlock(&create_lock);
		return NULL;  /* no set: the caller refuses the connection (logged) */
	}
	s->k = NULL;
	s->n = s->cap = s->next = s->nready = 0;
	s->family = family;
	s->epfd = epfd;
	s->tfd = tfd;
	s->lcookie = lcookie;
	ps_fd_set(epfd, &(struct ps_fdinfo){.kind = PS_FD_OWN});
	ps_fd_set(tfd, &(struct ps_fdinfo){.kind = PS_FD_OWN});
	ps_lock_reset(&s->lock);
	if (lfd < atomic_load(&span_lo))
		atomic_store(&span_lo, lfd);
	if (lfd > atomic_load(&span_hi))
		atomic_store(&span_hi, lfd);
	atomic_store(&s->lfd1, lfd + 1);
	ps_unlock(&create_lock);
	return s;
}

/* Room for one more entry: the array doubles up to the bound. false: at the bound (or
 * out of memory). Called with s locked. */
static bool grow(struct set *s, unsigned bound)
{
	if (s->n < s->cap)
		return true;
	if (s->cap >= bound)
		return false;
	unsigned cap = s->cap ? s->cap * 2 : KEPT_FIRST;
	if (cap > bound)
		cap = bound;
	struct kept *k = mmap(NULL, cap * sizeof(struct kept), PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (k == MAP_FAILED)
		return false;
	struct kept *old = s->k;
	size_t len = s->cap * sizeof(struct kept);
	if (s->n)
		memcpy(k, old, s->n * sizeof(struct kept));
	s->k = k;
	s->cap = cap;
	atomic_thread_fence(memory_order_release);  /* see free_array */
	if (old)
		munmap(old, len);
	return true;
}

/* Arms the timer for the earliest deadline (disarms it when nothing is kept). The timer
 * is only ever armed for a time at or before every kept deadline (all share one
 * timeout, so an added one is never the earliest): set when the first connection is
 * kept, when it fired, and disarmed when the last one leaves. Removing another entry
 * leaves it be: at worst it fires early once and is set again. */
static void rearm(struct set *s)
{
	long long first = 0;
	struct itimerspec its = {0};
	for (unsigned i = 0; i < s->n; i++)
		if (!first || s->k[i].deadline < first)
			first = s->k[i].deadline;
	its.it_value.tv_sec = first / 1000;
	its.it_value.tv_nsec = (first % 1000) * 1000000 + (first ? 1 : 0);
	timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Drops entry i without touching its descriptor. The last one disarms the timer:
 * that also clears a pending expiry, which would otherwise keep the set (and so the
 * application's listener) readable with nothing to accept. */
static void forget_at(struct set *s, unsigned i)
{
	s->k[i] = s->k[--s->n];
	atomic_fetch_sub(&kept_total, 1);
	if (!s->n)
		rearm(s);
}

/* Takes entry i (still the shim's socket) out of the set. */
static void remove_at(struct set *s, unsigned i)
{
	real_epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->k[i].fd, NULL);
	forget_at(s, i);
}

static void log_lost(int fd)
{
	ps_log(PS_LOG_WARN, "fd %d: a connection kept for its header was closed by the "
	       "application; forgotten", fd);
}

/* Entry i's descriptor was closed behind the shim's back and its number may be the
 * application's now: forgotten, never read, closed or unregistered by number. */
static void lost_at(struct set *s, unsigned i)
{
	log_lost(s->k[i].fd);
	forget_at(s, i);
}

/* Nests set s into the application's epoll instance with the listener's event data,
 * as registered there (so it takes the event for its listener). */
static int nest(int epfd, int op, struct set *s, uint32_t events, epoll_data_t data)
{
	/* EPOLLEXCLUSIVE cannot apply to a nested epoll instance. A ready one reports
	 * EPOLLIN and EPOLLRDNORM but wakes its watchers for EPOLLIN only: a listener
	 * watched for EPOLLRDNORM alone gets EPOLLIN with it. */
	uint32_t in = events & (EPOLLIN | EPOLLRDNORM) ? EPOLLIN | (events & EPOLLRDNORM) : 0;
	struct epoll_event nested = {.events = in | (events & (EPOLLET | EPOLLONESHOT)),
				     .data = data};
	int first = op == EPOLL_CTL_ADD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	if (real_epoll_ctl(epfd, first, s->epfd, &nested) == 0 ||
	    real_epoll_ctl(epfd, first == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
			   s->epfd, &nested) == 0)
		return 0;
	return -1;
}

/* A listener whose set could not be nested when the application registered it (no
 * descriptor for the set then): tried again now that a connection needs keeping, in
 * the same epoll instance, once a no-op EPOLL_CTL_MOD of the listener there proves it is
 * still registered in it. One-shot and exclusive registrations are not re-armed that
 * way: their connections are refused. */
static bool renest(int lfd, struct ps_fdinfo *li, struct set *s)
{
	struct epoll_event same = {.events = li->reg.events, .data.u64 = li->reg.data};
	if ((li->reg.events & (EPOLLONESHOT | EPOLLEXCLUSIVE)) ||
	    real_epoll_ctl(li->reg.epfd, EPOLL_CTL_MOD, lfd, &same) < 0 ||
	    nest(li->reg.epfd, EPOLL_CTL_ADD, s, same.events, same.data) < 0)
		return false;
	li->lflags &= ~PS_LISTENER_UNNESTED;
	ps_fd_set(lfd, li);
	return true;
}

/* The entry kept longest (the earliest deadline: all share one timeout). */
static unsigned oldest(const struct set *s)
{
	unsigned o = 0;
	for (unsigned i = 1; i < s->n; i++)
		if (s->k[i].deadline < s->k[o].deadline)
			o = i;
	return o;
}

/* A kept socket's registration in its set: level-triggered, tagged with its cookie (see
 * struct set). */
static int watch(struct set *s, const struct kept *k)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = k->cookie};
	return real_epoll_ctl(s->epfd, EPOLL_CTL_ADD, k->fd, &ev);
}

static int index_of(const struct set *s, int fd)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->k[i].fd == fd)
			return (int)i;
	return -1;
}

static int index_of_cookie(const struct set *s, uint64_t cookie)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->k[i].cookie == cookie)
			return (int)i;
	return -1;
}

int ps_keep_add(int lfd, struct ps_fdinfo *li, int fd, const struct ps_addr *peer, int how)
{
	const struct ps_config *c = ps_active();
	struct kept k = {.fd = fd, .deadline = ps_now_ms() + c->timeout_ms, .cookie = ps_fd_cookie(fd),
			 .peer = *peer, .nonblock = how & PS_KEEP_NONBLOCK,
			 .lowat = how & PS_KEEP_LOWAT};
	struct set *s = create(lfd, li->cookie, li->family);
	if (!s || !k.cookie || ((li->lflags & PS_LISTENER_UNNESTED) && !renest(lfd, li, s)) ||
	    !ps_lock(&s->lock))
		return -1;
	if (atomic_load(&s->lfd1) != lfd + 1 || s->lcookie != li->cookie) {
		release(s);  /* the listener was closed meanwhile */
		return -1;
	}
	/* An entry with this number is one whose socket was closed behind the shim's back
	 * (a new socket has the number now): forgotten, so that no two share a number and
	 * a removal from the set proves the one entry it can be. */
	int stale = index_of(s, fd);
	if (stale >= 0)
		lost_at(s, (unsigned)stale);
	if (!grow(s, c->keep_max)) {
		if (!s->n) {
			release(s);
			return -1;
		}
		unsigned o = oldest(s);
		char pa[PS_ADDR_STRLEN];
		ps_addr_format(&s->k[o].peer, pa, sizeof(pa));
		ps_log_limited("proxy %s: %u connections already wait for their header "
			       "(PROXYSHIM_KEEP_MAX); the oldest is closed", pa, s->n);
		struct kept old = s->k[o];
		remove_at(s, o);
		close_kept(&old);
	}
	if (watch(s, &k) < 0) {
		release(s);
		return -1;
	}
	ps_fd_set(fd, &(struct ps_fdinfo){.kind = PS_FD_KEPT, .cookie = k.cookie});
	/* The shim's until handed over (kept() sets the caller's flag then): a program
	 * spawned meanwhile must not hold it open. */
	if (!(how & PS_KEEP_CLOEXEC))
		real_fcntl(fd, F_SETFD, FD_CLOEXEC);
	s->k[s->n++] = k;
	atomic_fetch_add(&kept_total, 1);
	if (s->n == 1)
		rearm(s);
	release(s);
	return 0;
}

/* Takes out one kept connection whose fate is decided: expired, or readable with the
 * header complete, bad, or the peer gone. -1 if none. Called with the set locked. */
static int decide_one(struct set *s, const struct ps_config *c, struct pp_header *h,
		      const char **why, enum ps_take *r, struct kept *out)
{
	long long now = ps_now_ms();
	for (unsigned i = 0; i < s->n; i++) {
		if (s->k[i].deadline <= now) {
			int fd = s->k[i].fd;
			if (!still_ours(&s->k[i])) {
				lost_at(s, i--);
				continue;
			}
			*r = ps_try_header(fd, c, h, why, PS_TRY_KEPT | PS_TRY_EXPIRED, NULL);
			*out = s->k[i];
			remove_at(s, i);
			return fd;
		}
	}
	bool fired = false;
	/* More waits while each returned a full batch: the connections in one may all
	 * still lack part of their header (watched again, not ready), with a decided one
	 * behind them, whose readiness would not wake an edge-triggered caller again. */
	for (unsigned waits = 0;;) {
		if (s->next >= s->nready) {
			if ((waits && s->nready < READY_MAX) || waits > s->n / READY_MAX + 1)
				break;
			waits++;  /* the real one: not an application wait */
			int m = real_epoll_wait(s->epfd, s->ready, READY_MAX, 0);
			s->next = 0;
			s->nready = m > 0 ? (unsigned)m : 0;
			if (!s->nready)
				break;
			continue;
		}
		struct epoll_event e = s->ready[s->next++];
		uint64_t ticks;
		if (e.data.u64 == TIMER_TAG) {
			if (real_read(s->tfd, &ticks, sizeof(ticks)) < 0) {}
			fired = true;
			continue;
		}
		int i = index_of_cookie(s, e.data.u64);
		if (i < 0)
			continue;  /* decided or forgotten since the wait */
		int fd = s->k[i].fd;
		/* Taken out of the set first. That also proves the number is still the
		 * socket kept: the registration is found only for the very file it was
		 * made with, and a close the hooks missed removed it (or the number now
		 * holds another file). Such a number may be the application's: forgotten,
		 * never read. */
		if (real_epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL) < 0) {
			lost_at(s, (unsigned)i);
			continue;
		}
		bool raised;
		int hup = e.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR) ? PS_TRY_HUP : 0;
		*r = ps_try_header(fd, c, h, why, (s->k[i].lowat ? PS_TRY_KEPT : 0) | hup, &raised);
		if (*r == PS_TAKE_MORE) {  /* part of the header: watched again */
			s->k[i].lowat = raised;
			if (watch(s, &s->k[i]) < 0) {  /* cannot be watched: decided now */
				s->k[i].deadline = now;
				rearm(s);
			}
			continue;
		}
		*out = s->k[i];
		forget_at(s, (unsigned)i);
		if (fired && s->n)
			rearm(s);
		return fd;
	}
	if (fired)
		rearm(s);
	return -1;
}

/* Called with s locked when its last kept connection left: a large array is given
 * back (the set itself lives as long as its listener: see create). */
static void emptied(struct set *s)
{
	if (s->cap >= KEPT_SHRINK)
		free_array(s);
}

int ps_keep_next(int lfd, const struct ps_fdinfo *li, const struct ps_config *c,
		 socklen_t room, struct ps_addr *client, bool *closed, bool *nonblock)
{
	struct set *s;
	if (!atomic_load_explicit(&kept_total, memory_order_relaxed) ||
	    !(s = find(lfd, li->cookie)))
		return -1;
	for (;;) {
		struct pp_header h;
		const char *why = NULL;
		enum ps_take r;
		struct kept k;
		if (!ps_lock(&s->lock))
			return -1;
		/* Released (and perhaps reused) since find: not this listener's any more. */
		if (atomic_load(&s->lfd1) != lfd + 1 || s->lcookie != li->cookie) {
			release(s);
			return -1;
		}
		unsigned had = s->n;
		int fd = decide_one(s, c, &h, &why, &r, &k);
		if (had && !s->n)
			emptied(s);
		release(s);
		if (fd < 0)
			return -1;
		/* Out of the set now (which proved the number still held it then): a close
		 * of that number by the application no longer reaches the shim's record.
		 * The entry is written for the kept socket's cookie and believed only if the
		 * number still is that socket after; only then is it closed or returned. */
		int got = ps_settle(fd, k.cookie, li->family, &k.peer, room, r, &h, why, client);
		if (!still_ours(&k)) {
			ps_fd_clear((unsigned)fd, (unsigned)fd);
			log_lost(fd);
			continue;
		}
		if (got >= 0) {
			if (!got)
				*client = k.peer;
			*nonblock = k.nonblock;
			return fd;
		}
		ps_fd_clear((unsigned)fd, (unsigned)fd);
		real_close(fd);
		*closed = true;
	}
}

struct ps_acceptors *ps_keep_acceptors(int lfd)
{
	struct set *s = slot(lfd, true);
	return s ? &s->accepting : NULL;
}

bool ps_keep_span(int *lo, int *hi)
{
	if (!atomic_load_explicit(&kept_total, memory_order_relaxed))
		return false;
	*lo = atomic_load(&span_lo);
	*hi = atomic_load(&span_hi);
	return *lo <= *hi;
}

int ps_keep_fd(int lfd, const struct ps_fdinfo *li)
{
	struct set *s;
	if (!atomic_load_explicit(&kept_total, memory_order_relaxed) ||
	    !(s = find(lfd, li->cookie)) || !s->n)
		return -1;
	return s->epfd;
}

void ps_keep_epoll(int epfd, int op, int fd, const struct epoll_event *ev)
{
	struct ps_fdinfo li;
	struct set *s;
	if (!ps_fd_get(fd, &li) || li.kind != PS_FD_LISTENER || !li.applies)
		return;
	if (op == EPOLL_CTL_DEL) {
		if ((s = find(fd, li.cookie)))
			real_epoll_ctl(epfd, EPOLL_CTL_DEL, s->epfd, NULL);
		li.lflags &= ~PS_LISTENER_WATCHED;  /* no longer watched there */
		ps_fd_set(fd, &li);
		return;
	}
	if (!ev)
		return;
	/* The registration is remembered either way: a fork child nests its own set into
	 * the instance it inherited (ps_keep_init), and one not nested now (EMFILE,
	 * ENOMEM…) is tried again when a connection needs keeping. */
	bool nested = (s = create(fd, li.cookie, li.family)) &&
		      nest(epfd, op, s, ev->events, ev->data) == 0;
	li.lflags = (nested ? li.lflags & ~PS_LISTENER_UNNESTED
			    : li.lflags | PS_LISTENER_UNNESTED) | PS_LISTENER_WATCHED;
	li.reg.epfd = epfd;
	li.reg.events = ev->events;
	li.reg.data = ev->data.u64;
	ps_fd_set(fd, &li);
}

/* Kept connections of s among fds first..last, which the application is closing:
 * the close is its to make (and its numbers its to reuse). Called with s locked. */
static void drop_closed(struct set *s, unsigned first, unsigned last)
{
	for (unsigned i = 0; i < s->n; i++) {
		if ((unsigned)s->k[i].fd >= first && (unsigned)s->k[i].fd <= last)
			forget_at(s, i--);
	}
}

struct range {
	unsigned first, last;
};

static void forget_one(struct set *s, int v, void *ctx)
{
	const struct range *r = ctx;
	unsigned lfd1 = (unsigned)v;
	if (v <= 0)
		return;
	int closed = ((unsigned)s->epfd >= r->first && (unsigned)s->epfd <= r->last ? OWN_EPFD : 0) |
		     ((unsigned)s->tfd >= r->first && (unsigned)s->tfd <= r->last ? OWN_TFD : 0);
	bool own = closed != 0;
	/* The listener closed, or the application closed our descriptors: either way the
	 * set cannot work any more. */
	bool dead = (lfd1 - 1 >= r->first && lfd1 - 1 <= r->last) || own;
	if (ps_lock(&s->lock)) {
		if (atomic_load(&s->lfd1) != v)
			;  /* released meanwhile */
		else if (dead)
			destroy(s, OWN_BOTH & ~closed);
		else
			drop_closed(s, r->first, r->last);
		ps_unlock(&s->lock);
	} else if (dead) {  /* held by the code this signal handler interrupted */
		atomic_store(&s->doom_closes, OWN_BOTH & ~closed);
		atomic_store(&s->lfd1, DOOMED);
	}
	/* Not dead and locked by the interrupted code: its kept connections among the
	 * closed numbers are caught by their identity when next looked at. */
}

/* The counts of threads in accept on numbers first..last start anew: a thread still
 * blocked on the socket a number named is not counted for the next one. */
static void acceptors_anew(unsigned first, unsigned last)
{
	unsigned top = atomic_load(&top_page) * PAGE_SETS;
	for (unsigned fd = first; fd <= last && fd < top; fd++) {
		struct set *s = slot((int)fd, false);
		if (s)
			ps_acceptors_reset(&s->accepting);
		else
			fd |= PAGE_SETS - 1;  /* a page never mapped: the next one */
	}
}

void ps_keep_acceptors_anew(int lfd)
{
	if (lfd >= 0)
		acceptors_anew((unsigned)lfd, (unsigned)lfd);
}

void ps_keep_forget(unsigned first, unsigned last)
{
	each_set(forget_one, &(struct range){first, last});
	acceptors_anew(first, last);
}

/* In a fork child: every set is consistent (free_array), even one another thread was
 * changing at fork, so it is destroyed as the parent would: its kept connections that
 * are still the sockets kept and its descriptors are closed. */
static void drop_parents(struct set *s, int v, void *ctx)
{
	(void)v;
	(void)ctx;
	ps_lock_reset(&s->lock);
	destroy(s, OWN_BOTH);
}

/* A listener the parent registered in an epoll instance the child inherits: the
 * child's own set is nested there when it first keeps a connection (renest). */
static void renest_later(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)ctx;
	if (info->kind == PS_FD_LISTENER && (info->lflags & PS_LISTENER_WATCHED)) {
		struct ps_fdinfo li = *info;
		li.lflags |= PS_LISTENER_UNNESTED;
		ps_fd_set(fd, &li);
	}
}

static void no_acceptors(struct set *s, int v, void *ctx)
{
	(void)v;
	(void)ctx;
	ps_acceptors_reset(&s->accepting);
}

void ps_keep_init(void)
{
	/* In a fork child: the kept connections are the parent's to serve; drop our
	 * copies (and the sets' descriptors) so that closing them there really closes.
	 * No other thread is in accept here. */
	each_set(drop_parents, NULL);
	ps_fd_each(renest_later, NULL);
	/* Nothing is kept here now. The count is set, not left to the drops: a set copied
	 * while another thread destroyed or emptied it may count entries already counted
	 * off, and dropping them again would wrap the count below zero. */
	atomic_store(&kept_total, 0);
	atomic_store(&span_lo, INT_MAX);
	atomic_store(&span_hi, -1);
	each_slot(true, no_acceptors, NULL);
	ps_lock_reset(&create_lock);
	live_sets = 0;
	sweep_at = 64;
}
