/* syscall(), in both libraries: libuv (dig, BIND 9.18) moves datagrams with
 * syscall(SYS_sendmmsg / SYS_recvmmsg, ...) instead of libc's functions. Those numbers,
 * when the library handles datagrams, go to the libc-named interposers (through the
 * dynamic linker, so a second preloaded library sees them too); every other call goes
 * on to libc unchanged. */
#include "real.h"
#include "shim.h"

#include <stdarg.h>

#undef syscall

bool (*ps_syscall_takes)(long n);

/* Six arguments are read whatever the caller passed, as libc's syscall() does (hence
 * no ASan on these reads). */
PS_EXPORT __attribute__((no_sanitize("address"))) long syscall(long n, ...)
{
	long a[6];
	PS_SYSCALL_ARGS(a, n);
	if (ps_syscall_takes && ps_syscall_takes(n)) {
		if (n == SYS_sendmmsg)
			return sendmmsg((int)a[0], (struct mmsghdr *)a[1], (unsigned)a[2], (int)a[3]);
		if (n == SYS_recvmmsg)
			return recvmmsg((int)a[0], (struct mmsghdr *)a[1], (unsigned)a[2], (int)a[3],
					(struct timespec *)a[4]);
	}
	return ps_real.syscall ? ps_real.syscall(n, a[0], a[1], a[2], a[3], a[4], a[5])
			       : ps_syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
