/* Receiving-side interposers: each forwards to one shared mechanism. Internal code
 * calls only real_* functions, never these public names. */
#include "keep.h"
#include "log.h"
#include "real.h"
#include "shim.h"

#include <errno.h>


PS_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
	return ps_accept(fd, addr, alen, 0);
}

PS_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	return ps_accept(fd, addr, alen, flags);
}

PS_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *alen)
{
	struct ps_fdinfo ci;
	if (addr && alen && ps_conn(fd, &ci))
		return ps_report(addr, alen, &ci.src, ci.family);
	return real_getpeername(fd, addr, alen);
}

PS_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *alen)
{
	struct ps_fdinfo ci;
	const struct ps_config *c = ps_active();
	if (c && c->local == PS_LOCAL_HEADER && addr && alen && ps_conn(fd, &ci))
		return ps_report(addr, alen, &ci.dst, ci.family);
	return real_getsockname(fd, addr, alen);
}

/* ---- listeners and readiness: kept connections (shim/keep.h) ---- */

PS_EXPORT int listen(int fd, int backlog)
{
	const struct ps_config *c = ps_active();
	struct ps_fdinfo li;
	int r = real_listen(fd, backlog);
	if (r == 0 && c) {
		int saved = errno;
		ps_listener_note(fd, c, &li);
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
	return REAL_LAZY(poll)(fds, n, ((struct poll_args *)ctx)->timeout);
}

static int call_ppoll(struct pollfd *fds, nfds_t n, void *ctx)
{
	struct poll_args *a = ctx;
	return REAL_LAZY(ppoll)(fds, n, a->ts, a->mask);
}

static int call_select(int nfds, fd_set *r, fd_set *w, fd_set *e, void *ctx)
{
	return REAL_LAZY(select)(nfds, r, w, e, ((struct poll_args *)ctx)->tv);
}

static int call_pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, void *ctx)
{
	struct poll_args *a = ctx;
	return REAL_LAZY(pselect)(nfds, r, w, e, a->ts, a->mask);
}

PS_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	return ps_keep_poll(fds, n, call_poll, &(struct poll_args){.timeout = timeout});
}

PS_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
		    const sigset_t *mask)
{
	return ps_keep_poll(fds, n, call_ppoll, &(struct poll_args){.ts = ts, .mask = mask});
}

PS_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	return ps_keep_select(nfds, r, w, e, call_select, &(struct poll_args){.tv = tv});
}

PS_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		      const sigset_t *mask)
{
	return ps_keep_select(nfds, r, w, e, call_pselect,
			      &(struct poll_args){.ts = ts, .mask = mask});
}
