/* Preloaded after libproxyshim.so, so its constructor runs first and calls the shim's
 * hooks before the shim has resolved libc: they must still work (raw syscalls). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void early(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in p;
	socklen_t al = sizeof(a), pl = sizeof(p);
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &al) ||
	    connect(c, (struct sockaddr *)&a, sizeof(a))) {
		perror("early: setup");
		return;
	}
	int s = accept4(l, (struct sockaddr *)&p, &pl, SOCK_CLOEXEC);
	int d = fcntl(s, F_DUPFD_CLOEXEC, 10), d2 = dup(d), d3 = dup2(d2, 40);
	struct sockaddr_in q;
	socklen_t ql = sizeof(q);
	int r = getpeername(d3, (struct sockaddr *)&q, &ql);
	/* dup2 onto itself and epoll_wait: raw calls that some architectures have under
	 * another name (shim/rt/sysnr.h) */
	int self = dup2(d3, d3), bad = dup2(1000, 1000);
	struct epoll_event ev;
	int ep = epoll_create1(EPOLL_CLOEXEC), w = epoll_wait(ep, &ev, 1, 0);
	printf("early: accept=%d dup=%d,%d,%d getpeername=%d same=%d dup2self=%d,%d wait=%d\n",
	       s >= 0, d >= 10, d2 >= 0, d3 == 40, r, !memcmp(&p, &q, sizeof(p)), self == 40,
	       bad == -1, w);
	close(ep);
	fflush(stdout);
	close(d3);
	close_range((unsigned)d2, (unsigned)d2, 0);
	close(d);
	close(s);
	close(c);
	close(l);
}
