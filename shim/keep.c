#include "keep.h"
#include "consume.h"
#include "log.h"
#include "real.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>

#define SETS 64          /* listeners with kept connections per process */
#define KEPT_MAX 1024    /* kept connections per listener; the oldest goes first */
#define POLL_MAX 4096    /* larger poll arrays are passed through unchanged */
#define EXTRA_MAX 8      /* sets added to one poll/select call */

struct kept {
	int fd;
	long long deadline;  /* CLOCK_MONOTONIC, ms */
	uint64_t cookie;     /* fd's SO_COOKIE: checked before the shim touches fd again,
			      * since a close the hooks miss (fclose, a raw syscall) frees the
			      * number for the application's own files */
	struct ps_addr peer;
};

#define DOOMED -1       /* lfd1 of a set to destroy when its lock is released */

struct set {
	_Atomic int lfd1;    /* listener fd + 1; 0 when free; DOOMED */
	uint64_t lcookie;    /* the listener's SO_COOKIE: a socket that later takes its
			      * number never gets its connections */
	_Atomic int doom_closes_own;  /* DOOMED: its own descriptors are still open */
	atomic_flag lock;
	int family;
	int epfd, tfd;       /* the set's epoll instance and its deadline timer */
	unsigned n;
	struct kept *k;      /* KEPT_MAX entries */
};

static struct set sets[SETS];
static atomic_flag create_lock;
static _Atomic unsigned kept_total;  /* fast path: nothing kept anywhere */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Bounded: the holder may be this very thread, interrupted by a signal handler that
 * now closes the listener. Callers fall back (wait, skip, or doom the set). */
static bool lock(atomic_flag *f)
{
	for (unsigned tries = 0; atomic_flag_test_and_set_explicit(f, memory_order_acquire);) {
		if (++tries > 2000)
			return false;
		if (tries > 1000)
			sched_yield();
	}
	return true;
}

static void unlock(atomic_flag *f)
{
	atomic_flag_clear_explicit(f, memory_order_release);
}

static struct set *find(int lfd, uint64_t lcookie)
{
	for (int i = 0; i < SETS; i++)
		if (atomic_load(&sets[i].lfd1) == lfd + 1 && sets[i].lcookie == lcookie)
			return &sets[i];
	return NULL;
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

static void destroy(struct set *s, int close_own)
{
	for (unsigned i = 0; i < s->n; i++)
		close_kept(&s->k[i]);
	atomic_fetch_sub(&kept_total, s->n);
	if (close_own) {
		ps_fd_clear((unsigned)s->epfd, (unsigned)s->epfd);
		ps_fd_clear((unsigned)s->tfd, (unsigned)s->tfd);
		real_close(s->epfd);
		real_close(s->tfd);
	}
	munmap(s->k, KEPT_MAX * sizeof(struct kept));
	s->n = 0;
	atomic_store(&s->lfd1, 0);
}

/* Unlocks; a set doomed meanwhile (by a signal handler that found it locked) is
 * destroyed now. */
static void release(struct set *s)
{
	unlock(&s->lock);
	if (atomic_load(&s->lfd1) == DOOMED && lock(&s->lock)) {
		destroy(s, atomic_load(&s->doom_closes_own));
		unlock(&s->lock);
	}
}

/* Sets whose listener is gone without the hooks seeing it close (a raw syscall, or a
 * close racing a keep in another thread) are released: their connections can never
 * be accepted. Called under create_lock. */
static void sweep(void)
{
	for (int i = 0; i < SETS; i++) {
		struct set *s = &sets[i];
		int v = atomic_load(&s->lfd1);
		if (v > 0 && ps_fd_cookie(v - 1) != s->lcookie && lock(&s->lock)) {
			if (atomic_load(&s->lfd1) == v)
				destroy(s, 1);
			unlock(&s->lock);
		}
	}
}

static struct set *create(int lfd, uint64_t lcookie, int family)
{
	struct set *s = find(lfd, lcookie);
	if (s)
		return s;
	if (!lock(&create_lock))
		return NULL;
	if ((s = find(lfd, lcookie))) {  /* another thread was first */
		unlock(&create_lock);
		return s;
	}
	sweep();
	for (int i = 0; !s && i < SETS; i++)
		if (atomic_load(&sets[i].lfd1) == 0)
			s = &sets[i];
	struct epoll_event ev = {.events = EPOLLIN};
	void *k = s ? mmap(NULL, KEPT_MAX * sizeof(struct kept), PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
		    : MAP_FAILED;
	int epfd = k != MAP_FAILED ? epoll_create1(EPOLL_CLOEXEC) : -1;
	int tfd = epfd >= 0 ? timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC) : -1;
	ev.data.fd = tfd;
	if (tfd < 0 || real_epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev) < 0) {
		if (k != MAP_FAILED)
			munmap(k, KEPT_MAX * sizeof(struct kept));
		if (epfd >= 0)
			real_close(epfd);
		if (tfd >= 0)
			real_close(tfd);
		unlock(&create_lock);
		return NULL;  /* no set: the caller refuses the connection (logged) */
	}
	s->k = k;
	s->n = 0;
	s->family = family;
	s->epfd = epfd;
	s->tfd = tfd;
	s->lcookie = lcookie;
	ps_fd_set(epfd, &(struct ps_fdinfo){.kind = PS_FD_OWN});
	ps_fd_set(tfd, &(struct ps_fdinfo){.kind = PS_FD_OWN});
	atomic_flag_clear(&s->lock);
	atomic_store(&s->lfd1, lfd + 1);
	unlock(&create_lock);
	return s;
}

