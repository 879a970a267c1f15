/* qemucookie.so: SO_COOKIE for programs run under qemu-user 7.2, which does not emulate
 * that option (getsockopt fails with EINVAL). The value given is the socket's inode
 * number: unique among live sockets, as a cookie is, and the same in every process and
 * descriptor that holds the socket. Only the smoke run of another architecture's build
 * (tests/cross) preloads it, after the shim, whose identity checks then work as they do
 * on that architecture's own kernel. Anything else goes to libc untouched. */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

int getsockopt(int fd, int level, int name, void *v, socklen_t *l)
{
	static int (*real)(int, int, int, void *, socklen_t *);
	if (!real)
		real = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
	int r = real(fd, level, name, v, l);
	if (r < 0 && errno == EINVAL && level == SOL_SOCKET && name == SO_COOKIE && v && l &&
	    *l >= sizeof(uint64_t)) {
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
			uint64_t c = (uint64_t)st.st_ino;
			memcpy(v, &c, sizeof(c));
			*l = sizeof(c);
			return 0;
		}
		errno = EINVAL;
	}
	return r;
}
