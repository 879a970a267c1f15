/* No listener waits for one connection's header. A trusted connection whose header
 * is still on its way is kept aside in a set of the listener's (an epoll instance of
 * the shim's own holding the kept sockets and a timer for their deadlines). That set
 * is nested in every epoll instance the application registers the listener in, with
 * the listener's event data, and added to poll/select calls that watch the listener:
 * the application sees its listener readable when a kept header completes (or times
 * out), calls accept, and gets that connection. A blocking accept waits for the first
 * decided connection instead (shim/recv/accept.c). */
#ifndef PS_KEEP_H
#define PS_KEEP_H

#include <stdbool.h>
#include <sys/epoll.h>
#include "recv.h"

struct ps_acceptors;

/* ps_keep_add 'how': what the caller knows of fd. */
#define PS_KEEP_NONBLOCK 1  /* accepted non-blocking */
#define PS_KEEP_LOWAT 2     /* its SO_RCVLOWAT is raised (ps_try_header's *raised) */
#define PS_KEEP_CLOEXEC 4   /* already close-on-exec (accepted with SOCK_CLOEXEC) */

/* Keeps fd (from trusted proxy peer, header incomplete) aside on listener li (fd lfd),
 * close-on-exec while it is the shim's. Returns 0, or -1 if it cannot (a blocking
 * caller waits instead; otherwise refused). */
int ps_keep_add(int lfd, struct ps_fdinfo *li, int fd, const struct ps_addr *peer, int how);

/* A kept connection of lfd that is ready to hand over, settled (recorded in the fd
 * table): its fd, with *client the address to report and *nonblock its mode (as kept:
 * close-on-exec); -1 when there is none. Bad and expired ones are closed and logged on
 * the way (*closed is then set). */
int ps_keep_next(int lfd, const struct ps_fdinfo *li, const struct ps_config *c,
		 socklen_t room, struct ps_addr *client, bool *closed, bool *nonblock);

/* Where the count of this process's threads inside the real accept on listener number
 * lfd lives (shim/recv/acceptors.h); NULL beyond the table. */
struct ps_acceptors *ps_keep_acceptors(int lfd);

/* lfd is a new listener's number: its count starts anew (if it has one yet). */
void ps_keep_acceptors_anew(int lfd);

/* The descriptor (the set's epoll instance) that becomes readable when a connection
 * kept for listener lfd is decided; -1 when none is kept. */
int ps_keep_fd(int lfd, const struct ps_fdinfo *li);

/* false when nothing is kept anywhere; else every listener that may hold kept
 * connections has its number in [*lo, *hi] (a hint for scanning poll arrays). */
bool ps_keep_span(int *lo, int *hi);

/* After the application's epoll_ctl(epfd, op, fd, ev) succeeded. */
void ps_keep_epoll(int epfd, int op, int fd, const struct epoll_event *ev);

/* The application closed fds first..last: listeners among them lose their sets. */
void ps_keep_forget(unsigned first, unsigned last);

/* In a fork child: the parent keeps serving its own kept connections. */
void ps_keep_init(void);

#endif
