/* Resolution of the next definition of every interposed symbol. */
#include "real.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct ps_real ps_real;

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

#define PS_LIBC_RESOLVE(name, ret, type, params, args, fallback, need) \
	__atomic_store_n(&ps_real.name, (__typeof__(ps_real.name))next(#name, need), __ATOMIC_RELEASE);

void ps_real_resolve(void)
{
	PS_LIBC_CALLS(PS_LIBC_RESOLVE, PS_LIBC_RESOLVE)
}
