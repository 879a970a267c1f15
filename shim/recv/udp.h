/* UDP, receiving side (libproxyshim.so): selected sockets (bound to a port of
 * PROXYSHIM_UDP_PORTS) lose each trusted datagram's v2 header on the way to the
 * application, which sees the original client as the sender; its replies to that
 * client go to the proxy. Refused datagrams are dropped, also when the application
 * only asks whether the socket is readable. */
#ifndef PS_UDP_H
#define PS_UDP_H

#include <poll.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include "fdtable.h"
#include "lock.h"

/* UDP handling is on (PROXYSHIM_UDP_PORTS set, shim active). One load. */
extern bool ps_udp_on;

/* Entry flag (in 'selected') of a selected socket connected to a mapped client. */
#define PS_UDP_CONNECTED_MAPPED 1u

/* At load (c non-NULL and UDP on). */
void ps_udp_init(void);

/* In a fork child: locks another thread held at fork are released. */
void ps_udp_fork_child(void);

/* After a successful bind(), and at load for inherited descriptors: selects fd if it
 * is a UDP socket bound to a listed port. Returns true if fd is a UDP socket. */
bool ps_udp_select(int fd);

/* fd's entry if it is a selected UDP socket. */
static inline bool ps_udp_get(int fd, struct ps_fdinfo *e)
{
	return ps_udp_on && ps_fd_get(fd, e) && e->kind == PS_FD_UDP;
}

/* The same for the data path (receives and sends): only the head of fd's entry (the
 * rest of *e is not written), for the functions below that read no addresses. */
static inline bool ps_udp_head(int fd, struct ps_fdinfo *e)
{
	return ps_udp_on && ps_fd_get_head(fd, e) && e->kind == PS_FD_UDP;
}

/* recvmsg on selected socket fd: msg as the application passed it. */
ssize_t ps_udp_recvmsg(int fd, const struct ps_fdinfo *e, struct msghdr *msg, int flags);

/* recvmmsg on selected socket fd. */
int ps_udp_recvmmsg(int fd, const struct ps_fdinfo *e, struct mmsghdr *v, unsigned n,
		    int flags, struct timespec *timeout);

/* A reply's destination: if dst is a mapped original client (in this socket's flows,
 * then in those of the other selected sockets of its port), writes its proxy's address
 * into *out and returns its length; 0 to send as asked. Refreshes nothing. */
socklen_t ps_udp_reroute(const struct ps_fdinfo *e, const struct sockaddr *dst,
			 socklen_t len, struct sockaddr_storage *out);

/* sendmmsg on selected socket fd, each destination rerouted. */
int ps_udp_sendmmsg(int fd, const struct ps_fdinfo *e, struct mmsghdr *v, unsigned n,
		    int flags);

/* connect() on selected socket fd: to the proxy of a mapped client. e must be the
 * whole entry (ps_udp_get, not ps_udp_head): it is stored back with the client. */
int ps_udp_connect(int fd, const struct ps_fdinfo *e, const struct sockaddr *dst,
		   socklen_t len);

/* Readiness: the application registered fd in epfd (epoll_ctl succeeded). */
void ps_udp_epoll(int epfd, int op, int fd, const struct epoll_event *ev);

/* Some selected socket is registered in an epoll set. One load. */
extern unsigned ps_udp_nregs;
static inline bool ps_udp_epoll_watched(void)
{
	return __atomic_load_n(&ps_udp_nregs, __ATOMIC_RELAXED) != 0;
}

/* Drops refused datagrams at the head of selected sockets the call reported readable,
 * and withdraws readiness left with nothing to read. Returns the new count. */
int ps_udp_filter_poll(struct pollfd *fds, nfds_t n, int r);
int ps_udp_filter_epoll(int epfd, struct epoll_event *ev, int r);
int ps_udp_filter_select(int nfds, fd_set *rd, int r);

#endif
