/* The count of this process's threads inside the real accept on a listener number: a
 * thread holding kept connections leaves a new connection to them (accept.c,
 * sibling_takes). It lives in the listener number's slot of keep.c, as one word: a
 * generation (high half) and the count (low half). A number closed, given to another
 * listener (dup2) or listened on anew, and a fork child's every number, start a new
 * generation: a thread still blocked on a socket the number no longer names is not
 * counted. A thread that left accept without returning is counted off when it exits
 * (cancelled inside accept) or at its next accept on a selected listener (a signal
 * handler long-jumped out). A count still wrong costs one wait: a word whose threads
 * took nothing in a whole wait is not believed again until it changes. */
#ifndef PS_ACCEPTORS_H
#define PS_ACCEPTORS_H

#include <stdint.h>
#include <sys/socket.h>

struct ps_acceptors {
	_Atomic uint64_t word;     /* generation << 32 | count */
	_Atomic uint64_t doubted;  /* a word not believed (ps_acceptors_doubt) */
};

/* At load: the thread-exit hook that counts off a thread cancelled inside accept. */
void ps_acceptors_init(void);

/* The real accept4 on lfd, counted in a (NULL: not counted) while in it. */
int ps_acceptors_accept(struct ps_acceptors *a, int lfd, struct sockaddr *sa, socklen_t *sl,
			int flags);

/* How many threads are counted in a now (0 for NULL, or while the word is doubted);
 * *word: the word read, for ps_acceptors_doubt. */
unsigned ps_acceptors(struct ps_acceptors *a, uint64_t *word);

/* The threads counted in 'word' took nothing in a whole wait: not believed while a
 * still holds it. */
void ps_acceptors_doubt(struct ps_acceptors *a, uint64_t word);

/* The number is a new listener's, or none: a new generation, nobody counted. */
void ps_acceptors_reset(struct ps_acceptors *a);

#endif
