/* Receiving-side interposers: each forwards to one shared mechanism. Internal code
 * calls only real_* functions, never these public names. */
#include "log.h"
#include "real.h"
#include "shim.h"


PS_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
	return ps_accept(fd, addr, alen, 0);
}

PS_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	return ps_accept(fd, addr, alen, flags);
}

PS_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *alen)
{
	struct ps_fdinfo ci;
	if (addr && alen && ps_conn(fd, &ci))
		return ps_report(addr, alen, &ci.src, ci.family);
	return real_getpeername(fd, addr, alen);
}

PS_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *alen)
{
	struct ps_fdinfo ci;
	const struct ps_config *c = ps_active();
	if (c && c->local == PS_LOCAL_HEADER && addr && alen && ps_conn(fd, &ci))
		return ps_report(addr, alen, &ci.dst, ci.family);
	return real_getsockname(fd, addr, alen);
}
