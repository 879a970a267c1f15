/* poll/ppoll and select/pselect that also wait for kept connections: the set of every
 * listener they watch that holds some (shim/recv/keep.h) is added to the call, and its
 * readiness is reported as the listener's. */
#ifndef PS_KEEP_WAIT_H
#define PS_KEEP_WAIT_H

#include <poll.h>
#include <sys/select.h>

/* 'call' runs the real function on the (possibly extended) arguments. */
typedef int (*ps_poll_call)(struct pollfd *fds, nfds_t n, void *ctx);
int ps_keep_poll(struct pollfd *fds, nfds_t n, ps_poll_call call, void *ctx);
typedef int (*ps_select_call)(int nfds, fd_set *r, fd_set *w, fd_set *e, void *ctx);
int ps_keep_select(int nfds, fd_set *r, fd_set *w, fd_set *e, ps_select_call call, void *ctx);

#endif
