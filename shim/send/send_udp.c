/* Datagram headers of the sending side. A UDP socket's entry (kind PS_FD_SEND_UDP)
 * caches the header source; it is made the first time the socket sends to a listed
 * destination, so unrelated sockets cost one table lookup. */
#include "send_udp.h"
#include "send.h"
#include "log.h"
#include "pp.h"
#include "real.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#define MAX_IOV 64

bool ps_send_udp_on(void)
{
	const struct ps_config *c = ps_send_active();
	return c && c->send_udp;
}

static bool is_udp(int fd)
{
	int proto = 0;
	socklen_t pl = sizeof(proto);
	return real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) == 0 &&
	       proto == IPPROTO_UDP;
}

/* fd's entry, made now if fd is a UDP socket. */
static bool entry(int fd, struct ps_fdinfo *e)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (ps_fd_get(fd, e) && e->kind == PS_FD_SEND_UDP && e->cookie == ps_fd_cookie(fd))
		return true;
	if (e->kind != PS_FD_NONE && e->kind != PS_FD_SEND_UDP)
		return false;
	if (!is_udp(fd) || real_getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return false;
	*e = (struct ps_fdinfo){.kind = PS_FD_SEND_UDP, .family = ss.ss_family,
				.cookie = ps_fd_cookie(fd)};
	return ps_fd_set(fd, e);
}

/* The header's source: the fixed one, or the socket's own address (bound now if it is
 * not yet, as the kernel would at the first send; an unspecified address is replaced
 * by the one the route to dst uses). */
static int source(int fd, struct ps_fdinfo *e, const struct ps_addr *dst)
{
	const struct ps_config *c = ps_send_active();
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	static const uint8_t zero[16];
	if (c->send_source == PS_SOURCE_FIXED) {
		e->src = c->send_fixed;
		return 0;
	}
	if (real_getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    ps_addr_from_sockaddr(&e->src, (struct sockaddr *)&ss, sl) < 0)
		return -1;
	if (!e->src.port) {
		struct sockaddr_storage any = {.ss_family = ss.ss_family};
		if (real_bind(fd, (struct sockaddr *)&any, sl) < 0 && errno != EINVAL)
			return -1;
		sl = sizeof(ss);
		if (real_getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
		    ps_addr_from_sockaddr(&e->src, (struct sockaddr *)&ss, sl) < 0)
			return -1;
	}
	e->udp_flags &= (uint8_t)~PS_SEND_UDP_ROUTED;
	if (!memcmp(e->src.ip, zero, e->src.family == AF_INET ? 4 : 16)) {
		/* A wildcard address (never on a connected socket, whose dst stays its
		 * peer): the route's source address for this destination, from a throwaway
		 * connected socket, good for this destination only. */
		e->udp_flags |= PS_SEND_UDP_ROUTED;
		e->dst = *dst;
		struct sockaddr_storage to;
		socklen_t tl = ps_addr_to_sockaddr(dst, e->family, &to);
		int s = socket(e->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		sl = sizeof(ss);
		if (s >= 0 && real_connect(s, (struct sockaddr *)&to, tl) == 0 &&
		    real_getsockname(s, (struct sockaddr *)&ss, &sl) == 0) {
			uint16_t port = e->src.port;
			ps_addr_from_sockaddr(&e->src, (struct sockaddr *)&ss, sl);
			e->src.port = port;
		}
		if (s >= 0)
			real_close(s);
	}
	return 0;
}

void ps_send_udp_connected(int fd, const struct sockaddr *sa, socklen_t len, int r)
{
	const struct ps_config *c = ps_send_active();
	struct ps_fdinfo e;
	struct ps_addr dst;
	int saved = errno;
	bool listed = sa && ps_addr_from_sockaddr(&dst, sa, len) == 0 &&
		      ps_netlist_match(&c->send_to, &dst);
	bool known = ps_fd_get(fd, &e) && e.kind == PS_FD_SEND_UDP;
	if (r == 0 && (listed || known) && entry(fd, &e)) {
		e.udp_flags = listed ? PS_SEND_UDP_CONNECTED : 0;
		e.dst = listed ? dst : (struct ps_addr){0};
		e.src.family = 0;  /* the local address may change with the peer */
		ps_fd_set(fd, &e);
	}
	errno = saved;
}

bool ps_send_udp_dest(int fd, const struct sockaddr *to, socklen_t tolen,
		      struct ps_fdinfo *e, struct ps_addr *dst)
{
	const struct ps_config *c = ps_send_active();
	if (!to) {
		if (!ps_fd_get(fd, e) || e->kind != PS_FD_SEND_UDP ||
		    !(e->udp_flags & PS_SEND_UDP_CONNECTED))
			return false;
		*dst = e->dst;
		return true;
	}
	return ps_addr_from_sockaddr(dst, to, tolen) == 0 &&
	       ps_netlist_match(&c->send_to, dst) && entry(fd, e);
}

static bool same_dst(const struct ps_addr *a, const struct ps_addr *b)
{
	return a->family == b->family && a->port == b->port && !memcmp(a->ip, b->ip, 16);
}

ssize_t ps_send_udp_msg(int fd, struct ps_fdinfo *e, const struct ps_addr *dst,
			const struct msghdr *msg, int flags)
{
	uint8_t hdr[PP_V2_FIXED + 36];
	struct iovec iov[MAX_IOV + 1];
	if (!e->src.family || ((e->udp_flags & PS_SEND_UDP_ROUTED) && !same_dst(&e->dst, dst))) {
		if (source(fd, e, dst) < 0) {
			ps_log_limited("udp fd %d: no source address for the PROXY header", fd);
			return -1;
		}
		ps_fd_set(fd, e);
	}
	if (msg->msg_iovlen > MAX_IOV) {
		errno = EMSGSIZE;
		return -1;
	}
	struct ps_addr src = e->src, to = *dst;
	ps_addr_unmap(&src);
	ps_addr_unmap(&to);
	size_t hl = pp_build_v2_dgram(hdr, sizeof(hdr), &src, &to);
	if (!hl) {  /* IPv6 on one side, IPv4 on the other: LOCAL */
		hl = pp_build_v2_dgram(hdr, sizeof(hdr), NULL, NULL);
	}
	iov[0] = (struct iovec){hdr, hl};
	if (msg->msg_iovlen)
		memcpy(iov + 1, msg->msg_iov, msg->msg_iovlen * sizeof(*iov));
	struct msghdr m = *msg;
	m.msg_iov = iov;
	m.msg_iovlen = msg->msg_iovlen + 1;
	ssize_t r = real_sendmsg(fd, &m, flags);
	return r < 0 ? r : r >= (ssize_t)hl ? r - (ssize_t)hl : 0;
}

int ps_send_udp_mmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	unsigned i;
	for (i = 0; i < n; i++) {
		struct msghdr *h = &v[i].msg_hdr;
		struct ps_fdinfo e;
		struct ps_addr dst;
		ssize_t r = ps_send_udp_dest(fd, h->msg_name, h->msg_namelen, &e, &dst)
				    ? ps_send_udp_msg(fd, &e, &dst, h, flags)
				    : real_sendmsg(fd, h, flags);
		if (r < 0)
			return i ? (int)i : -1;
		v[i].msg_len = (unsigned)r;
	}
	return (int)i;
}
