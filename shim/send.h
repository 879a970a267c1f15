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
 * pending any more; -1 with errno (EAGAIN on a non-blocking socket not ready yet). */
int ps_send_flush(int fd);

/* Relay mode: fd is an inbound connection this thread just accepted. */
void ps_send_accepted(int fd);

#endif
