#include "inherit.h"
#include "log.h"
#include "real.h"
#include "shim.h"
#include "udp.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_HEX (2 * sizeof(struct ps_fdinfo))

/* ---- parent: encode ---------------------------------------------------------- */

struct carry {
	char *var;
	size_t len;
	unsigned n;
	uint64_t cookie[PS_INHERIT_MAX];
};

static void carry_one(int fd, const struct ps_fdinfo *info, void *ctx)
{
	static const char hex[] = "0123456789abcdef";
	struct carry *c = ctx;
	const uint8_t *b = (const uint8_t *)info;
	if (info->kind != PS_FD_CONN && info->kind != PS_FD_HANDLED)
		return;
	int flags = (int)syscall(SYS_fcntl, fd, F_GETFD);
	if (flags < 0 || (flags & FD_CLOEXEC) || c->n == PS_INHERIT_MAX)
		return;  /* the child will not have it */
	/* Still that connection? Then name it by SO_COOKIE, which the child can check. */
	struct ps_fdinfo e = *info;
	if (!info->cookie || ps_fd_cookie(fd) != info->cookie)
		return;
	b = (const uint8_t *)&e;
	for (unsigned i = 0; i < c->n; i++)
		if (c->cookie[i] == e.cookie)
			return;  /* a dup of a socket already carried */
	c->cookie[c->n++] = e.cookie;
	c->var[c->len++] = c->n > 1 ? ',' : '=';
	for (size_t i = 0; i < sizeof(e); i++) {
		c->var[c->len++] = hex[b[i] >> 4];
		c->var[c->len++] = hex[b[i] & 15];
	}
	c->var[c->len] = 0;
}

size_t ps_env_count(char *const *envp)
{
	size_t n = 0;
	while (envp && envp[n])
		n++;
	return n;
}

static int is_ours(const char *entry)
{
	return !strncmp(entry, PS_INHERIT_VAR "=", sizeof(PS_INHERIT_VAR));
}

char *const *ps_child_env(char *const *envp, char **out, size_t cap, char *var)
{
	struct carry c = {.var = var, .len = sizeof(PS_INHERIT_VAR) - 1};
	size_t n = ps_env_count(envp), k = 0;
	if (!ps_active() || n + 2 > cap)
		return envp;
	memcpy(var, PS_INHERIT_VAR, c.len);
	ps_fd_each(carry_one, &c);
	if (!c.n)
		return envp;
	for (size_t i = 0; i < n; i++)
		if (!is_ours(envp[i]))
			out[k++] = envp[i];
	out[k++] = var;
	out[k] = NULL;
	return out;
}

/* ---- child: decode and adopt ------------------------------------------------- */

static int unhex(char ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Parses the variable's entries into out; stops at the first malformed one. */
static unsigned decode(const char *s, struct ps_fdinfo *out)
{
	unsigned n = 0;
	while (n < PS_INHERIT_MAX && strlen(s) >= ENTRY_HEX) {
		uint8_t *b = (uint8_t *)&out[n];
		for (size_t i = 0; i < sizeof(out[n]); i++) {
			int hi = unhex(s[2 * i]), lo = unhex(s[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return n;
			b[i] = (uint8_t)(hi << 4 | lo);
		}
		if (out[n].kind == PS_FD_CONN || out[n].kind == PS_FD_HANDLED)
			n++;
		s += ENTRY_HEX;
		if (*s++ != ',')
			break;
	}
	return n;
}

/* Lists this process's open descriptors (at most max). */
static int list_fds(int *fds, int max)
{
	char buf[4096];
	int n = 0, dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ssize_t got;
	if (dfd < 0) {  /* no /proc: probe the usual range */
		for (int fd = 0; fd < 1024 && n < max; fd++)
			if (syscall(SYS_fcntl, fd, F_GETFD) >= 0)
				fds[n++] = fd;
		return n;
	}
	while ((got = getdents64(dfd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < got;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			off += d->d_reclen;
			char *end;
			long fd = strtol(d->d_name, &end, 10);
			if (*end == 0 && end != d->d_name && fd != dfd && n < max)
				fds[n++] = (int)fd;
		}
	}
	real_close(dfd);
	return n;
}

/* Is some socket in this network namespace listening on TCP port 'port'? Tells an
 * accepted connection handed to us (server side) from one we opened as a client. */
static int listening_on(uint16_t port)
{
	static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	char line[512];
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(files[i], "re");
		unsigned lport, st;
		int found = 0;
		if (!f)
			continue;
		while (!found && fgets(line, sizeof(line), f))
			found = sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", &lport,
				       &st) == 2 && lport == port && st == 0x0A;
		fclose(f);
		if (found)
			return 1;
	}
	return 0;
}

/* The real endpoints of a connected TCP socket; -1 if fd is not one. */
static int tcp_endpoints(int fd, struct ps_addr *peer, struct ps_addr *local)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int v = 0;
	socklen_t vl = sizeof(v);
	if (real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &vl) || v != IPPROTO_TCP ||
	    real_getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) || v)
		return -1;
	if (real_getpeername(fd, (struct sockaddr *)&ss, &sl) ||
	    ps_addr_from_sockaddr(peer, (struct sockaddr *)&ss, sl))
		return -1;
	sl = sizeof(ss);
	if (real_getsockname(fd, (struct sockaddr *)&ss, &sl) ||
	    ps_addr_from_sockaddr(local, (struct sockaddr *)&ss, sl))
		return -1;
	return 0;
}

