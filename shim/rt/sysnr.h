/* Raw system calls, per architecture: the one place that knows how each CPU enters the
 * kernel and which calls it lacks. The shim makes raw calls only where libc must not be
 * used (before dlsym has resolved it, or to stay out of interposers, ours included).
 *
 * Every raw call the shim makes (grep 'SYS_' shim/) exists under its own name on every
 * architecture below, except those in the table, which a row maps to another call:
 *
 *   architecture  dup2                  epoll_wait
 *   x86_64        SYS_dup2              SYS_epoll_wait
 *   aarch64       SYS_dup3 (+ F_GETFD)  SYS_epoll_pwait (no signal mask)
 *
 * aarch64 has the generic system call table, which omits calls that a newer one covers.
 * Porting: add a row (the trap instruction in ps_sys_raw6 and the two choices), then
 * build with -Werror: a raw call missing there fails to compile, never falls back. */
#ifndef PS_SYSNR_H
#define PS_SYSNR_H

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define PS_ARCH "x86_64"
#define PS_DUP2_BY_DUP3 0
#define PS_EPOLL_WAIT_BY_PWAIT 0
#elif defined(__aarch64__)
#define PS_ARCH "aarch64"
#define PS_DUP2_BY_DUP3 1
#define PS_EPOLL_WAIT_BY_PWAIT 1
#else
#error "proxyshim: no raw system call table for this architecture: add a row to shim/rt/sysnr.h"
#endif

/* The kernel's own result: -errno in -4095..-1 on failure (the caller sets errno). */
static inline long ps_sys_raw6(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
	long r;
	register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return r;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = n, x0 __asm__("x0") = a, x1 __asm__("x1") = b,
		      x2 __asm__("x2") = c, x3 __asm__("x3") = d, x4 __asm__("x4") = e,
		      x5 __asm__("x5") = f;
	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
#endif
}

long ps_syscall(long n, ...);

/* dup2 as the kernel does it: onto itself, only a check that fd is open. */
static inline long ps_sys_dup2(int fd, int to)
{
#if PS_DUP2_BY_DUP3
	if (fd == to)
		return ps_syscall(SYS_fcntl, fd, F_GETFD) < 0 ? -1 : to;
	return ps_syscall(SYS_dup3, fd, to, 0);
#else
	return ps_syscall(SYS_dup2, fd, to);
#endif
}

static inline long ps_sys_epoll_wait(int epfd, void *ev, int max, int timeout)
{
#if PS_EPOLL_WAIT_BY_PWAIT
	return ps_syscall(SYS_epoll_pwait, epfd, ev, max, timeout, (void *)0, _NSIG / 8);
#else
	return ps_syscall(SYS_epoll_wait, epfd, ev, max, timeout);
#endif
}

#endif
