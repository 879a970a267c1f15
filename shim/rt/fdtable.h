/* Per-descriptor state, indexed by fd: a static top level of pointers to leaves
 * mapped on demand and published with compare-and-swap. Each slot is a seqlock over
 * a 64-byte entry: readers never block, writers to one fd exclude each other only.
 * An untracked fd costs one load and a NULL test. */
#ifndef PS_FDTABLE_H
#define PS_FDTABLE_H

#include <stdbool.h>
#include <stdint.h>
#include "addr.h"

enum ps_fd_kind {
	PS_FD_NONE = 0,
	PS_FD_LISTENER,  /* a listening socket whose selection has been decided */
	PS_FD_CONN,      /* a connection whose header named the original endpoints */
	PS_FD_HANDLED,   /* a trusted connection already dealt with, real addresses kept */
	PS_FD_SEND,      /* client side: a header still to be written (some of it sent) */
	PS_FD_OWN,       /* a descriptor of the shim's own (a kept-connection set's) */
	PS_FD_SEND_UDP,  /* client side: a UDP socket that sent to a listed destination */
	PS_FD_UDP,       /* a selected UDP socket: 'sent' is its slot (shim/recv/udp.c), 'src'
			  * the original client it is connected to, if any */
	PS_FD_KEPT,      /* a trusted connection kept aside: the shim's, not yet handed over */
	PS_FD_PENDING,   /* inherited, provably unread, its header not complete at load:
			  * 'src' is the proxy, 'sent' the deadline (shim/recv/inherit.c) */
};

/* One 64-byte entry whose first two words mean what its kind says: each kind reads and
 * writes its own names (the layout is what PROXYSHIM_INHERIT carries, versioned). */
struct ps_fdinfo {
	uint8_t kind;        /* enum ps_fd_kind */
	union {
		uint8_t applies;     /* LISTENER: the shim applies to it (PROXYSHIM_PORTS) */
		uint8_t version;     /* SEND: the header version, 1 or 2 */
		uint8_t udp_flags;   /* UDP: PS_UDP_*; SEND_UDP: PS_SEND_UDP_* */
	};
	uint16_t family;     /* the socket's own family (AF_INET/AF_INET6) */
	union {
		uint32_t lflags;     /* LISTENER: PS_LISTENER_* */
		uint32_t progress;   /* SEND: header progress and sharing state (send/send.c) */
		uint32_t slot;       /* UDP: its socket slot (recv/udp.c) */
		uint32_t deadline;   /* PENDING: the header's deadline, the low 32 bits of
				      * the monotonic clock in ms (recv/inherit.c) */
	};
	uint64_t cookie;     /* identity: the socket's SO_COOKIE, unique for the kernel's
			      * lifetime, checked before an entry is believed (a number
			      * reused behind the shim's back has another cookie) */
	union {
		struct {
			struct ps_addr src;  /* CONN, SEND: the header's source, the client */
			struct ps_addr dst;  /* CONN, SEND: the header's destination */
		};
		struct {             /* LISTENER with PS_LISTENER_UNNESTED: the
				      * application's epoll registration the shim could
				      * not nest its set into, retried when one is needed */
			int32_t epfd;
			uint32_t events;
			uint64_t data;
		} reg;
	};
};

/* LISTENER flags (lflags). */
#define PS_LISTENER_UNNESTED 1u  /* in an epoll set the shim could not nest into */
#define PS_LISTENER_WATCHED 2u   /* registered in an epoll set by the application */
#define PS_LISTENER_DEFERRED 4u  /* its TCP_DEFER_ACCEPT is the shim's (recv/accept.c) */

/* Highest fd + 1 the table can hold. */
#define PS_FD_LIMIT (1u << 24)

/* Snapshot of fd's entry; false (and kind NONE) when nothing is recorded. */
bool ps_fd_get(int fd, struct ps_fdinfo *out);

/* Same, but only kind, flags, family, the third field and cookie (the first two words;
 * the rest of *out is not written): the lighter read for data paths that need no
 * addresses. */
bool ps_fd_get_head(int fd, struct ps_fdinfo *out);

/* Records info for fd; false if fd is beyond the table, memory for it is lacking, or
 * its slot stayed busy (a signal handler interrupting a write to the same fd). */
bool ps_fd_set(int fd, const struct ps_fdinfo *info);

/* Forgets fds first..last (inclusive). */
void ps_fd_clear(unsigned first, unsigned last);

/* After fd 'to' became a copy of 'from' (dup family): to gets from's entry. */
void ps_fd_copy(int from, int to);

/* In a fork child: a write another thread had begun when fork copied the table never
 * finishes here; such entries are dropped so that no one waits for them. */
void ps_fd_fork_child(void);

/* Calls fn for every fd with an entry, in increasing order. */
void ps_fd_each(void (*fn)(int fd, const struct ps_fdinfo *info, void *ctx), void *ctx);

/* SO_COOKIE of a socket, 0 if it has none. */
uint64_t ps_fd_cookie(int fd);

#endif
