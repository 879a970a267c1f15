/* Sending side for datagrams (PROXYSHIM_SEND_UDP=every): each datagram a UDP socket
 * sends to a PROXYSHIM_SEND_TO destination starts with a v2 DGRAM header. The header
 * travels in the same system call, as the first iovec. */
#ifndef PS_SEND_UDP_H
#define PS_SEND_UDP_H

#include <stdbool.h>
#include <sys/socket.h>
#include "fdtable.h"

/* Entry flags (in 'selected'): connected to a destination of the list; the cached
 * header source is a route's address (the socket is bound to a wildcard address), good
 * only for the destination in 'dst'. */
#define PS_SEND_UDP_CONNECTED 1u
#define PS_SEND_UDP_ROUTED 2u

/* Is PROXYSHIM_SEND_UDP=every in force? One load. */
bool ps_send_udp_on(void);

/* After connect() returned r on fd: remembers whether a UDP socket's peer is listed. */
void ps_send_udp_connected(int fd, const struct sockaddr *dst, socklen_t len, int r);

/* The destination of fd's datagram if it gets a header: 'to' when given, else the
 * connected peer. */
bool ps_send_udp_dest(int fd, const struct sockaddr *to, socklen_t tolen,
		      struct ps_fdinfo *e, struct ps_addr *dst);

/* sendmsg with the header in front; returns the application's byte count. */
ssize_t ps_send_udp_msg(int fd, struct ps_fdinfo *e, const struct ps_addr *dst,
			const struct msghdr *msg, int flags);

/* sendmmsg, each datagram to a listed destination with its header. */
int ps_send_udp_mmsg(int fd, struct mmsghdr *v, unsigned n, int flags);

#endif