/* Arms the timer for the earliest deadline (disarms it when nothing is kept). */
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

/* Drops entry i without touching its descriptor. Also re-arms the timer: setting it
 * clears a pending expiry, which would otherwise keep the set (and so the
 * application's listener) readable with nothing to accept. */
static void forget_at(struct set *s, unsigned i)
{
	s->k[i] = s->k[--s->n];
	atomic_fetch_sub(&kept_total, 1);
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
	/* EPOLLEXCLUSIVE cannot apply to a nested epoll instance. */
	struct epoll_event nested = {.events = events & (EPOLLIN | EPOLLET | EPOLLONESHOT),
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
	li->sent &= ~PS_LISTENER_UNNESTED;
	ps_fd_set(lfd, li);
	return true;
}

int ps_keep_add(int lfd, struct ps_fdinfo *li, int fd, const struct ps_addr *peer)
{
	const struct ps_config *c = ps_active();
	struct set *s = create(lfd, li->cookie, li->family);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
	struct kept k = {.fd = fd, .deadline = now_ms() + c->timeout_ms, .cookie = ps_fd_cookie(fd),
			 .peer = *peer};
	if (!s || !k.cookie || ((li->sent & PS_LISTENER_UNNESTED) && !renest(lfd, li, s)) ||
	    !lock(&s->lock))
		return -1;
	if (atomic_load(&s->lfd1) != lfd + 1 || s->lcookie != li->cookie) {
		release(s);  /* the listener was closed meanwhile */
		return -1;
	}
	if (s->n == KEPT_MAX) {
		char pa[PS_ADDR_STRLEN];
		ps_addr_format(&s->k[0].peer, pa, sizeof(pa));
		ps_log_limited("proxy %s: %d connections already wait for their header; the "
			       "oldest is closed", pa, KEPT_MAX);
		struct kept old = s->k[0];
		remove_at(s, 0);
		close_kept(&old);
	}
	if (real_epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		release(s);
		return -1;
	}
	ps_fd_set(fd, &(struct ps_fdinfo){.kind = PS_FD_KEPT, .cookie = k.cookie});
	/* The shim's until handed over (kept() sets the caller's flag then): a program
	 * spawned meanwhile must not hold it open. */
	ps_real.fcntl(fd, F_SETFD, FD_CLOEXEC);
	s->k[s->n++] = k;
	atomic_fetch_add(&kept_total, 1);
	rearm(s);
	release(s);
	return 0;
}

static int index_of(const struct set *s, int fd)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->k[i].fd == fd)
			return (int)i;
	return -1;
}

/* Takes out one kept connection whose fate is decided: expired, or readable with the
 * header complete, bad, or the peer gone. -1 if none. Called with the set locked. */
