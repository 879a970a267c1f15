/* Receiving-side interposers: each forwards to one shared mechanism. Internal code
 * calls only real_* functions, never these public names. */
#include "inherit.h"
#include "keep.h"
#include "keep_wait.h"
#include "log.h"
#include "real.h"
#include "recv.h"
#include "udp.h"

#include <errno.h>


PS_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
	return ps_accept(fd, addr, alen, 0);
}

PS_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	return ps_accept(fd, addr, alen, flags);
}

/* getpeername and getsockname name the header's endpoints: a header deferred at load
 * is taken first, waiting up to its deadline whatever the socket's mode. */
static void named_use(int fd)
{
	int saved = errno;
	ps_inherit_first_use(fd, true);
	errno = saved;
}

PS_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *alen)
{
	struct ps_fdinfo ci;
	named_use(fd);
	if (addr && alen && ps_conn(fd, &ci))
		return ps_report(addr, alen, &ci.src, ci.family);
	if (addr && alen && ps_udp_get(fd, &ci) && ci.udp_flags & PS_UDP_CONNECTED_MAPPED)
		return ps_report(addr, alen, &ci.src, ci.family);
	return real_getpeername(fd, addr, alen);
}

PS_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *alen)
{
	struct ps_fdinfo ci;
	const struct ps_config *c = ps_active();
	named_use(fd);
	if (c && c->local == PS_LOCAL_HEADER && addr && alen && ps_conn(fd, &ci))
		return ps_report(addr, alen, &ci.dst, ci.family);
	return real_getsockname(fd, addr, alen);
}

/* ---- listeners and readiness: kept connections (shim/recv/keep.h) ---- */

/* A socket that was listening already (a new backlog for one it was handed) is not one
 * the application makes now. */
PS_EXPORT int listen(int fd, int backlog)
{
	const struct ps_config *c = ps_active();
	struct ps_fdinfo li;
	int was = 1;
	socklen_t wl = sizeof(was);
	bool fresh = c && real_getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &was, &wl) == 0 && !was;
	int r = real_listen(fd, backlog);
	if (r == 0 && c) {
		int saved = errno;
		ps_listener_note(fd, c, fresh, &li);
		errno = saved;
	}
	return r;
}

PS_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	int r = real_epoll_ctl(epfd, op, fd, ev);
	if (r == 0 && ps_active()) {
		int saved = errno;
		ps_keep_epoll(epfd, op, fd, ev);
		if (ps_udp_on)
			ps_udp_epoll(epfd, op, fd, ev);
		errno = saved;
	}
	return r;
}

struct poll_args {
	int timeout;
	const struct timespec *ts;
	const sigset_t *mask;
	struct timeval *tv;
};

static int call_poll(struct pollfd *fds, nfds_t n, void *ctx)
{
	return real_poll(fds, n, ((struct poll_args *)ctx)->timeout);
}

static int call_ppoll(struct pollfd *fds, nfds_t n, void *ctx)
{
	struct poll_args *a = ctx;
	return real_ppoll(fds, n, a->ts, a->mask);
}

static int call_select(int nfds, fd_set *r, fd_set *w, fd_set *e, void *ctx)
{
	return real_select(nfds, r, w, e, ((struct poll_args *)ctx)->tv);
}

static int call_pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, void *ctx)
{
	struct poll_args *a = ctx;
	return real_pselect(nfds, r, w, e, a->ts, a->mask);
}

