/* Descriptor-lifetime interposers, in both libraries: keep the fd table in step with
 * the kernel (close forgets, dups copy) and notice when the application closes the
 * shim's log descriptor. */
#include "log.h"
#include "real.h"
#include "shim.h"

#include <fcntl.h>
#include <stdarg.h>

void (*ps_on_forget)(unsigned first, unsigned last);
void (*ps_on_copy)(int from, int to);
void (*ps_on_exec)(bool returned);

static void forget(unsigned first, unsigned last)
{
	struct ps_fdinfo e;
	/* Only listeners, the shim's own descriptors and headers to send (their shared
	 * slots) concern ps_on_forget: spare the common close of a connection the search. */
	bool tell = ps_on_forget &&
		    (first != last || (ps_fd_get((int)first, &e) &&
				       (e.kind == PS_FD_LISTENER || e.kind == PS_FD_OWN ||
					e.kind == PS_FD_KEPT || e.kind == PS_FD_SEND)));
	ps_fd_clear(first, last);
	ps_log_fd_closed(first, last);
	if (tell)
		ps_on_forget(first, last);
}

/* After a dup-family call returned to (or failed): to now mirrors from. What 'to'
 * was before (a listener, a kept connection) was closed by the call. */
static int copied(int from, int to)
{
	if (to >= 0 && to != from) {
		forget((unsigned)to, (unsigned)to);
		ps_fd_copy(from, to);
		if (ps_on_copy)
			ps_on_copy(from, to);
	}
	return to;
}

PS_EXPORT int close(int fd)
{
	if (fd >= 0)
		forget((unsigned)fd, (unsigned)fd);
	return real_close(fd);
}

PS_EXPORT int dup(int fd)
{
	return copied(fd, real_dup(fd));
}

PS_EXPORT int dup2(int fd, int to)
{
	return copied(fd, real_dup2(fd, to));
}

PS_EXPORT int dup3(int fd, int to, int flags)
{
	return copied(fd, real_dup3(fd, to, flags));
}

/* The third argument, an int or a pointer: passed on as a long (the same register in
 * the ABI); F_DUPFD copies carry the fd's entry. */
static int fcntl_done(int fd, int cmd, int r)
{
	return cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC ? copied(fd, r) : r;
}

#define THIRD_ARG(after, out)                    \
	do {                                     \
		va_list ap_;                     \
		va_start(ap_, after);            \
		out = va_arg(ap_, long);         \
		va_end(ap_);                     \
	} while (0)

PS_EXPORT int fcntl(int fd, int cmd, ...)
{
	long arg;
	THIRD_ARG(cmd, arg);
	return fcntl_done(fd, cmd, real_fcntl(fd, cmd, arg));
}

PS_EXPORT int fcntl64(int fd, int cmd, ...)
{
	long arg;
	THIRD_ARG(cmd, arg);
	return fcntl_done(fd, cmd, real_fcntl64(fd, cmd, arg));
}

PS_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		forget(first, last);
	return real_close_range(first, last, flags);
}

PS_EXPORT void closefrom(int lowfd)
{
	if (lowfd >= 0)
		forget((unsigned)lowfd, ~0u);
	real_closefrom(lowfd);
}
