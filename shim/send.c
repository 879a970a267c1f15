/* connect → record the header → write it before the first application byte. */
#include "send.h"
#include "fdtable.h"
#include "log.h"
#include "pp.h"
#include "real.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>

/* The inbound connection the calling thread accepted last (relay mode), and the
 * socket's identity so that a reused fd number is not mistaken for it. */
static __thread __attribute__((tls_model("initial-exec"))) int last_fd = -1;
static __thread __attribute__((tls_model("initial-exec"))) uint64_t last_cookie;

void ps_send_accepted(int fd)
{
	const struct ps_config *c = ps_send_active();
	if (fd >= 0 && c && c->send_source == PS_SOURCE_ACCEPTED) {
		last_fd = fd;
		last_cookie = ps_fd_cookie(fd);
	}
}

/* The original client of the inbound connection: getpeername() here is the public
 * name on purpose, so that libproxyshim.so, preloaded in either order, answers it. */
static int accepted_client(struct ps_addr *src)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (last_fd < 0 || ps_fd_cookie(last_fd) != last_cookie ||
	    getpeername(last_fd, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	return ps_addr_from_sockaddr(src, (struct sockaddr *)&ss, sl);
}

static int header_source(int fd, const struct ps_config *c, struct ps_addr *src)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (c->send_source == PS_SOURCE_FIXED) {
		*src = c->send_fixed;
		return 0;
	}
	if (c->send_source == PS_SOURCE_ACCEPTED && accepted_client(src) == 0)
		return 0;
	if (real_getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	return ps_addr_from_sockaddr(src, (struct sockaddr *)&ss, sl);
}

static int is_tcp(int fd)
{
	int proto = 0;
	socklen_t pl = sizeof(proto);
	return real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) == 0 &&
	       proto == IPPROTO_TCP;
}

int ps_send_connected(int fd, const struct sockaddr *sa, socklen_t len, int r)
{
	const struct ps_config *c = ps_send_active();
	struct ps_addr dst;
	int saved = errno;
	if (!c || (r < 0 && errno != EINPROGRESS) || !sa ||
	    ps_addr_from_sockaddr(&dst, sa, len) < 0 || !ps_netlist_match(&c->send_to, &dst) ||
	    !is_tcp(fd)) {
		errno = saved;
		return r;
	}
	struct ps_fdinfo e = {.kind = PS_FD_SEND, .selected = (uint8_t)c->send_version,
			      .family = sa->sa_family, .cookie = ps_fd_cookie(fd), .dst = dst};
	if (header_source(fd, c, &e.src) < 0 || !ps_fd_set(fd, &e)) {
		ps_log(PS_LOG_ERROR, "fd %d: cannot prepare the PROXY header", fd);
		errno = saved;
		return r;
	}
	if (r == 0 && ps_send_flush(fd) < 0 && errno != EAGAIN)
		return -1;
	errno = saved;
	return r;
}

/* Bytes this connection has ever sent (any process holding it), -1 if unknown. */
static long long bytes_sent(int fd)
{
	struct tcp_info ti = {0};
	socklen_t len = sizeof(ti);
	if (real_getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof(ti.tcpi_bytes_sent))
		return -1;
	return (long long)ti.tcpi_bytes_sent;
}

int ps_send_flush(int fd)
{
	struct ps_fdinfo e;
	uint8_t hdr[PP_V1_MAX + 1];
	if (!ps_fd_get(fd, &e) || e.kind != PS_FD_SEND)
		return 0;
	/* A reused fd number, or a fork sibling that shares the socket and already sent
	 * the header (the pending state was copied by fork): nothing to send here. */
	if (ps_fd_cookie(fd) != e.cookie || (!e.sent && bytes_sent(fd) > 0)) {
		ps_fd_clear((unsigned)fd, (unsigned)fd);
		return 0;
	}
	size_t len = e.selected == 2 ? pp_build_v2(hdr, sizeof(hdr), &e.src, &e.dst, NULL, 0, 0)
				     : pp_build_v1(hdr, sizeof(hdr), &e.src, &e.dst);
	int fl = ps_real.fcntl ? ps_real.fcntl(fd, F_GETFL) : (int)syscall(SYS_fcntl, fd, F_GETFL);
	int flags = MSG_NOSIGNAL | (fl >= 0 && (fl & O_NONBLOCK) ? MSG_DONTWAIT : 0);
	while (e.sent < len) {
		ssize_t n = real_send(fd, hdr + e.sent, len - e.sent, flags);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (e.sent)  /* keep what went out: the rest follows on the next call */
				ps_fd_set(fd, &e);
			return -1;
		}
		e.sent += (uint32_t)n;
	}
	ps_fd_clear((unsigned)fd, (unsigned)fd);
	return 0;
}
