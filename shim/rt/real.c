/* Resolution of the next definition of every interposed symbol. */
#include "real.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct ps_real ps_real;

#undef syscall

static long raw6(long n, long a, long b, long c, long d, long e, long f)
{
	long r = ps_sys_raw6(n, a, b, c, d, e, f);
	if (r < 0 && r > -4096) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* Like libc's syscall(), it reads six arguments whatever the caller passed: the extra
 * ones are never used by the kernel, but ASan would flag the reads. */
__attribute__((no_sanitize("address"))) long ps_syscall(long n, ...)
{
	long a[6];
	PS_SYSCALL_ARGS(a, n);
	return raw6(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static void die(const char *fmt, const char *name)
{
	char msg[200];
	int n = snprintf(msg, sizeof(msg), fmt, name);
	if (ps_syscall(SYS_write, 2, msg, (size_t)n) < 0) {}
	_exit(1);
}

static const char *base(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static void *next(const char *name, int required)
{
	void *p = dlsym(RTLD_NEXT, name);
	Dl_info mine, theirs;
	/* The next definition living in a library of our own name: a second copy of the
	 * shim is loaded, and calling it would apply the shim twice. */
	if (p && dladdr(p, &theirs) && dladdr((void *)ps_real_resolve, &mine) &&
	    theirs.dli_fname && mine.dli_fname &&
	    !strcmp(base(theirs.dli_fname), base(mine.dli_fname)))
		die("proxyshim: %s resolves to a second copy of the shim "
		    "(preloaded twice?)\n", name);
	if (!p && required)
		die("proxyshim: libc has no %s\n", name);
	return p;
}

#define RESOLVE(fn, required) \
	__atomic_store_n(&ps_real.fn, (__typeof__(ps_real.fn))next(#fn, required), __ATOMIC_RELEASE)

void ps_real_resolve(void)
{
	RESOLVE(accept4, 1);
	RESOLVE(getpeername, 1);
	RESOLVE(getsockname, 1);
	RESOLVE(close, 1);
	RESOLVE(dup, 1);
	RESOLVE(dup2, 1);
	RESOLVE(dup3, 1);
	RESOLVE(fcntl, 1);
	RESOLVE(fcntl64, 0);      /* glibc >= 2.28 */
	RESOLVE(close_range, 0);  /* glibc >= 2.34 */
	RESOLVE(closefrom, 0);
	RESOLVE(recv, 1);
	RESOLVE(listen, 1);
	RESOLVE(epoll_ctl, 1);
	RESOLVE(poll, 1);
	RESOLVE(ppoll, 1);
	RESOLVE(select, 1);
	RESOLVE(pselect, 1);
	RESOLVE(__poll_chk, 0);   /* glibc >= 2.16 */
	RESOLVE(__ppoll_chk, 0);
	RESOLVE(bind, 1);
	RESOLVE(epoll_wait, 1);
	RESOLVE(epoll_pwait, 1);
	RESOLVE(connect, 1);
	RESOLVE(getsockopt, 1);
	RESOLVE(read, 1);
	RESOLVE(readv, 1);
	RESOLVE(recvfrom, 1);
	RESOLVE(recvmsg, 1);
	RESOLVE(recvmmsg, 1);
	RESOLVE(write, 1);
	RESOLVE(writev, 1);
	RESOLVE(send, 1);
	RESOLVE(sendto, 1);
	RESOLVE(sendmsg, 1);
	RESOLVE(sendmmsg, 1);
	RESOLVE(sendfile, 1);
	RESOLVE(sendfile64, 1);
	RESOLVE(splice, 1);
	RESOLVE(__read_chk, 1);
	RESOLVE(__recv_chk, 1);
	RESOLVE(__recvfrom_chk, 1);
	RESOLVE(syscall, 1);
	RESOLVE(execve, 1);
	RESOLVE(execvpe, 1);
	RESOLVE(fexecve, 1);
	RESOLVE(execveat, 0);     /* glibc >= 2.34 */
	RESOLVE(posix_spawn, 1);
	RESOLVE(posix_spawnp, 1);
	RESOLVE(system, 1);
	RESOLVE(popen, 1);
	RESOLVE(pclose, 1);
	RESOLVE(fclose, 1);
}
