/* The count of this process's threads inside the real accept on a listener number: a
 * thread holding kept connections leaves a new connection to them (accept.c,
 * sibling_takes). The count lives in the listener's slot of keep.c as one word: a
 * generation (high half) and the count (low half). A new listener on the number starts
 * a new generation, so a thread still blocked on a socket that number no longer names
 * is not counted for it; a thread that left accept without returning (cancelled, or
 * long-jumped out of a signal handler) is counted off when it exits or next accepts. */
#ifndef PS_ACCEPTORS_H
#define PS_ACCEPTORS_H

#include <stdint.h>
#include <sys/socket.h>

/* The real accept4 on lfd, counted in *count (NULL: not counted) while in it. */
int ps_acceptors_accept(_Atomic uint64_t *count, int lfd, struct sockaddr *sa, socklen_t *sl,
			int flags);

/* How many threads are counted in *count now (0 for NULL). */
unsigned ps_acceptors(_Atomic uint64_t *count);

/* A new listener takes the number whose count this is: the count starts anew, and
 * threads counted before are no longer (a fork child's counts start anew too). */
void ps_acceptors_reset(_Atomic uint64_t *count);

#endif
