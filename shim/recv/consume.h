/* Reading the PROXY header off a new connection: peek, parse, consume exactly the
 * header's bytes. Application bytes are never read. */
#ifndef PS_CONSUME_H
#define PS_CONSUME_H

#include <stdbool.h>
#include "config.h"
#include "pp.h"

enum ps_take {
	PS_TAKE_OK,    /* h holds a valid header, removed from the socket */
	PS_TAKE_NONE,  /* optional policy: no header; the socket is untouched */
	PS_TAKE_BAD,   /* *why says what went wrong; the caller closes the connection */
	PS_TAKE_MORE,  /* ps_try_header only: not complete yet */
};

/* Waits at most c->timeout_ms for a complete header on fd, whatever its blocking mode.
 * h's address fields are valid on PS_TAKE_OK (its TLV pointer is not). */
enum ps_take ps_take_header(int fd, const struct ps_config *c, struct pp_header *h,
			    const char **why);

/* The same with ms milliseconds instead of c->timeout_ms (the rest of a deadline). */
enum ps_take ps_take_header_within(int fd, const struct ps_config *c, struct pp_header *h,
				   const char **why, long long ms);

/* ps_try_header flags. */
#define PS_TRY_KEPT 1     /* fd was kept aside before: its SO_RCVLOWAT may be raised */
#define PS_TRY_HUP 2      /* the peer is known to have hung up */
#define PS_TRY_EXPIRED 4  /* the deadline has passed: decide now, never PS_TAKE_MORE */

/* One look without waiting. On PS_TAKE_MORE, SO_RCVLOWAT is left at the bytes still
 * needed, so that poll/epoll report fd readable only when there is progress to make
 * (or the peer hung up); otherwise it is back at 1. *raised (if not NULL): whether it
 * is left above 1, for the caller to pass PS_TRY_KEPT next time (a system call saved
 * on every header that simply came late). */
enum ps_take ps_try_header(int fd, const struct ps_config *c, struct pp_header *h,
			   const char **why, int flags, bool *raised);

#endif
