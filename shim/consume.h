/* Reading the PROXY header off a new connection: peek, wait, parse, consume exactly
 * the header's bytes. Application bytes are never read. */
#ifndef PS_CONSUME_H
#define PS_CONSUME_H

#include "config.h"
#include "pp.h"

enum ps_take {
	PS_TAKE_OK,    /* h holds a valid header, removed from the socket */
	PS_TAKE_NONE,  /* optional policy: no header; the socket is untouched */
	PS_TAKE_BAD,   /* *why says what went wrong; the caller closes the connection */
};

/* Waits at most c->timeout_ms for a complete header on fd, whatever its blocking mode.
 * h's address fields are valid on PS_TAKE_OK (its TLV pointer is not). */
enum ps_take ps_take_header(int fd, const struct ps_config *c, struct pp_header *h,
			    const char **why);

#endif
