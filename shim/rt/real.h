/* The libc functions the shim interposes, resolved once with dlsym(RTLD_NEXT).
 * Until they are (another library's constructor can call us first), the real_*
 * wrappers fall back to the raw system call: no malloc, no lock, signal-safe. */
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

#include "sysnr.h"

struct ps_real {
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*getsockname)(int, struct sockaddr *, socklen_t *);
	int (*close)(int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*close_range)(unsigned, unsigned, int);
	void (*closefrom)(int);
	ssize_t (*recv)(int, void *, size_t, int);
	/* receiving side: listeners and readiness (kept connections) */
	int (*listen)(int, int);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
		       const sigset_t *);
	int (*__poll_chk)(struct pollfd *, nfds_t, int, size_t);
	int (*__ppoll_chk)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *,
			   size_t);
	/* UDP, receiving side */
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	/* sending side */
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned, int, struct timespec *);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*sendfile64)(int, int, off64_t *, size_t);
	ssize_t (*splice)(int, off64_t *, int, off64_t *, size_t, unsigned);
	ssize_t (*__read_chk)(int, void *, size_t, size_t);
	ssize_t (*__recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*__recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *,
				  socklen_t *);
	long (*syscall)(long, ...);
	/* exec family */
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*execveat)(int, const char *, char *const[], char *const[], int);
	int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			    const posix_spawnattr_t *, char *const[], char *const[]);
	/* shell commands (glibc spawns them internally) */
	int (*system)(const char *);
	FILE *(*popen)(const char *, const char *);
	int (*pclose)(FILE *);
	int (*fclose)(FILE *);
};

extern struct ps_real ps_real;

/* A raw system call that never goes through an interposer, ours included (the
 * libraries export syscall() for libuv's sake): the fallback of every real_* call
 * before libc is resolved, and of the shim's own raw calls. Sets errno like syscall(). */
long ps_syscall(long n, ...);
#define syscall ps_syscall

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

#define PS_REAL_OR_SYS(fn, sys, ...) \
	(ps_real.fn ? ps_real.fn(__VA_ARGS__) : (__typeof__(ps_real.fn(__VA_ARGS__)))syscall(sys, __VA_ARGS__))

static inline int real_accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{
	return PS_REAL_OR_SYS(accept4, SYS_accept4, fd, a, l, flags);
}
static inline int real_getpeername(int fd, struct sockaddr *a, socklen_t *l)
{
	return PS_REAL_OR_SYS(getpeername, SYS_getpeername, fd, a, l);
}
static inline int real_getsockname(int fd, struct sockaddr *a, socklen_t *l)
{
	return PS_REAL_OR_SYS(getsockname, SYS_getsockname, fd, a, l);
}
static inline int real_close(int fd)
{
	return PS_REAL_OR_SYS(close, SYS_close, fd);
}
static inline int real_dup(int fd)
{
	return PS_REAL_OR_SYS(dup, SYS_dup, fd);
}
static inline int real_dup2(int fd, int to)
{
	return ps_real.dup2 ? ps_real.dup2(fd, to) : (int)ps_sys_dup2(fd, to);
}
static inline int real_dup3(int fd, int to, int flags)
{
	return PS_REAL_OR_SYS(dup3, SYS_dup3, fd, to, flags);
}
static inline int real_fcntl(int fd, int cmd, long arg)
{
	return PS_REAL_OR_SYS(fcntl, SYS_fcntl, fd, cmd, arg);
}
static inline int real_close_range(unsigned first, unsigned last, int flags)
{
	return PS_REAL_OR_SYS(close_range, SYS_close_range, first, last, flags);
}
static inline ssize_t real_recv(int fd, void *buf, size_t n, int flags)
{
	return ps_real.recv ? ps_real.recv(fd, buf, n, flags)
			    : syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL);
}
/* The real function, resolving now if called before the constructor (no raw
 * equivalent that keeps the libc semantics). */
#define REAL_LAZY(fn) (ps_real.fn ? ps_real.fn : (ps_real_resolve(), ps_real.fn))

static inline int real_listen(int fd, int backlog)
{
	return PS_REAL_OR_SYS(listen, SYS_listen, fd, backlog);
}
static inline int real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	return PS_REAL_OR_SYS(epoll_ctl, SYS_epoll_ctl, epfd, op, fd, ev);
}

/* Sending side: the raw call when libc is not resolved yet. The FORTIFY entries fall
 * back to the plain call (their length check needs libc). */
static inline int real_connect(int fd, const struct sockaddr *a, socklen_t l)
{
	return PS_REAL_OR_SYS(connect, SYS_connect, fd, a, l);
}
static inline int real_getsockopt(int fd, int level, int name, void *v, socklen_t *l)
{
	return PS_REAL_OR_SYS(getsockopt, SYS_getsockopt, fd, level, name, v, l);
}
static inline ssize_t real_send(int fd, const void *buf, size_t n, int flags)
{
	return ps_real.send ? ps_real.send(fd, buf, n, flags)
			    : syscall(SYS_sendto, fd, buf, n, flags, NULL, 0);
}

#endif
