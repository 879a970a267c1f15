/* Preloaded after libproxyshim.so, so that the shim's own getsockopt (resolved with
 * dlsym(RTLD_NEXT)) lands here: once a test program arms it (slow_cookie_fd), the
 * second SO_COOKIE query on that descriptor is delayed 200 ms. It widens, for a test,
 * a window a preempted thread on a loaded machine also gets. */
#include <dlfcn.h>
#include <sys/socket.h>
#include <time.h>

volatile int slow_cookie_fd = -1;
static volatile int calls;

int getsockopt(int fd, int level, int name, void *v, socklen_t *l)
{
	static int (*next)(int, int, int, void *, socklen_t *);
	if (!next)
		next = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
	if (fd == slow_cookie_fd && level == SOL_SOCKET && name == SO_COOKIE && ++calls == 2)
		nanosleep(&(struct timespec){0, 200000000}, NULL);
	return next(fd, level, name, v, l);
}
