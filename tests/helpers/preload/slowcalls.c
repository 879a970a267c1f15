/* Preloaded after libproxyshim.so, so that the libc calls the shim makes (resolved with
 * dlsym(RTLD_NEXT), or through its PLT) land here. Once a test program arms one, that
 * call of the shim's is delayed 200 ms, once: it widens, for a test, a window a
 * preempted thread on a loaded machine also gets.
 * - slow_proof_fd / slow_proof_after_fd: the shim's EPOLL_CTL_DEL of that descriptor
 *   (which takes a kept connection out of its set and proves the number still holds
 *   it), before it / just after it;
 * - slow_mmap_tid: the next mmap made by that thread (the room a large poll or select
 *   call is extended in);
 * - slow_close_fd: the close of that descriptor (a kept connection the shim closes);
 * - slow_munmap_tid: just after the next munmap made by that thread (a kept-connection
 *   array given back).
 * - slow_accept_tid: every real accept that thread makes waits until a connection is
 *   pending, then 200 ms before it takes it: a thread the kernel woke for a new
 *   connection that a busy machine runs late.
 * Or, set in the environment for a whole server, SLOWCALLS_ACCEPT_MS=MS[,MS...]: the same
 * for every thread, one at a time: the Nth accept the Nth time given (the last one for
 * every accept after). */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

volatile int slow_proof_fd = -1, slow_proof_after_fd = -1, slow_mmap_tid, slow_close_fd = -1,
	     slow_munmap_tid, slow_accept_tid;

static void wait_200ms(void)
{
	nanosleep(&(struct timespec){0, 200000000}, NULL);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	static int (*next)(int, int, int, struct epoll_event *);
	if (!next)
		next = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
	if (fd == slow_proof_fd && op == EPOLL_CTL_DEL)
		wait_200ms();
	int r = next(epfd, op, fd, ev);
	if (fd == slow_proof_after_fd && op == EPOLL_CTL_DEL)
		wait_200ms();
	return r;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static void *(*next)(void *, size_t, int, int, int, off_t);
	if (!next)
		next = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
	if (slow_mmap_tid && slow_mmap_tid == gettid()) {
		slow_mmap_tid = 0;
		wait_200ms();
	}
	return next(addr, len, prot, flags, fd, off);
}

int close(int fd)
{
	static int (*next)(int);
	if (!next)
		next = (int (*)(int))dlsym(RTLD_NEXT, "close");
	if (fd >= 0 && fd == slow_close_fd) {
		slow_close_fd = -1;  /* disarmed first: a fork meanwhile copies it disarmed */
		wait_200ms();
	}
	return next(fd);
}

int munmap(void *addr, size_t len)
{
	static int (*next)(void *, size_t);
	if (!next)
		next = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
	int r = next(addr, len);
	if (slow_munmap_tid && slow_munmap_tid == gettid()) {
		slow_munmap_tid = 0;
		wait_200ms();
	}
	return r;
}

int accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{
	static int (*next)(int, struct sockaddr *, socklen_t *, int);
	static int (*next_poll)(struct pollfd *, nfds_t, int);
	static pthread_mutex_t one = PTHREAD_MUTEX_INITIALIZER;
	if (!next) {
		next = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
		next_poll = (int (*)(struct pollfd *, nfds_t, int))dlsym(RTLD_NEXT, "poll");
	}
	static const char *at;  /* this accept's time in SLOWCALLS_ACCEPT_MS */
	const char *env = getenv("SLOWCALLS_ACCEPT_MS");
	long ms = slow_accept_tid ? (slow_accept_tid == gettid() ? 200 : 0) : env ? atol(env) : 0;
	if (!ms)
		return next(fd, a, l, flags);
	pthread_mutex_lock(&one);
	if (!slow_accept_tid) {
		at = at ? at : env;
		ms = atol(at);
		if (strchr(at, ','))
			at = strchr(at, ',') + 1;
	}
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (next_poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	nanosleep(&(struct timespec){ms / 1000, ms % 1000 * 1000000}, NULL);
	int r = next(fd, a, l, flags);
	pthread_mutex_unlock(&one);
	return r;
}
