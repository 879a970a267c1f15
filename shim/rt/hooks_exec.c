/* Exec-family interposers: every entry builds the child's environment through one call
 * (ps_exec), which adds the state of the sockets the child inherits. glibc calls
 * execve/execvpe internally without the PLT, so each public entry is hooked. */
#include "inherit.h"
#include "real.h"
#include "shim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum exec_kind { EX_VE, EX_VPE, EX_FD, EX_AT, EX_SPAWN, EX_SPAWNP };

struct exec_call {
	enum exec_kind kind;
	const char *path;
	int fd, flags;
	char *const *argv;
	pid_t *pid;
	const posix_spawn_file_actions_t *fa;
	const posix_spawnattr_t *attr;
};

static int call(const struct exec_call *x, char *const *env)
{
	switch (x->kind) {
	case EX_VE:
		return real_execve(x->path, x->argv, env);
	case EX_VPE:
		return real_execvpe(x->path, x->argv, env);
	case EX_FD:
		return real_fexecve(x->fd, x->argv, env);
	case EX_AT:
		return real_execveat(x->fd, x->path, x->argv, env, x->flags);
	case EX_SPAWN:
		return real_posix_spawn(x->pid, x->path, x->fa, x->attr, x->argv, env);
	default:
		return real_posix_spawnp(x->pid, x->path, x->fa, x->attr, x->argv, env);
	}
}

static int run(const struct exec_call *x, char *const *env)
{
	bool replaces = x->kind != EX_SPAWN && x->kind != EX_SPAWNP;
	if (replaces && ps_on_exec)
		ps_on_exec(false);
	int r = call(x, env);
	if (replaces && ps_on_exec) {
		int saved = errno;
		ps_on_exec(true);
		errno = saved;
	}
	return r;
}

/* "PROXYSHIM_CHAIN=PID", set once by the constructor; empty before it ran. */
static char chain_var[sizeof(PS_CHAIN_VAR) + 24];

bool ps_chain_start(const char **first)
{
	const char *v = getenv(PS_CHAIN_VAR);
	if (v)
		snprintf(chain_var, sizeof(chain_var), PS_CHAIN_VAR "=%.20s", v);
	else
		snprintf(chain_var, sizeof(chain_var), PS_CHAIN_VAR "=%d", (int)getpid());
	*first = chain_var + sizeof(PS_CHAIN_VAR);
	return !v;
}

static bool has_chain(char *const *envp)
{
	for (size_t i = 0; envp && envp[i]; i++)
		if (!strncmp(envp[i], PS_CHAIN_VAR "=", sizeof(PS_CHAIN_VAR)))
			return true;
	return false;
}

/* env plus the chain variable, in out (which may already hold env, with room for one
 * more pointer). */
static char *const *add_chain(char *const *env, char **out)
{
	size_t k = 0;
	if (env == out)
		k = ps_env_count(out);
	else
		while (env && env[k])
			out[k] = env[k], k++;
	out[k++] = chain_var;
	out[k] = NULL;
	return out;
}

/* Up to this much state goes on the stack; more is mapped (and unmapped if the call
 * returns: in a vfork child whose exec succeeds, the parent keeps that mapping). */
#define STACK_ROOM 65536

/* Never malloc: this may run in a vfork child. */
static int ps_exec(const struct exec_call *x, char *const *envp)
{
	size_t n = ps_env_count(envp), room = ps_exec_prepare();
	/* The copy is on the stack: a huge environment goes without the marker (the child
	 * then logs at info as a chain's first program) rather than risk a small stack. */
	bool mark = chain_var[0] && n < 4096 && ps_exec_active() && !has_chain(envp);
	if (n > PS_ENV_MAX || (!room && !mark))
		return run(x, envp);
	size_t cap = n + ps_child_env_vars(room) + 2;  /* + the chain variable */
	char *out[cap];
	char small[room && room <= STACK_ROOM ? room : 1];
	char *buf = small;
	if (room > STACK_ROOM &&
	    (buf = mmap(NULL, room, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			0)) == MAP_FAILED)
		return run(x, envp);  /* the child proves or leaves its sockets alone */
	char *const *env = room ? ps_child_env(envp, out, cap - 1, buf, room) : envp;
	int r = run(x, mark ? add_chain(env, out) : env);
	if (buf != small) {
		int saved = errno;
		munmap(buf, room);
		errno = saved;
	}
	return r;
}

PS_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return ps_exec(&(struct exec_call){.kind = EX_VE, .path = path, .argv = argv}, envp);
}

PS_EXPORT int execv(const char *path, char *const argv[])
{
	return ps_exec(&(struct exec_call){.kind = EX_VE, .path = path, .argv = argv}, environ);
}

PS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return ps_exec(&(struct exec_call){.kind = EX_VPE, .path = file, .argv = argv}, envp);
}

PS_EXPORT int execvp(const char *file, char *const argv[])
{
	return ps_exec(&(struct exec_call){.kind = EX_VPE, .path = file, .argv = argv},
		       environ);
}

PS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	return ps_exec(&(struct exec_call){.kind = EX_FD, .fd = fd, .argv = argv}, envp);
}

PS_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
		       int flags)
{
	return ps_exec(&(struct exec_call){.kind = EX_AT, .fd = dirfd, .path = path,
					   .argv = argv, .flags = flags}, envp);
}

int ps_posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		   const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return ps_exec(&(struct exec_call){.kind = EX_SPAWN, .pid = pid, .path = path,
					   .fa = fa, .attr = attr, .argv = argv}, envp);
}

PS_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[],
			  char *const envp[])
{
	return ps_posix_spawn(pid, path, fa, attr, argv, envp);
}

PS_EXPORT int posix_spawnp(pid_t *pid, const char *file,
			   const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
			   char *const argv[], char *const envp[])
{
	return ps_exec(&(struct exec_call){.kind = EX_SPAWNP, .pid = pid, .path = file,
					   .fa = fa, .attr = attr, .argv = argv}, envp);
}

/* ---- the execl family: gather the NULL-terminated list, then as above ---- */

static size_t count_args(const char *arg, va_list ap)
{
	size_t n = 0;
	va_list c;
	va_copy(c, ap);
	while (arg && va_arg(c, char *))
		n++;
	va_end(c);
	return n;
}

/* argv has room for n + 2: arg, the n others, NULL (read from the list too). */
static void collect(char **argv, const char *arg, size_t n, va_list *ap)
{
	argv[0] = (char *)arg;
	for (size_t i = 1; arg && i <= n + 1; i++)
		argv[i] = va_arg(*ap, char *);
	argv[n + 1] = NULL;
}

#define EXECL_BODY(kind_, with_env)                                                     \
	va_list ap;                                                                     \
	va_start(ap, arg);                                                              \
	size_t n = count_args(arg, ap);                                                 \
	char *argv[n + 2];                                                              \
	collect(argv, arg, n, &ap);                                                     \
	char *const *envp = with_env ? va_arg(ap, char *const *) : environ;             \
	va_end(ap);                                                                     \
	return ps_exec(&(struct exec_call){.kind = kind_, .path = path, .argv = argv}, envp)

PS_EXPORT int execl(const char *path, const char *arg, ...)
{
	EXECL_BODY(EX_VE, 0);
}

PS_EXPORT int execlp(const char *path, const char *arg, ...)
{
	EXECL_BODY(EX_VPE, 0);
}

PS_EXPORT int execle(const char *path, const char *arg, ...)
{
	EXECL_BODY(EX_VE, 1);
}
