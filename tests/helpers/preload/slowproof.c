/* Preloaded after libproxyshim.so, so that the shim's own epoll_ctl (resolved with
 * dlsym(RTLD_NEXT)) lands here: once a test program arms it (slow_proof_fd), the
 * shim's EPOLL_CTL_DEL of that descriptor (which takes a kept connection out of its
 * set and proves the number still holds it) is delayed 200 ms. It widens, for a test,
 * a window a preempted thread on a loaded machine also gets. */
#include <dlfcn.h>
#include <sys/epoll.h>
#include <time.h>

volatile int slow_proof_fd = -1;

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	static int (*next)(int, int, int, struct epoll_event *);
	if (!next)
		next = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
	if (fd == slow_proof_fd && op == EPOLL_CTL_DEL)
		nanosleep(&(struct timespec){0, 200000000}, NULL);
	return next(epfd, op, fd, ev);
}
