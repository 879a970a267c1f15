/* What both libraries share: the export marker, the active configuration, and the
 * callbacks each library sets into the shared descriptor hooks (shim/rt/hooks_*.c). */
#ifndef PS_SHIM_H
#define PS_SHIM_H

#include <stdbool.h>
#include <sys/socket.h>
#include "config.h"
#include "fdtable.h"

#define PS_EXPORT __attribute__((visibility("default")))

/* Load time, in both libraries: resolves libc and parses the environment; on a bad
 * value prints `proxyshim: PROXYSHIM_X: "value": reason` and exits 1. */
void ps_load(struct ps_config *c);

/* The configuration once the constructor has run and PROXYSHIM_TRUSTED is set; NULL
 * while the shim is inert. */
const struct ps_config *ps_active(void);

/* Set by each library: the syscall() numbers it takes to its own interposers
 * (shim/rt/hooks_syscall.c); NULL: none. */
extern bool (*ps_syscall_takes)(long n);

/* Set by each library that needs it: told after the application closed a descriptor
 * range, or one fd that held a listener, a kept connection, a descriptor of the
 * shim's own or a header to send. */
extern void (*ps_on_forget)(unsigned first, unsigned last);

/* Set by the client library: told before an exec that replaces the process
 * (returned false) and again if that exec failed (true). Not for posix_spawn. */
extern void (*ps_on_exec)(bool returned);

/* Set by the client library: told after fd 'to' became a copy of 'from' (dup family). */
extern void (*ps_on_copy)(int from, int to);

#endif
