/* The receiving mechanism shared by the receiving library's interposers
 * (hooks_recv.c, hooks_udp.c): accept, the settled address, readiness records. */
#ifndef PS_RECV_H
#define PS_RECV_H

#include "consume.h"
#include "shim.h"

/* accept()/accept4(): the real accept, then the header of a trusted connection is
 * consumed and the original client written to addr. Bad connections are closed and
 * the next one accepted. */
int ps_accept(int lfd, struct sockaddr *addr, socklen_t *alen, int flags);

/* Records the outcome of reading the header of connection fd (SO_COOKIE 'cookie')
 * from trusted proxy 'peer' (socket family 'family'; r, h, why from shim/consume.h).
 * Returns 1 with *client set when the header named the client, 0 when the connection
 * keeps its real addresses, -1 when it must be closed (logged). room: the caller's
 * address buffer size, 0 when unknown. */
int ps_settle(int fd, uint64_t cookie, int family, const struct ps_addr *peer,
	      socklen_t room, enum ps_take r, const struct pp_header *h, const char *why,
	      struct ps_addr *client);

/* Decides (again) whether the shim applies to listening socket lfd and records it.
 * own: the application's listen() made it a listener just now (not one it was handed). */
bool ps_listener_note(int lfd, const struct ps_config *c, bool own, struct ps_fdinfo *li);

/* Set once the shim gave some listener TCP_DEFER_ACCEPT (PS_LISTENER_DEFERRED): before
 * an exec or spawn, those the child inherits get it back (shim/recv/inherit.c). */
extern unsigned char ps_deferred_listeners;

/* Set once a selected listener exists: from then on poll and select record, per
 * thread, which descriptors they reported readable (shim/hooks_recv.c). */
extern unsigned char ps_blocking_listeners;

/* Whether the calling thread's last poll/select reported fd readable, and no accept
 * took that report yet (this one takes it). */
bool ps_ready_take(int fd);

/* In a fork child: what the parent's thread recorded is not the child's. */
void ps_ready_fork_child(void);
void ps_accept_fork_child(void);
/* In the parent after fork: its listeners may have other acceptors now. */
void ps_accept_forked(void);

/* Readiness waits (poll, select, epoll_wait and their variants) the calling thread has
 * made: tells an application that waits between accepts from one that comes straight
 * back to accept. */
extern __thread __attribute__((tls_model("initial-exec"))) unsigned ps_waits;

/* fd's connection entry if it holds one and fd is still that socket (SO_COOKIE);
 * a stale entry is dropped. */
bool ps_conn(int fd, struct ps_fdinfo *ci);

/* Writes a into addr as the kernel would: truncated to *alen, *alen set to the full
 * length, in the form a socket of family sock_family reports. Returns 0. */
int ps_report(struct sockaddr *addr, socklen_t *alen, const struct ps_addr *a,
	      int sock_family);

#endif
