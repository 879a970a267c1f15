/* Preloaded after libproxyshim.so, so that the shim's own epoll_ctl (resolved with
 * dlsym(RTLD_NEXT)) lands here. Once a test program arms it, the shim's EPOLL_CTL_DEL of
 * that descriptor (which takes a kept connection out of its set and proves the number
 * still holds it) is delayed 200 ms: before it (slow_proof_fd) or just after it
 * (slow_proof_after_fd). It widens, for a test, a window a preempted thread on a loaded
 * machine also gets. */
#include <dlfcn.h>
#include <sys/epoll.h>
#include <time.h>

volatile int slow_proof_fd = -1, slow_proof_after_fd = -1;

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