/* Sockets seen so far in the scan, so a dup (inetd's fds 0 and 1) shares one outcome. */
struct seen {
	unsigned n;
	int fd[PS_INHERIT_MAX];
	uint64_t cookie[PS_INHERIT_MAX];
	bool severed[PS_INHERIT_MAX];
};

static void sever(int fd);

static int seen_before(struct seen *s, int fd, uint64_t cookie)
{
	for (unsigned i = 0; i < s->n; i++) {
		if (s->cookie[i] == cookie) {
			if (s->severed[i])
				sever(fd);
			else
				ps_fd_copy(s->fd[i], fd);
			return 1;
		}
	}
	if (s->n < PS_INHERIT_MAX) {
		s->fd[s->n] = fd;
		s->severed[s->n] = false;
		s->cookie[s->n++] = cookie;
	}
	return 0;
}

/* Closes a connection the application holds but has not used yet, without leaving its
 * descriptor number free: fd becomes a socket whose peer is gone, so the first read is
 * EOF and a write fails with EPIPE. shutdown() would not do: bytes already queued (the
 * bad header and what follows) would still be read. */
static void sever(int fd)
{
	int sv[2], fdflags = (int)syscall(SYS_fcntl, fd, F_GETFD);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		real_close(fd);  /* no replacement: at least the bytes never reach the app */
		return;
	}
	real_close(sv[1]);
	real_dup3(sv[0], fd, fdflags > 0 && (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0);
	real_close(sv[0]);
	ps_fd_clear((unsigned)fd, (unsigned)fd);
}

static void adopt_fd(int fd, const struct ps_config *c, const struct ps_fdinfo *carried,
		     unsigned n, struct seen *seen)
{
	struct ps_addr peer, local, client;
	uint64_t cookie = ps_fd_cookie(fd);
	int listening = 0;
	socklen_t ll = sizeof(listening);
	if (cookie && real_getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 &&
	    listening) {
		struct ps_fdinfo li;  /* known before the application's epoll_ctl */
		ps_listener_note(fd, c, &li);
		return;
	}
	if (!cookie || ps_udp_select(fd) || seen_before(seen, fd, cookie) || tcp_endpoints(fd, &peer, &local) < 0 ||
	    !ps_netlist_match(&c->trusted, &peer))
		return;
	for (unsigned i = 0; i < n; i++) {
		if (carried[i].cookie == cookie && carried[i].family == local.family) {
			ps_fd_set(fd, &carried[i]);
			return;
		}
	}
	/* No state from a parent shim: the header is still in the socket. */
	if (!ps_portset_has(&c->ports, local.port) || !listening_on(local.port))
		return;
	if (ps_claim(fd, c, local.family, &peer, 0, &client) < 0) {
		sever(fd);
		seen->severed[seen->n - 1] = seen->fd[seen->n - 1] == fd;
	}
}

void ps_inherit_init(const struct ps_config *c)
{
	static struct ps_fdinfo carried[PS_INHERIT_MAX];
	static int fds[4096];
	static struct seen seen;
	const char *v = getenv(PS_INHERIT_VAR);
	unsigned n = v ? decode(v, carried) : 0;
	if (v)
		unsetenv(PS_INHERIT_VAR);
	if (!c)
		return;
	int nfds = list_fds(fds, (int)(sizeof(fds) / sizeof(fds[0])));
	for (int i = 0; i < nfds; i++)
		adopt_fd(fds[i], c, carried, n, &seen);
}
