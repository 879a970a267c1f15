/* Every libc function the libraries interpose or call, in one list (an X-macro): it
 * generates the table of real functions (struct ps_real), their resolution at load
 * (real.c) and the real_* calls the shim's own code makes (real.h). Internal code
 * calls libc only through real_* (make check-symbols checks that no library calls its
 * own exported names), and raw system calls only through ps_syscall.
 *
 * X(name, ret, type, params, args, fallback, need):
 *   ret, type   its return type and parameter types (as libc declares it)
 *   params/args real_name's parameter list and how it passes them on
 *   fallback    what real_name does before dlsym has resolved libc (another
 *               library's constructor may call the shim first): a raw system call
 *               chosen for the architecture (shim/rt/sysnr.h), or PS_LAZY: resolve
 *               now and call libc (no raw call keeps libc's semantics there)
 *   need        1: libc must have it (fatal at load otherwise); 0: newer glibc only
 * A void function (closefrom) uses XV with the same columns. */
#define PS_LIBC_CALLS(X, XV)                                                                      \
	X(accept4, int, (int, struct sockaddr *, socklen_t *, int),                                \
	  (int fd, struct sockaddr *a, socklen_t *l, int flags), (fd, a, l, flags),                \
	  ps_syscall(SYS_accept4, fd, a, l, flags), 1)                                             \
	X(getpeername, int, (int, struct sockaddr *, socklen_t *),                                 \
	  (int fd, struct sockaddr *a, socklen_t *l), (fd, a, l),                                  \
	  ps_syscall(SYS_getpeername, fd, a, l), 1)                                                \
	X(getsockname, int, (int, struct sockaddr *, socklen_t *),                                 \
	  (int fd, struct sockaddr *a, socklen_t *l), (fd, a, l),                                  \
	  ps_syscall(SYS_getsockname, fd, a, l), 1)                                                \
	X(close, int, (int), (int fd), (fd), ps_syscall(SYS_close, fd), 1)                         \
	X(dup, int, (int), (int fd), (fd), ps_syscall(SYS_dup, fd), 1)                             \
	X(dup2, int, (int, int), (int fd, int to), (fd, to), ps_sys_dup2(fd, to), 1)               \
	X(dup3, int, (int, int, int), (int fd, int to, int flags), (fd, to, flags),                \
	  ps_syscall(SYS_dup3, fd, to, flags), 1)                                                  \
	X(fcntl, int, (int, int, ...), (int fd, int cmd, long arg), (fd, cmd, arg),                \
	  ps_syscall(SYS_fcntl, fd, cmd, arg), 1)                                                  \
	X(fcntl64, int, (int, int, ...), (int fd, int cmd, long arg), (fd, cmd, arg),              \
	  real_fcntl(fd, cmd, arg), 0) /* glibc >= 2.28 */                                         \
	X(close_range, int, (unsigned, unsigned, int), (unsigned first, unsigned last, int flags), \
	  (first, last, flags), ps_syscall(SYS_close_range, first, last, flags), 0) /* 2.34 */     \
	XV(closefrom, void, (int), (int lowfd), (lowfd),                                           \
	   ps_syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0), 0)                                \
	X(recv, ssize_t, (int, void *, size_t, int), (int fd, void *buf, size_t n, int flags),     \
	  (fd, buf, n, flags), ps_syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL), 1)         \
	X(listen, int, (int, int), (int fd, int backlog), (fd, backlog),                           \
	  ps_syscall(SYS_listen, fd, backlog), 1)                                                  \
	X(epoll_ctl, int, (int, int, int, struct epoll_event *),                                   \
	  (int epfd, int op, int fd, struct epoll_event *ev), (epfd, op, fd, ev),                  \
	  ps_syscall(SYS_epoll_ctl, epfd, op, fd, ev), 1)                                          \
	X(poll, int, (struct pollfd *, nfds_t, int), (struct pollfd *fds, nfds_t n, int timeout),  \
	  (fds, n, timeout), PS_LAZY(poll, (fds, n, timeout)), 1)                                  \
	X(ppoll, int, (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *),        \
	  (struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask),         \
	  (fds, n, ts, mask), PS_LAZY(ppoll, (fds, n, ts, mask)), 1)                               \
	X(select, int, (int, fd_set *, fd_set *, fd_set *, struct timeval *),                      \
	  (int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv), (nfds, r, w, e, tv),    \
	  PS_LAZY(select, (nfds, r, w, e, tv)), 1)                                                 \
	X(pselect, int,                                                                            \
	  (int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *),          \
	  (int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,                   \
	   const sigset_t *mask),                                                                  \
	  (nfds, r, w, e, ts, mask), PS_LAZY(pselect, (nfds, r, w, e, ts, mask)), 1)               \
	X(__poll_chk, int, (struct pollfd *, nfds_t, int, size_t),                                 \
	  (struct pollfd *fds, nfds_t n, int timeout, size_t len), (fds, n, timeout, len),         \
	  PS_LAZY(__poll_chk, (fds, n, timeout, len)), 0) /* glibc >= 2.16 */                      \
	X(__ppoll_chk, int,                                                                        \
	  (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t),            \
	  (struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,          \
	   size_t len),                                                                            \
	  (fds, n, ts, mask, len), PS_LAZY(__ppoll_chk, (fds, n, ts, mask, len)), 0)               \
	X(bind, int, (int, const struct sockaddr *, socklen_t),                                    \
	  (int fd, const struct sockaddr *a, socklen_t l), (fd, a, l),                             \
	  ps_syscall(SYS_bind, fd, a, l), 1)                                                       \
	X(epoll_wait, int, (int, struct epoll_event *, int, int),                                  \
	  (int epfd, struct epoll_event *ev, int max, int timeout), (epfd, ev, max, timeout),      \
	  ps_sys_epoll_wait(epfd, ev, max, timeout), 1)                                            \
	X(epoll_pwait, int, (int, struct epoll_event *, int, int, const sigset_t *),               \
	  (int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask),          \
	  (epfd, ev, max, timeout, mask),                                                          \
	  ps_syscall(SYS_epoll_pwait, epfd, ev, max, timeout, mask, _NSIG / 8), 1)                 \
	X(connect, int, (int, const struct sockaddr *, socklen_t),                                 \
	  (int fd, const struct sockaddr *a, socklen_t l), (fd, a, l),                             \
	  ps_syscall(SYS_connect, fd, a, l), 1)                                                    \
	X(getsockopt, int, (int, int, int, void *, socklen_t *),                                   \
	  (int fd, int level, int name, void *v, socklen_t *l), (fd, level, name, v, l),           \
	  ps_syscall(SYS_getsockopt, fd, level, name, v, l), 1)                                    \
	X(read, ssize_t, (int, void *, size_t), (int fd, void *buf, size_t n), (fd, buf, n),       \
	  ps_syscall(SYS_read, fd, buf, n), 1)                                                     \
	X(readv, ssize_t, (int, const struct iovec *, int), (int fd, const struct iovec *v, int n), \
	  (fd, v, n), ps_syscall(SYS_readv, fd, v, n), 1)                                          \
	X(recvfrom, ssize_t, (int, void *, size_t, int, struct sockaddr *, socklen_t *),           \
	  (int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *l),              \
	  (fd, buf, n, flags, a, l), ps_syscall(SYS_recvfrom, fd, buf, n, flags, a, l), 1)         \
	X(recvmsg, ssize_t, (int, struct msghdr *, int), (int fd, struct msghdr *m, int flags),    \
	  (fd, m, flags), ps_syscall(SYS_recvmsg, fd, m, flags), 1)                                \
	X(recvmmsg, int, (int, struct mmsghdr *, unsigned, int, struct timespec *),                \
	  (int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t),                  \
	  (fd, v, n, flags, t), ps_syscall(SYS_recvmmsg, fd, v, n, flags, t), 1)                   \
	X(write, ssize_t, (int, const void *, size_t), (int fd, const void *buf, size_t n),        \
	  (fd, buf, n), ps_syscall(SYS_write, fd, buf, n), 1)                                      \
	X(writev, ssize_t, (int, const struct iovec *, int),                                       \
	  (int fd, const struct iovec *v, int n), (fd, v, n), ps_syscall(SYS_writev, fd, v, n), 1) \
	X(send, ssize_t, (int, const void *, size_t, int),                                         \
	  (int fd, const void *buf, size_t n, int flags), (fd, buf, n, flags),                     \
	  ps_syscall(SYS_sendto, fd, buf, n, flags, NULL, 0), 1)                                   \
	X(sendto, ssize_t, (int, const void *, size_t, int, const struct sockaddr *, socklen_t),   \
	  (int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t l),   \
	  (fd, buf, n, flags, a, l), ps_syscall(SYS_sendto, fd, buf, n, flags, a, l), 1)           \
	X(sendmsg, ssize_t, (int, const struct msghdr *, int),                                     \
	  (int fd, const struct msghdr *m, int flags), (fd, m, flags),                             \
	  ps_syscall(SYS_sendmsg, fd, m, flags), 1)                                                \
	X(sendmmsg, int, (int, struct mmsghdr *, unsigned, int),                                   \
	  (int fd, struct mmsghdr *v, unsigned n, int flags), (fd, v, n, flags),                   \
	  ps_syscall(SYS_sendmmsg, fd, v, n, flags), 1)                                            \
	X(sendfile, ssize_t, (int, int, off_t *, size_t), (int out, int in, off_t *off, size_t n), \
	  (out, in, off, n), ps_syscall(SYS_sendfile, out, in, off, n), 1)                         \
	X(sendfile64, ssize_t, (int, int, off64_t *, size_t),                                      \
	  (int out, int in, off64_t *off, size_t n), (out, in, off, n),                            \
	  ps_syscall(SYS_sendfile, out, in, off, n), 1)                                            \
	X(splice, ssize_t, (int, off64_t *, int, off64_t *, size_t, unsigned),                     \
	  (int in, off64_t *off_in, int out, off64_t *off_out, size_t n, unsigned flags),          \
	  (in, off_in, out, off_out, n, flags),                                                    \
	  ps_syscall(SYS_splice, in, off_in, out, off_out, n, flags), 1)                           \
	/* The _FORTIFY_SOURCE entries: before libc, the plain call (the check needs libc). */    \
	X(__read_chk, ssize_t, (int, void *, size_t, size_t),                                      \
	  (int fd, void *buf, size_t n, size_t len), (fd, buf, n, len),                            \
	  ps_syscall(SYS_read, fd, buf, n), 1)                                                     \
	X(__recv_chk, ssize_t, (int, void *, size_t, size_t, int),                                 \
	  (int fd, void *buf, size_t n, size_t len, int flags), (fd, buf, n, len, flags),          \
	  ps_syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL), 1)                              \
	X(__recvfrom_chk, ssize_t,                                                                 \
	  (int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *),                      \
	  (int fd, void *buf, size_t n, size_t len, int flags, struct sockaddr *a, socklen_t *l),  \
	  (fd, buf, n, len, flags, a, l), ps_syscall(SYS_recvfrom, fd, buf, n, flags, a, l), 1)    \
	/* syscall(): six arguments passed on whatever the caller gave, as libc's does. */        \
	X(syscall, long, (long, ...),                                                              \
	  (long n, long a, long b, long c, long d, long e, long f), (n, a, b, c, d, e, f),         \
	  ps_syscall(n, a, b, c, d, e, f), 1)                                                      \
	X(execve, int, (const char *, char *const[], char *const[]),                               \
	  (const char *path, char *const argv[], char *const envp[]), (path, argv, envp),          \
	  PS_LAZY(execve, (path, argv, envp)), 1)                                                  \
	X(execvpe, int, (const char *, char *const[], char *const[]),                              \
	  (const char *file, char *const argv[], char *const envp[]), (file, argv, envp),          \
	  PS_LAZY(execvpe, (file, argv, envp)), 1)                                                 \
	X(fexecve, int, (int, char *const[], char *const[]),                                       \
	  (int fd, char *const argv[], char *const envp[]), (fd, argv, envp),                      \
	  PS_LAZY(fexecve, (fd, argv, envp)), 1)                                                   \
	X(execveat, int, (int, const char *, char *const[], char *const[], int),                   \
	  (int dfd, const char *path, char *const argv[], char *const envp[], int flags),          \
	  (dfd, path, argv, envp, flags),                                                          \
	  ps_syscall(SYS_execveat, dfd, path, argv, envp, flags), 0) /* glibc >= 2.34 */           \
	X(posix_spawn, int,                                                                        \
	  (pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,   \
	   char *const[], char *const[]),                                                          \
	  (pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,                     \
	   const posix_spawnattr_t *at, char *const argv[], char *const envp[]),                   \
	  (pid, path, fa, at, argv, envp), PS_LAZY(posix_spawn, (pid, path, fa, at, argv, envp)), 1) \
	X(posix_spawnp, int,                                                                       \
	  (pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,   \
	   char *const[], char *const[]),                                                          \
	  (pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,                     \
	   const posix_spawnattr_t *at, char *const argv[], char *const envp[]),                   \
	  (pid, file, fa, at, argv, envp), PS_LAZY(posix_spawnp, (pid, file, fa, at, argv, envp)), 1) \
	/* vfork runs as fork (shim/rt/hooks_fork.c). */                                          \
	X(fork, pid_t, (void), (void), (), PS_LAZY(fork, ()), 1)                                   \
	/* Shell commands (glibc spawns them internally; the shim has its own). */                \
	X(system, int, (const char *), (const char *cmd), (cmd), PS_LAZY(system, (cmd)), 1)        \
	X(popen, FILE *, (const char *, const char *), (const char *cmd, const char *mode),        \
	  (cmd, mode), PS_LAZY(popen, (cmd, mode)), 1)                                             \
	X(pclose, int, (FILE *), (FILE *f), (f), PS_LAZY(pclose, (f)), 1)                          \
	X(fclose, int, (FILE *), (FILE *f), (f), PS_LAZY(fclose, (f)), 1)
