/* system() and popen(), in both libraries: glibc starts their shell through its
 * internal posix_spawn, which no interposer sees, with the process's environment as it
 * is, so the state of the proxied connections the shell inherits would be lost on the
 * way (and a header still pending on one would not be dealt with). Both are made
 * here on the shim's own spawn (ps_posix_spawn), with glibc's observable behaviour:
 * /bin/sh -c, SIGINT and SIGQUIT ignored and SIGCHLD blocked in the caller while
 * system() waits, the child's signals as the caller had them; popen's streams are
 * closed in later popen children, and pclose waits for its child. */
#include "inherit.h"
#include "real.h"
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

static int wait_child(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

/* ---- system ---- */

/* Several threads may be inside system() at once: the first to enter ignores SIGINT
 * and SIGQUIT, the last to leave restores them. */
static pthread_mutex_t sys_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned sys_users;
static struct sigaction sys_int, sys_quit;

static int shell(const char *cmd)
{
	struct sigaction ign = {.sa_handler = SIG_IGN};
	sigset_t chld, mask, dflt;
	posix_spawnattr_t attr;
	pid_t pid;
	char *argv[] = {"sh", "-c", (char *)cmd, NULL};
	sigemptyset(&ign.sa_mask);
	pthread_mutex_lock(&sys_lock);
	if (sys_users++ == 0) {
		sigaction(SIGINT, &ign, &sys_int);
		sigaction(SIGQUIT, &ign, &sys_quit);
	}
	sigemptyset(&dflt);
	if (sys_int.sa_handler != SIG_IGN)
		sigaddset(&dflt, SIGINT);
	if (sys_quit.sa_handler != SIG_IGN)
		sigaddset(&dflt, SIGQUIT);
	pthread_mutex_unlock(&sys_lock);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &mask);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	posix_spawnattr_setsigmask(&attr, &mask);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
	int status = ps_posix_spawn(&pid, "/bin/sh", NULL, &attr, argv, environ) == 0
			     ? wait_child(pid)
			     : 127 << 8;  /* as if the shell had exited 127 */
	posix_spawnattr_destroy(&attr);
	pthread_mutex_lock(&sys_lock);
	if (--sys_users == 0) {
		sigaction(SIGINT, &sys_int, NULL);
		sigaction(SIGQUIT, &sys_quit, NULL);
	}
	pthread_mutex_unlock(&sys_lock);
	sigprocmask(SIG_SETMASK, &mask, NULL);
	return status;
}

PS_EXPORT int system(const char *cmd)
{
	if (!ps_exec_active())
		return real_system(cmd);
	return cmd ? shell(cmd) : shell("exit 0") == 0;
}

/* ---- popen / pclose ---- */

struct piped {
	FILE *f;
	int fd;        /* the stream's descriptor, known without touching a closed FILE */
	pid_t pid;
	struct piped *next;
};

static pthread_mutex_t pipes_lock = PTHREAD_MUTEX_INITIALIZER;
static struct piped *_Atomic pipes;

/* The child's end of the pipe onto fd 'to' (0 or 1); the streams of earlier popen
 * calls are not the child's to keep. */
static int child_actions(posix_spawn_file_actions_t *fa, int theirs, int to)
{
	posix_spawn_file_actions_init(fa);
	int r = posix_spawn_file_actions_adddup2(fa, theirs, to);
	for (struct piped *p = pipes; !r && p; p = p->next)
		if (p->fd != to)
			r = posix_spawn_file_actions_addclose(fa, p->fd);
	if (r)
		posix_spawn_file_actions_destroy(fa);
	return r;
}

static FILE *open_pipe(const char *cmd, bool rd, bool cloexec)
{
	int p[2], saved;
	posix_spawn_file_actions_t fa;
	char *argv[] = {"sh", "-c", (char *)cmd, NULL};
	struct piped *node = malloc(sizeof(*node));
	if (!node || pipe2(p, O_CLOEXEC) < 0) {
		free(node);
		return NULL;
	}
	int mine = rd ? p[0] : p[1], theirs = rd ? p[1] : p[0], to = rd ? 1 : 0;
	if (theirs == to) {  /* dup2 onto itself would keep O_CLOEXEC */
		int moved = real_fcntl(theirs, F_DUPFD_CLOEXEC, 3);
		real_close(theirs);
		theirs = moved;
	}
	pthread_mutex_lock(&pipes_lock);
	int err = theirs < 0 ? errno : child_actions(&fa, theirs, to);
	if (!err) {
		err = ps_posix_spawn(&node->pid, "/bin/sh", &fa, NULL, argv, environ);
		posix_spawn_file_actions_destroy(&fa);
	}
	if (theirs >= 0)
		real_close(theirs);
	if (!err && !cloexec)
		real_fcntl(mine, F_SETFD, 0);
	node->f = err ? NULL : fdopen(mine, rd ? "r" : "w");
	if (node->f) {
		node->fd = mine;
		node->next = pipes;
		pipes = node;
	}
	pthread_mutex_unlock(&pipes_lock);
	if (node->f)
		return node->f;
	saved = err ? err : errno;
	if (!err)
		wait_child(node->pid);
	real_close(mine);
	free(node);
	errno = saved;
	return NULL;
}

/* glibc's reading of the mode: 'r' or 'w' (not both), and 'e', in any order. */
PS_EXPORT FILE *popen(const char *cmd, const char *mode)
{
	bool rd = false, wr = false, cloexec = false;
	if (!ps_exec_active())
		return real_popen(cmd, mode);
	for (const char *m = mode; m && *m; m++) {
		if (*m == 'r')
			rd = true;
		else if (*m == 'w')
			wr = true;
		else if (*m == 'e')
			cloexec = true;
		else
			rd = wr = true;  /* invalid */
	}
	if (!mode || rd == wr) {
		errno = EINVAL;
		return NULL;
	}
	return open_pipe(cmd, rd, cloexec);
}

/* Takes f's record out of the list; NULL if f is not a stream of ours. */
static struct piped *unlist(FILE *f)
{
	struct piped **pp, *node = NULL;
	if (!atomic_load_explicit(&pipes, memory_order_relaxed))
		return NULL;
	pthread_mutex_lock(&pipes_lock);
	for (pp = (struct piped **)&pipes; *pp; pp = &(*pp)->next) {
		if ((*pp)->f == f) {
			node = *pp;
			*pp = node->next;
			break;
		}
	}
	pthread_mutex_unlock(&pipes_lock);
	return node;
}

/* As glibc's, where pclose is fclose: closing the stream waits for its child. */
static int close_piped(struct piped *node, FILE *f)
{
	real_fclose(f);
	int status = wait_child(node->pid);
	free(node);
	return status;
}

PS_EXPORT int pclose(FILE *f)
{
	struct piped *node = unlist(f);
	return node ? close_piped(node, f) : real_pclose(f);
}

PS_EXPORT int fclose(FILE *f)
{
	struct piped *node = unlist(f);
	return node ? close_piped(node, f) : real_fclose(f);
}
