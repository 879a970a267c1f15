/* Sockets that cross exec: the parent's state travels in PROXYSHIM_INHERIT, added to
 * the child's environment by the exec hooks and removed on arrival. Each entry names
 * a socket by SO_COOKIE and is accepted only for a socket the child really holds whose
 * real peer is trusted, so a forged value cannot set an address. */
#ifndef PS_INHERIT_H
#define PS_INHERIT_H

#include <stdbool.h>
#include <stddef.h>
#include "config.h"

#define PS_INHERIT_VAR "PROXYSHIM_INHERIT"
#define PS_INHERIT_MAX 4000     /* sockets carried across one exec: about 516 KB of
				 * environment, well inside the kernel's argument space */
#define PS_INHERIT_PER_VAR 900  /* entries per variable (the kernel takes at most
				 * 128 KiB per string): PROXYSHIM_INHERIT, _1, _2, ... */
#define PS_ENV_MAX 65536        /* larger environments are passed on unchanged */

/* Number of entries in envp (NULL counts as empty). */
static inline size_t ps_env_count(char *const *envp)
{
	size_t n = 0;
	while (envp && envp[n])
		n++;
	return n;
}

/* ---- what each library does at exec (shim/rt/hooks_exec.c is in both) ---- */

/* Before any exec or spawn: the receiving library returns the bytes of environment
 * its tracked sockets need in the child (0: nothing to carry); the client library
 * finishes or resets the headers still pending on inherited sockets, and returns 0. */
size_t ps_exec_prepare(void);

/* Whether the library is active: system() and popen() are the shim's own then. */
bool ps_exec_active(void);

/* The variables ps_child_env takes at most for that room. */
size_t ps_child_env_vars(size_t room);

/* The environment for a child about to be exec'd: envp without any PROXYSHIM_INHERIT*,
 * plus variables describing the tracked sockets it inherits. out has room for cap
 * pointers (envp's count + ps_child_env_vars(room) + 1), buf for room bytes. Returns
 * envp itself when there is nothing to carry. */
char *const *ps_child_env(char *const *envp, char **out, size_t cap, char *buf,
			  size_t room);


/* In each library's constructor: whether this program starts a chain; *first is the
 * PID that did (this one's when it does). Also readies the variable for the hooks. */
bool ps_chain_start(const char **first);

/* posix_spawn with the child's environment built as for every exec (hooks_exec.c):
 * for the shim's own spawns (system, popen). */
#include <spawn.h>
int ps_posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		   const posix_spawnattr_t *attr, char *const argv[], char *const envp[]);

/* Distinct inherited sockets looked at once at load (dups of one share an outcome). */
#define PS_SEEN_MAX 4096

/* At load: adopts the state carried from the parent. A connection from a trusted
 * proxy that arrived without state has its header taken only when the kernel proves
 * that no process ever read from it (inetd, systemd Accept=yes); otherwise it is left
 * untouched and logged. Never waits: a header still incomplete is taken on first use.
 * c is NULL when the shim is inert. */
void ps_inherit_init(const struct ps_config *c);

/* Nonzero once some inherited connection waits for its header to be taken. One load. */
extern unsigned char ps_inherit_pending;

/* Before the application's first use of fd (a read-family call; getpeername and
 * getsockname with 'always_wait'): takes a deferred header, waiting until the deadline
 * set at load on a blocking socket or when always_wait. 0 to go on (a refused
 * connection now reads EOF); -1 with errno EAGAIN when a non-blocking socket's header
 * is not complete yet. */
int ps_inherit_finish(int fd, bool always_wait);

static inline int ps_inherit_first_use(int fd, bool always_wait)
{
	return __builtin_expect(!__atomic_load_n(&ps_inherit_pending, __ATOMIC_RELAXED), 1)
		       ? 0
		       : ps_inherit_finish(fd, always_wait);
}

#endif
