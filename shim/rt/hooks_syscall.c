/* syscall(), in both libraries: libuv (dig, BIND 9.18) moves datagrams with
 * syscall(SYS_sendmmsg / SYS_recvmmsg, ...) instead of libc's functions, and some
 * programs close or duplicate descriptors that way. Those numbers go to the
 * libc-named interposers (through the dynamic linker, so a second preloaded library
 * sees them too): the datagram ones when the library handles datagrams, the descriptor
 * ones always, so that no close escapes the fd table. Every other call goes on to libc
 * unchanged. */
#include "real.h"
#include "shim.h"

#include <stdarg.h>


bool (*ps_syscall_takes)(long n);

/* Six arguments are read whatever the caller passed, as libc's syscall() does (hence
 * no ASan on these reads). */
PS_EXPORT __attribute__((no_sanitize("address"))) long syscall(long n, ...)
{
	long a[6];
	PS_SYSCALL_ARGS(a, n);
	switch (n) {
	case SYS_close:
		return close((int)a[0]);
	case SYS_close_range:
		return close_range((unsigned)a[0], (unsigned)a[1], (int)a[2]);
	case SYS_dup3:
		return dup3((int)a[0], (int)a[1], (int)a[2]);
#ifdef SYS_dup2
	case SYS_dup2:
		return dup2((int)a[0], (int)a[1]);
#endif
	}
	if (ps_syscall_takes && ps_syscall_takes(n)) {
		if (n == SYS_sendmmsg)
			return sendmmsg((int)a[0], (struct mmsghdr *)a[1], (unsigned)a[2], (int)a[3]);
		if (n == SYS_recvmmsg)
			return recvmmsg((int)a[0], (struct mmsghdr *)a[1], (unsigned)a[2], (int)a[3],
					(struct timespec *)a[4]);
	}
	return real_syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