static int decide_one(struct set *s, const struct ps_config *c, struct pp_header *h,
		      const char **why, enum ps_take *r, struct kept *out)
{
	struct epoll_event ev[16];
	long long now = now_ms();
	for (unsigned i = 0; i < s->n; i++) {
		if (s->k[i].deadline <= now) {
			int fd = s->k[i].fd;
			if (!still_ours(&s->k[i])) {
				lost_at(s, i--);
				continue;
			}
			*r = ps_try_header(fd, c, h, why, PS_TRY_KEPT | PS_TRY_EXPIRED);
			*out = s->k[i];
			remove_at(s, i);
			return fd;
		}
	}
	int m = REAL_LAZY(epoll_wait)(s->epfd, ev, 16, 0);  /* the real one: not an application wait */
	for (int j = 0; j < m; j++) {
		int fd = ev[j].data.fd, i = index_of(s, fd);
		uint64_t ticks;
		if (fd == s->tfd) {
			if (syscall(SYS_read, s->tfd, &ticks, sizeof(ticks)) < 0) {}
			continue;
		}
		if (i < 0)
			continue;
		if (!still_ours(&s->k[i])) {
			lost_at(s, (unsigned)i);
			continue;
		}
		int hup = ev[j].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR) ? PS_TRY_HUP : 0;
		*r = ps_try_header(fd, c, h, why, PS_TRY_KEPT | hup);
		if (*r == PS_TAKE_MORE)
			continue;
		*out = s->k[i];
		remove_at(s, (unsigned)i);
		return fd;
	}
	rearm(s);
	return -1;
}

int ps_keep_next(int lfd, const struct ps_fdinfo *li, const struct ps_config *c,
		 socklen_t room, struct ps_addr *client, bool *closed)
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
		if (!lock(&s->lock))
			return -1;
		/* Released (and perhaps reused) since find: not this listener's any more. */
		if (atomic_load(&s->lfd1) != lfd + 1 || s->lcookie != li->cookie) {
			release(s);
			return -1;
		}
		int fd = decide_one(s, c, &h, &why, &r, &k);
		release(s);
		if (fd < 0)
			return -1;
		/* Out of the set now: a close of that number by the application no longer
		 * reaches the shim's record. The entry is written for the kept socket's
		 * cookie and believed only if the number still is that socket after. */
		int got = ps_settle(fd, k.cookie, li->family, &k.peer, room, r, &h, why, client);
		if (!still_ours(&k)) {
			ps_fd_clear((unsigned)fd, (unsigned)fd);
			log_lost(fd);
			continue;
		}
		if (got >= 0) {
			if (!got)
				*client = k.peer;
			return fd;
		}
		ps_fd_clear((unsigned)fd, (unsigned)fd);
		real_close(fd);
		*closed = true;
	}
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
	if (!ps_fd_get(fd, &li) || li.kind != PS_FD_LISTENER || !li.selected)
		return;
	if (op == EPOLL_CTL_DEL) {
		if ((s = find(fd, li.cookie)))
			real_epoll_ctl(epfd, EPOLL_CTL_DEL, s->epfd, NULL);
		li.sent &= ~PS_LISTENER_WATCHED;  /* no longer watched there */
		ps_fd_set(fd, &li);
		return;
	}
	if (!ev)
		return;
	if ((s = create(fd, li.cookie, li.family)) &&
	    nest(epfd, op, s, ev->events, ev->data) == 0) {
		if ((li.sent & PS_LISTENER_UNNESTED) || !(li.sent & PS_LISTENER_WATCHED)) {
			li.sent = (li.sent & ~PS_LISTENER_UNNESTED) | PS_LISTENER_WATCHED;
			ps_fd_set(fd, &li);
		}
		return;
	}
	/* Not nested (EMFILE, ENOMEM…): the application could not hear of a kept
	 * connection. Remembered, to be tried again when one needs keeping. */
	li.sent |= PS_LISTENER_UNNESTED | PS_LISTENER_WATCHED;
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

