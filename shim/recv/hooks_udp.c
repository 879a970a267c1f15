/* UDP interposers of the receiving library. Each is a few lines around shim/recv/udp.c;
 * a descriptor that is not a selected UDP socket costs one table lookup (one load
 * when UDP is off). */
#include "inherit.h"
#include "real.h"
#include "recv.h"
#include "udp.h"

#include <errno.h>
#include <time.h>

PS_EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	int r = (int)real_bind(fd, addr, len);
	if (r == 0 && ps_udp_on) {
		int saved = errno;
		ps_udp_select(fd);
		errno = saved;
	}
	return r;
}

/* The single-buffer receive calls, as one recvmsg. */
static ssize_t udp_recv(int fd, const struct ps_fdinfo *e, void *buf, size_t n, int flags,
			struct sockaddr *addr, socklen_t *alen)
{
	struct iovec iov = {buf, n};
	struct msghdr m = {.msg_name = alen ? addr : NULL, .msg_namelen = alen ? *alen : 0,
			   .msg_iov = &iov, .msg_iovlen = 1};
	ssize_t r = ps_udp_recvmsg(fd, e, &m, flags);
	if (r >= 0 && addr && alen)
		*alen = m.msg_namelen;
	return r;
}

/* Each data-path interposer starts with one load: with UDP off (every TCP-only daemon)
 * it is a tail call to libc, a few instructions on read(). The rest (a table lookup
 * first) lives out of line in the slow_* functions. */
#define UDP_OFF __builtin_expect(!ps_udp_on, 1)
#define SLOW static __attribute__((noinline))

/* The receive calls also take the header of an inherited connection deferred at load
 * (shim/rt/inherit.h) before its first read: two loads while neither is in use. */
#define RECV_PLAIN __builtin_expect(!(ps_udp_on | ps_inherit_pending), 1)
#define FIRST_USE(fd) \
	do { \
		if (ps_inherit_first_use(fd, false) < 0) \
			return -1; \
	} while (0)

SLOW ssize_t slow_recv(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
		       socklen_t *alen)
{
	FIRST_USE(fd);
	struct ps_fdinfo e;
	if (ps_udp_head(fd, &e))
		return udp_recv(fd, &e, buf, n, flags, addr, alen);
	return addr || alen ? real_recvfrom(fd, buf, n, flags, addr, alen)
			    : real_recv(fd, buf, n, flags);
}

PS_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	if (RECV_PLAIN)
		return real_recv(fd, buf, n, flags);
	return slow_recv(fd, buf, n, flags, NULL, NULL);
}

PS_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
			   socklen_t *alen)
{
	if (RECV_PLAIN)
		return real_recvfrom(fd, buf, n, flags, addr, alen);
	return slow_recv(fd, buf, n, flags, addr, alen);
}

/* read() of 0 bytes returns at once without taking a datagram: left to the kernel. */
SLOW ssize_t slow_read(int fd, void *buf, size_t n)
{
	FIRST_USE(fd);
	struct ps_fdinfo e;
	if (n && ps_udp_head(fd, &e))
		return udp_recv(fd, &e, buf, n, 0, NULL, NULL);
	return real_read(fd, buf, n);
}

PS_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	if (RECV_PLAIN)
		return real_read(fd, buf, n);
	return slow_read(fd, buf, n);
}

SLOW ssize_t slow_readv(int fd, const struct iovec *iov, int cnt)
{
	FIRST_USE(fd);
	struct ps_fdinfo e;
	if (!ps_udp_head(fd, &e) || cnt < 0)
		return real_readv(fd, iov, cnt);
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
	return ps_udp_recvmsg(fd, &e, &m, 0);
}

PS_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	if (RECV_PLAIN)
		return real_readv(fd, iov, cnt);
	return slow_readv(fd, iov, cnt);
}

SLOW ssize_t slow_recvmsg(int fd, struct msghdr *msg, int flags)
{
	FIRST_USE(fd);
	struct ps_fdinfo e;
	return ps_udp_head(fd, &e) && msg ? ps_udp_recvmsg(fd, &e, msg, flags)
					 : real_recvmsg(fd, msg, flags);
}

PS_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	if (RECV_PLAIN)
		return real_recvmsg(fd, msg, flags);
	return slow_recvmsg(fd, msg, flags);
}

SLOW int slow_recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t)
{
	FIRST_USE(fd);
	struct ps_fdinfo e;
	return ps_udp_head(fd, &e) && v ? ps_udp_recvmmsg(fd, &e, v, n, flags, t)
				       : (int)real_recvmmsg(fd, v, n, flags, t);
}

PS_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t)
{
	if (RECV_PLAIN)
		return (int)real_recvmmsg(fd, v, n, flags, t);
	return slow_recvmmsg(fd, v, n, flags, t);
}

