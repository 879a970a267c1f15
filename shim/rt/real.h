/* The one way the libraries call libc: the functions of shim/rt/libc_calls.h, resolved
 * once with dlsym(RTLD_NEXT), called as real_NAME(...). Until they are resolved
 * (another library's constructor can call us first), real_NAME falls back to the raw
 * system call the list names: no malloc, no lock, signal-safe. */
#ifndef PS_REAL_H
#define PS_REAL_H

#include <spawn.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libc_calls.h"
#include "sysnr.h"

#define PS_LIBC_FIELD(name, ret, type, params, args, fallback, need) ret(*name) type;
struct ps_real {
	PS_LIBC_CALLS(PS_LIBC_FIELD, PS_LIBC_FIELD)
};
#undef PS_LIBC_FIELD

extern struct ps_real ps_real;

/* A raw system call that never goes through an interposer, ours included (the
 * libraries export syscall() for libuv's sake): the fallback of the real_* calls before
 * libc is resolved, and the shim's own raw calls (declared in sysnr.h). Sets errno
 * like syscall(). */

/* The six arguments of a syscall()-style call into a[]: all six, whatever the caller
 * passed, as libc's syscall() reads them (the kernel ignores the extra ones). */
#define PS_SYSCALL_ARGS(a, last)                        \
	do {                                            \
		va_list ap_;                            \
		va_start(ap_, last);                    \
		for (int i_ = 0; i_ < 6; i_++)          \
			(a)[i_] = va_arg(ap_, long);    \
		va_end(ap_);                            \
	} while (0)

/* Resolves every pointer; a hook resolving to itself (library loaded twice) is fatal. */
void ps_real_resolve(void);

/* A fallback with no raw equivalent that keeps libc's semantics: resolve now, call. */
#define PS_LAZY(name, args) (ps_real_resolve(), ps_real.name args)

#define PS_LIBC_CALL(name, ret, type, params, args, fallback, need)  \
	static inline ret real_##name params                        \
	{                                                            \
		if (ps_real.name)                                    \
			return ps_real.name args;                    \
		return (ret)(fallback);                              \
	}
#define PS_LIBC_CALL_VOID(name, ret, type, params, args, fallback, need) \
	static inline void real_##name params                           \
	{                                                                \
		if (ps_real.name)                                        \
			ps_real.name args;                               \
		else                                                     \
			(void)(fallback);                                \
	}
PS_LIBC_CALLS(PS_LIBC_CALL, PS_LIBC_CALL_VOID)
#undef PS_LIBC_CALL
#undef PS_LIBC_CALL_VOID

#endif