void ps_keep_forget(unsigned first, unsigned last)
{
	for (int i = 0; i < SETS; i++) {
		struct set *s = &sets[i];
		int v = atomic_load(&s->lfd1);
		unsigned lfd1 = (unsigned)v;
		if (v <= 0)
			continue;
		int own = (unsigned)s->epfd >= first && (unsigned)s->epfd <= last;
		own |= (unsigned)s->tfd >= first && (unsigned)s->tfd <= last;
		/* The listener closed, or the application closed our descriptors: either
		 * way the set cannot work any more. */
		bool dead = (lfd1 - 1 >= first && lfd1 - 1 <= last) || own;
		if (lock(&s->lock)) {
			if (atomic_load(&s->lfd1) != v)
				;  /* released meanwhile */
			else if (dead)
				destroy(s, !own);
			else
				drop_closed(s, first, last);
			unlock(&s->lock);
		} else if (dead) {  /* held by the code this signal handler interrupted */
			atomic_store(&s->doom_closes_own, !own);
			atomic_store(&s->lfd1, DOOMED);
		}
		/* Not dead and locked by the interrupted code: its kept connections among
		 * the closed numbers are caught by their identity when next looked at. */
	}
}

/* The set of a watched listener that holds kept connections, or NULL. */
static struct set *watched(int fd)
{
	struct ps_fdinfo li;
	if (fd < 0 || !ps_fd_get(fd, &li) || li.kind != PS_FD_LISTENER)
		return NULL;
	struct set *s = find(fd, li.cookie);
	return s && s->n ? s : NULL;
}

int ps_keep_poll(struct pollfd *fds, nfds_t n, ps_poll_call call, void *ctx)
{
	struct set *extra[EXTRA_MAX];
	nfds_t owner[EXTRA_MAX];
	unsigned m = 0;
	if (!atomic_load_explicit(&kept_total, memory_order_relaxed) || n > POLL_MAX)
		return call(fds, n, ctx);
	for (nfds_t i = 0; i < n && m < EXTRA_MAX; i++) {
		if ((fds[i].events & POLLIN) && (extra[m] = watched(fds[i].fd)))
			owner[m++] = i;
	}
	if (!m)
		return call(fds, n, ctx);
	struct pollfd all[n + m];
	memcpy(all, fds, n * sizeof(*fds));
	for (unsigned j = 0; j < m; j++)
		all[n + j] = (struct pollfd){.fd = extra[j]->epfd, .events = POLLIN};
	int r = call(all, n + m, ctx);
	if (r <= 0)
		return r;
	for (unsigned j = 0; j < m; j++) {
		struct pollfd *o = &all[owner[j]];
		if (!(all[n + j].revents & POLLIN))
			continue;
		r--;  /* ours */
		if (!o->revents)
			r++;  /* the listener becomes ready instead */
		o->revents |= POLLIN;
	}
	memcpy(fds, all, n * sizeof(*fds));
	return r;
}

int ps_keep_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, ps_select_call call,
		   void *ctx)
{
	struct set *extra[EXTRA_MAX];
	int owner[EXTRA_MAX];
	unsigned m = 0;
	int top = nfds;
	if (!atomic_load_explicit(&kept_total, memory_order_relaxed) || !rd)
		return call(nfds, rd, wr, ex, ctx);
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE && m < EXTRA_MAX; fd++) {
		if (FD_ISSET(fd, rd) && (extra[m] = watched(fd)) && extra[m]->epfd < FD_SETSIZE) {
			owner[m++] = fd;
			FD_SET(extra[m - 1]->epfd, rd);
			if (extra[m - 1]->epfd >= top)
				top = extra[m - 1]->epfd + 1;
		}
	}
	int r = call(top, rd, wr, ex, ctx);
	for (unsigned j = 0; r > 0 && j < m; j++) {
		if (!FD_ISSET(extra[j]->epfd, rd))
			continue;
		FD_CLR(extra[j]->epfd, rd);
		r--;
		if (!FD_ISSET(owner[j], rd) && !(wr && FD_ISSET(owner[j], wr)) &&
		    !(ex && FD_ISSET(owner[j], ex)))
			r++;
		FD_SET(owner[j], rd);
	}
	for (unsigned j = 0; r <= 0 && j < m; j++)
		FD_CLR(extra[j]->epfd, rd);
	return r;
}

void ps_keep_init(void)
{
	/* In a fork child: the kept connections are the parent's to serve; drop our
	 * copies (and the sets' descriptors) so that closing them there really closes. */
	for (int i = 0; i < SETS; i++) {
		if (atomic_load(&sets[i].lfd1)) {
			atomic_flag_clear(&sets[i].lock);
			destroy(&sets[i], 1);
		}
	}
	atomic_flag_clear(&create_lock);
}
