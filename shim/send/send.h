/* Sending side: writes a PROXY header first on connections to configured destinations
 * (libproxyshim-client.so). */
#ifndef PS_SEND_H
#define PS_SEND_H

#include <stdbool.h>
#include <sys/socket.h>
#include "config.h"

/* The configuration when PROXYSHIM_SEND_TO is set and the constructor has run. */
const struct ps_config *ps_send_active(void);

/* After the real connect() returned r on fd: a TCP connection to a selected destination
 * gets its header recorded, and written now if the connect completed. Returns r, or -1
 * if writing the header failed (errno set). */
int ps_send_connected(int fd, const struct sockaddr *dst, socklen_t len, int r);

/* Before any application I/O on fd: finishes a pending header. 0 when nothing is
 * pending any more; -1 with errno: EAGAIN on a non-blocking socket not ready yet,
 * ECONNRESET when bytes left past the shim first (the connection is then reset),
 * EPIPE in a fork child that could not share the header's state. */
int ps_send_flush(int fd);

/* At load: the table shared with fork children, fork handlers, the dup hook. */
void ps_send_init(void);

/* After fd 'to' became a copy of pending 'from': the header is known written for both
 * once it is through either. */
void ps_send_copied(int from, int to);

/* Before exec: every pending header the new program would inherit is finished without
 * waiting, or its connection reset (logged). */
void ps_send_exec(void);

/* Relay mode: fd is an inbound connection this thread just accepted. */
void ps_send_accepted(int fd);

#endif