/* FORTIFY variants: an overflowing length still goes to libc, which aborts. */
PS_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	struct ps_fdinfo e;
	if (!RECV_PLAIN && n <= buflen)
		FIRST_USE(fd);
	if (!UDP_OFF && n && n <= buflen && ps_udp_head(fd, &e))
		return udp_recv(fd, &e, buf, n, 0, NULL, NULL);
	return real___read_chk(fd, buf, n, buflen);
}

PS_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	struct ps_fdinfo e;
	if (!RECV_PLAIN && n <= buflen)
		FIRST_USE(fd);
	if (!UDP_OFF && n <= buflen && ps_udp_head(fd, &e))
		return udp_recv(fd, &e, buf, n, flags, NULL, NULL);
	return real___recv_chk(fd, buf, n, buflen, flags);
}

PS_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				 struct sockaddr *addr, socklen_t *alen)
{
	struct ps_fdinfo e;
	if (!RECV_PLAIN && n <= buflen)
		FIRST_USE(fd);
	if (!UDP_OFF && n <= buflen && ps_udp_head(fd, &e))
		return udp_recv(fd, &e, buf, n, flags, addr, alen);
	return real___recvfrom_chk(fd, buf, n, buflen, flags, addr, alen);
}

/* ---- replies ---- */

SLOW ssize_t slow_sendto(int fd, const void *buf, size_t n, int flags,
			 const struct sockaddr *addr, socklen_t alen)
{
	struct ps_fdinfo e;
	struct sockaddr_storage to;
	socklen_t l = ps_udp_head(fd, &e) ? ps_udp_reroute(&e, addr, alen, &to) : 0;
	return l ? real_sendto(fd, buf, n, flags, (struct sockaddr *)&to, l)
		 : real_sendto(fd, buf, n, flags, addr, alen);
}

PS_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
			 const struct sockaddr *addr, socklen_t alen)
{
	if (UDP_OFF || !addr)
		return real_sendto(fd, buf, n, flags, addr, alen);
	return slow_sendto(fd, buf, n, flags, addr, alen);
}

SLOW ssize_t slow_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct ps_fdinfo e;
	struct sockaddr_storage to;
	socklen_t l = ps_udp_head(fd, &e)
			      ? ps_udp_reroute(&e, msg->msg_name, msg->msg_namelen, &to) : 0;
	if (!l)
		return real_sendmsg(fd, msg, flags);
	struct msghdr m = *msg;
	m.msg_name = &to;
	m.msg_namelen = l;
	return real_sendmsg(fd, &m, flags);
}

PS_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (UDP_OFF || !msg || !msg->msg_name)
		return real_sendmsg(fd, msg, flags);
	return slow_sendmsg(fd, msg, flags);
}

SLOW int slow_sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	struct ps_fdinfo e;
	return ps_udp_head(fd, &e) ? ps_udp_sendmmsg(fd, &e, v, n, flags)
				  : (int)real_sendmmsg(fd, v, n, flags);
}

PS_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	if (UDP_OFF || !v)
		return (int)real_sendmmsg(fd, v, n, flags);
	return slow_sendmmsg(fd, v, n, flags);
}

SLOW int slow_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct ps_fdinfo e;
	return ps_udp_get(fd, &e) ? ps_udp_connect(fd, &e, addr, len)
				  : real_connect(fd, addr, len);
}

PS_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (UDP_OFF)
		return real_connect(fd, addr, len);
	return slow_connect(fd, addr, len);
}

/* ---- readiness: epoll (poll and select are in hooks_recv.c) ---- */

/* Runs an epoll wait again, for the time left, while everything it reported was a
 * refused datagram. */
#define EPOLL_FILTERED(call_with_timeout, timeout_ms)                                    \
	do {                                                                             \
		struct ps_deadline dl;                                                   \
		int tmo = (timeout_ms);                                                  \
		ps_deadline_start(&dl, tmo);                                             \
		for (;;) {                                                               \
			int r = call_with_timeout;                                       \
			if (r <= 0 || !ps_udp_epoll_watched())                           \
				return r;                                                \
			if ((r = ps_udp_filter_epoll(epfd, ev, r)) > 0)                  \
				return r;                                                \
			if ((tmo = ps_deadline_left_ms(&dl)) == 0)                       \
				return 0;                                                \
		}                                                                        \
	} while (0)

SLOW int slow_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	EPOLL_FILTERED(real_epoll_wait(epfd, ev, max, tmo), timeout);
}

PS_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	ps_waits++;
	if (__builtin_expect(!ps_udp_epoll_watched(), 1))
		return real_epoll_wait(epfd, ev, max, timeout);
	return slow_epoll_wait(epfd, ev, max, timeout);
}

SLOW int slow_epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
			  const sigset_t *mask)
{
	EPOLL_FILTERED(real_epoll_pwait(epfd, ev, max, tmo, mask), timeout);
}

PS_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
			  const sigset_t *mask)
{
	ps_waits++;
	if (__builtin_expect(!ps_udp_epoll_watched(), 1))
		return real_epoll_pwait(epfd, ev, max, timeout, mask);
	return slow_epoll_pwait(epfd, ev, max, timeout, mask);
}