/* Milliseconds of a timespec or timeval timeout, rounded up; -1 for none. */
static int ms_of(long long sec, long long nsec)
{
	long long ms = sec * 1000 + (nsec + 999999) / 1000000;
	return ms < 0 ? 0 : ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

/* ---- what the last poll/select of each thread reported readable ---- */

unsigned char ps_blocking_listeners;
__thread __attribute__((tls_model("initial-exec"))) unsigned ps_waits;

/* A blocking listener's accept behaves differently when the application watched it
 * first (shim/recv/accept.c): recorded only once such a listener exists. Each report is
 * taken by one accept: a thread that accepts again without polling again (or whose
 * record came from its parent across fork) is a caller that blocks in accept. */
#define READY_HIGH 16
static __thread __attribute__((tls_model("initial-exec"))) struct {
	fd_set low;              /* fds below FD_SETSIZE reported readable */
	unsigned char n_high;    /* and up to READY_HIGH above it */
	bool any_high;           /* more than that: the next accept above it takes this */
	int high[READY_HIGH];
} last_ready;

static void ready_clear(void)
{
	FD_ZERO(&last_ready.low);
	last_ready.n_high = 0;
	last_ready.any_high = false;
}

void ps_ready_fork_child(void)
{
	ready_clear();
}

static void ready_note(int fd)
{
	if (fd >= 0 && fd < FD_SETSIZE)
		FD_SET(fd, &last_ready.low);
	else if (last_ready.n_high < READY_HIGH)
		last_ready.high[last_ready.n_high++] = fd;
	else
		last_ready.any_high = true;
}

static void note_poll(const struct pollfd *fds, nfds_t n, int r)
{
	if (!__atomic_load_n(&ps_blocking_listeners, __ATOMIC_RELAXED))
		return;
	ready_clear();
	for (nfds_t i = 0; r > 0 && i < n; i++)
		if (fds[i].revents & (POLLIN | POLLERR | POLLHUP))
			ready_note(fds[i].fd);
}

static void note_select(int nfds, const fd_set *rd, int r)
{
	if (!__atomic_load_n(&ps_blocking_listeners, __ATOMIC_RELAXED))
		return;
	ready_clear();
	/* Bitmaps of nfds bits, past FD_SETSIZE too (no FD_ISSET: fortified builds abort
	 * beyond it). */
	const unsigned long *b = (const unsigned long *)rd;
	const int bits = 8 * (int)sizeof(long);
	if (r > 0 && rd)
		for (int fd = 0; fd < nfds; fd++)
			if (b[fd / bits] >> (fd % bits) & 1)
				ready_note(fd);
}

bool ps_ready_take(int fd)
{
	if (fd >= 0 && fd < FD_SETSIZE) {
		bool was = FD_ISSET(fd, &last_ready.low);
		FD_CLR(fd, &last_ready.low);
		return was;
	}
	for (unsigned i = 0; i < last_ready.n_high; i++) {
		if (last_ready.high[i] == fd) {
			last_ready.high[i] = last_ready.high[--last_ready.n_high];
			return true;
		}
	}
	bool any = last_ready.any_high;
	last_ready.any_high = false;
	return any;
}

/* The call, then readiness that only refused datagrams gave withdrawn (shim/recv/udp.h);
 * when nothing else was reported, the wait goes on for the time left. */
static int poll_filtered(struct pollfd *fds, nfds_t n, ps_poll_call call,
			 struct poll_args *a, int timeout_ms)
{
	struct ps_deadline dl;
	struct timespec left;
	ps_waits++;
	ps_deadline_start(&dl, timeout_ms);
	for (;;) {
		int r = ps_keep_poll(fds, n, call, a);
		if (r <= 0 || !ps_udp_on || (r = ps_udp_filter_poll(fds, n, r)) > 0) {
			note_poll(fds, n, r);
			return r;
		}
		if ((a->timeout = ps_deadline_left_ms(&dl)) == 0)
			return 0;
		if (a->ts) {
			left = (struct timespec){a->timeout / 1000, a->timeout % 1000 * 1000000L};
			a->ts = &left;
		}
	}
}

static int select_filtered(int nfds, fd_set *r, fd_set *w, fd_set *e, ps_select_call call,
			   struct poll_args *a, int timeout_ms)
{
	struct ps_deadline dl;
	struct timespec left;
	struct timeval left_tv;
	fd_set r0, w0, e0;
	bool refilter = ps_udp_on && r && nfds <= FD_SETSIZE;
	ps_waits++;
	if (refilter) {
		r0 = *r;
		if (w)
			w0 = *w;
		if (e)
			e0 = *e;
	}
	ps_deadline_start(&dl, timeout_ms);
	for (;;) {
		int res = ps_keep_select(nfds, r, w, e, call, a);
		if (res <= 0 || !refilter || (res = ps_udp_filter_select(nfds, r, res)) > 0) {
			note_select(nfds, r, res);
			return res;
		}
		int ms = ps_deadline_left_ms(&dl);
		if (ms == 0)
			return 0;
		*r = r0;
		if (w)
			*w = w0;
		if (e)
			*e = e0;
		left = (struct timespec){ms / 1000, ms % 1000 * 1000000L};
		left_tv = (struct timeval){ms / 1000, ms % 1000 * 1000L};
		if (a->ts)
			a->ts = &left;
		if (a->tv)
			a->tv = &left_tv;
	}
}

PS_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	return poll_filtered(fds, n, call_poll, &(struct poll_args){.timeout = timeout},
			     timeout);
}

PS_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		    const sigset_t *mask)
{
	return poll_filtered(fds, n, call_ppoll, &(struct poll_args){.ts = ts, .mask = mask},
			     ts ? ms_of(ts->tv_sec, ts->tv_nsec) : -1);
}

/* _FORTIFY_SOURCE builds (Debian's packages) call these when the array's size is known:
 * the same path, after the size check, whose failure stays libc's (it aborts). */
PS_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		return real___poll_chk(fds, n, timeout, fdslen);
	return poll_filtered(fds, n, call_poll, &(struct poll_args){.timeout = timeout},
			     timeout);
}

PS_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
			  const sigset_t *mask, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		return real___ppoll_chk(fds, n, ts, mask, fdslen);
	return poll_filtered(fds, n, call_ppoll, &(struct poll_args){.ts = ts, .mask = mask},
			     ts ? ms_of(ts->tv_sec, ts->tv_nsec) : -1);
}

PS_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	return select_filtered(nfds, r, w, e, call_select, &(struct poll_args){.tv = tv},
			       tv ? ms_of(tv->tv_sec, tv->tv_usec * 1000LL) : -1);
}

PS_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		      const sigset_t *mask)
{
	return select_filtered(nfds, r, w, e, call_pselect,
			       &(struct poll_args){.ts = ts, .mask = mask},
			       ts ? ms_of(ts->tv_sec, ts->tv_nsec) : -1);
}
