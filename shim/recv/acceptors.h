/* The count of this process's threads inside the real accept on a listener number: a
 * thread holding kept connections leaves a new connection to them (accept.c,
 * sibling_takes). It lives in the listener number's slot of keep.c, as one word: a
 * generation (high half) and the count (low half). A number closed, given to another
 * listener (dup2) or listened on anew, and a fork child's every number, start a new
 * generation: a thread still blocked on a socket the number no longer names is not
 * counted. A thread that left accept without returning is counted off when it exits
 * (cancelled inside accept) or at its next accept (a signal handler long-jumped out).
 * A count still wrong costs one wait: a word whose threads took nothing in a whole wait
 * is doubted, not believed until it changes or a thread counted before the doubt takes
 * a connection (the doubt was wrong: that thread was only run late). */
#ifndef PS_ACCEPTORS_H
#define PS_ACCEPTORS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct ps_acceptors {
	_Atomic uint64_t word;     /* generation << 32 | count */
	_Atomic uint64_t doubted;  /* a word not believed (ps_acceptors_doubt); 0: none */
	_Atomic uint32_t doubts;   /* how many doubts were made */
};

/* At load: the thread-exit hook that counts off a thread cancelled inside accept. */
void ps_acceptors_init(void);

/* At each accept: a record left by a jump out of an earlier one is counted off. */
void ps_acceptors_settle(void);

/* This thread goes into the real accept on a next, counted from now if a still holds
 * 'word' (the next ps_acceptors_accept on a counts it no more); false if another thread
 * entered or left meanwhile (two threads woken for one connection: look again). */
bool ps_acceptors_claim(struct ps_acceptors *a, uint64_t word);

/* The real accept4 on lfd, counted in a (NULL: not counted) while in it. */
int ps_acceptors_accept(struct ps_acceptors *a, int lfd, struct sockaddr *sa, socklen_t *sl,
			int flags);

/* How many threads are counted in a now (0 for NULL, or while the word is doubted);
 * *word: the word read, for ps_acceptors_doubt. */
unsigned ps_acceptors(struct ps_acceptors *a, uint64_t *word);

/* The threads counted in 'word' took nothing in a whole wait: not believed while a
 * still holds it, unless one of them takes a connection. */
void ps_acceptors_doubt(struct ps_acceptors *a, uint64_t word);

/* The number is a new listener's, or none: a new generation, nobody counted. */
void ps_acceptors_reset(struct ps_acceptors *a);

#endif
