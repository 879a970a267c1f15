/* Sending-side interposers: connect records the header; every call that moves
 * application bytes (either way) first finishes it. Untracked fds cost one table
 * lookup; with PROXYSHIM_SEND_TO unset, one load. Not hooked, because they never
 * write to a socket: copy_file_range (files only), vmsplice and tee (pipes only; the
 * splice that moves a pipe's bytes to the socket is hooked). Writes no hook sees
 * (stdio's internal __write, raw syscalls) are caught by the next hooked call, which
 * resets the connection (shim/send/send.c). */
#include "real.h"
#include "send.h"
#include "send_udp.h"
#include "shim.h"

#include <errno.h>

/* 0 when fd may carry application bytes now, -1 (errno set) if its header is stuck. */
static int ready(int fd)
{
	return ps_send_active() ? ps_send_flush(fd) : 0;
}

/* A datagram to a listed destination (PROXYSHIM_SEND_UDP): sent with its header, the
 * result in *r. 'to' NULL: the socket's connected peer. */
static bool udp_sent(int fd, const struct sockaddr *to, socklen_t tolen,
		     const struct msghdr *msg, int flags, ssize_t *r)
{
	struct ps_fdinfo e;
	struct ps_addr dst;
	if (!ps_send_udp_on() || !ps_send_udp_dest(fd, to, tolen, &e, &dst))
		return false;
	*r = ps_send_udp_msg(fd, &e, &dst, msg, flags);
	return true;
}

#define ONE_BUF(buf, n) \
	(&(struct msghdr){.msg_iov = &(struct iovec){(void *)(buf), (n)}, .msg_iovlen = 1})

PS_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	int r = ps_send_connected(fd, addr, len, real_connect(fd, addr, len));
	if (ps_send_udp_on())
		ps_send_udp_connected(fd, addr, len, r);
	return r;
}

PS_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
	int r = real_accept4(fd, addr, alen, 0);
	ps_send_accepted(r);
	return r;
}

PS_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	int r = real_accept4(fd, addr, alen, flags);
	ps_send_accepted(r);
	return r;
}

/* A non-blocking client learns its connect finished from SO_ERROR: the header goes out
 * then, before a server that speaks first (MySQL) would wait for it in vain. */
PS_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	int r = real_getsockopt(fd, level, name, val, len);
	if (r == 0 && level == SOL_SOCKET && name == SO_ERROR && val && *len >= sizeof(int) &&
	    *(int *)val == 0 && ps_send_active()) {
		int saved = errno;
		ps_send_flush(fd);  /* not yet writable: the next I/O call finishes it */
		errno = saved;
	}
	return r;
}

/* TCP Fast Open connects inside sendto/sendmsg: connect first so that the header is
 * the first byte, then send normally (a non-blocking socket gets EINPROGRESS, as TFO
 * without a cookie gives). */
static int fastopen(int fd, const struct sockaddr *addr, socklen_t len, int *flags)
{
	if (!(*flags & MSG_FASTOPEN) || !addr || !ps_send_active())
		return 0;
	*flags &= ~MSG_FASTOPEN;
	int r = ps_send_connected(fd, addr, len, real_connect(fd, addr, len));
	return r < 0 && errno != EISCONN ? -1 : 0;
}

PS_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	ssize_t r;
	if (udp_sent(fd, NULL, 0, ONE_BUF(buf, n), 0, &r))
		return r;
	return ready(fd) ? -1 : real_write(fd, buf, n);
}

PS_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	ssize_t r;
	if (cnt >= 0 &&
	    udp_sent(fd, NULL, 0, &(struct msghdr){.msg_iov = (struct iovec *)iov,
						   .msg_iovlen = (size_t)cnt}, 0, &r))
		return r;
	return ready(fd) ? -1 : real_writev(fd, iov, cnt);
}

PS_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	ssize_t r;
	if (udp_sent(fd, NULL, 0, ONE_BUF(buf, n), flags, &r))
		return r;
	return ready(fd) ? -1 : real_send(fd, buf, n, flags);
}

PS_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
			 const struct sockaddr *addr, socklen_t alen)
{
	ssize_t r;
	struct msghdr *m = ONE_BUF(buf, n);
	m->msg_name = (void *)addr;
	m->msg_namelen = addr ? alen : 0;
	if (!(flags & MSG_FASTOPEN) && udp_sent(fd, addr, alen, m, flags, &r))
		return r;
	if (fastopen(fd, addr, alen, &flags) < 0 || ready(fd))
		return -1;
	return real_sendto(fd, buf, n, flags, addr, alen);
}

PS_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	ssize_t r;
	if (msg && !(flags & MSG_FASTOPEN) &&
	    udp_sent(fd, msg->msg_name, msg->msg_namelen, msg, flags, &r))
		return r;
	if (msg && fastopen(fd, msg->msg_name, msg->msg_namelen, &flags) < 0)
		return -1;
	return ready(fd) ? -1 : real_sendmsg(fd, msg, flags);
}

PS_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	if (ready(fd))
		return -1;
	if (ps_send_udp_on() && v)
		return ps_send_udp_mmsg(fd, v, n, flags);
	return (int)real_sendmmsg(fd, v, n, flags);
}

PS_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	return ready(out) ? -1 : real_sendfile(out, in, off, n);
}

PS_EXPORT ssize_t sendfile64(int out, int in, off64_t *off, size_t n)
{
	return ready(out) ? -1 : real_sendfile64(out, in, off, n);
}

PS_EXPORT ssize_t splice(int in, off64_t *off_in, int out, off64_t *off_out, size_t n,
			 unsigned flags)
{
	return ready(in) || ready(out) ? -1
				       : real_splice(in, off_in, out, off_out, n, flags);
}

PS_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	return ready(fd) ? -1 : real_read(fd, buf, n);
}

PS_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	return ready(fd) ? -1 : real_readv(fd, iov, cnt);
}

PS_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	return ready(fd) ? -1 : real_recv(fd, buf, n, flags);
}

PS_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
			   socklen_t *alen)
{
	return ready(fd) ? -1 : real_recvfrom(fd, buf, n, flags, addr, alen);
}

PS_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	return ready(fd) ? -1 : real_recvmsg(fd, msg, flags);
}

PS_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t)
{
	return ready(fd) ? -1 : (int)real_recvmmsg(fd, v, n, flags, t);
}

/* FORTIFY variants: the real ones keep their buffer-length check. */
PS_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (ready(fd))
		return -1;
	return real___read_chk(fd, buf, n, buflen);
}

PS_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	if (ready(fd))
		return -1;
	return real___recv_chk(fd, buf, n, buflen, flags);
}

PS_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				 struct sockaddr *addr, socklen_t *alen)
{
	if (ready(fd))
		return -1;
	return real___recvfrom_chk(fd, buf, n, buflen, flags, addr, alen);
}
