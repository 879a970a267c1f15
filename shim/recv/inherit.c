#include "inherit.h"
#include "lock.h"
#include "consume.h"
#include "log.h"
#include "real.h"
#include "recv.h"
#include "udp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define ENTRY_HEX (2 * sizeof(struct ps_fdinfo))
/* Format version, first in every variable: a child of another build refuses what it
 * cannot read instead of misreading it. Bump with any change to struct ps_fdinfo. */
#define FORMAT "2:"

static void lowat_default(int fd);

/* ---- parent: encode ---------------------------------------------------------- */

/* Fills one variable after another (PROXYSHIM_INHERIT, PROXYSHIM_INHERIT_1, ...) in the
 * caller's buffer; entries beyond its room are left out (the child then proves or
 * leaves those sockets alone, and says so). */
struct carry {
	char *buf, *var;      /* the whole buffer; the variable being filled */
	size_t cap, len;      /* buf's size; bytes used in it */
	unsigned vars, in_var, n, dropped;
	char **out;           /* where each variable's pointer goes */
	size_t out_cap;
};

static bool start_var(struct carry *c)
{
	char name[sizeof(PS_INHERIT_VAR) + 12];
	int nl = c->vars ? snprintf(name, sizeof(name), PS_INHERIT_VAR "_%u=" FORMAT, c->vars)
			 : snprintf(name, sizeof(name), PS_INHERIT_VAR "=" FORMAT);
	if (c->vars == c->out_cap || c->len + (size_t)nl + ENTRY_HEX + 2 > c->cap)
		return false;
	c->var = c->buf + c->len;
	memcpy(c->var, name, (size_t)nl + 1);
	c->len += (size_t)nl + 1;  /* the terminator moves as entries are added */
	c->out[c->vars++] = c->var;
	c->in_var = 0;
	return true;
}

/* Whether the child gets fd (not close-on-exec) and fd is still the socket info
 * describes (a number reused behind the shim's back is not). */
static bool reaches_child(int fd, const struct ps_fdinfo *info)
{
	int flags = real_fcntl(fd, F_GETFD, 0);
	return flags >= 0 && !(flags & FD_CLOEXEC) && info->cookie &&
	       ps_fd_cookie(fd) == info->cookie;
}

static void carry_one(int fd, const struct ps_fdinfo *info, void *ctx)
{
	static const char hex[] = "0123456789abcdef";
	struct carry *c = ctx;
	const uint8_t *b = (const uint8_t *)info;
	if ((info->kind != PS_FD_CONN && info->kind != PS_FD_HANDLED) || !reaches_child(fd, info))
		return;
	/* The room asked for holds PS_INHERIT_MAX entries: the rest are left out, never
	 * written past it. */
	if (c->n == PS_INHERIT_MAX || c->len + ENTRY_HEX + 1 > c->cap ||
	    ((!c->var || c->in_var == PS_INHERIT_PER_VAR) && !start_var(c))) {
		c->dropped++;
		return;
	}
	char *p = c->buf + c->len - 1;  /* over the terminator */
	if (c->in_var)
		*p++ = ',';
	for (size_t i = 0; i < sizeof(*info); i++) {
		*p++ = hex[b[i] >> 4];
		*p++ = hex[b[i] & 15];
	}
	*p++ = 0;
	c->len = (size_t)(p - c->buf);
	c->in_var++;
	c->n++;
}

static int is_ours(const char *entry)
{
	return !strncmp(entry, PS_INHERIT_VAR, sizeof(PS_INHERIT_VAR) - 1) &&
	       (entry[sizeof(PS_INHERIT_VAR) - 1] == '=' ||
		entry[sizeof(PS_INHERIT_VAR) - 1] == '_');
}

static void count_one(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)fd;
	if (info->kind == PS_FD_CONN || info->kind == PS_FD_HANDLED)
		++*(size_t *)ctx;
}

static void unraise(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)ctx;
	if (info->kind == PS_FD_PENDING)
		lowat_default(fd);
}

/* A listener the child inherits gives the shim's TCP_DEFER_ACCEPT back: the program
 * exec'd or spawned may serve it without the shim, or under another policy. */
static void undefer(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)ctx;
	int zero = 0;
	if (info->kind != PS_FD_LISTENER || !(info->lflags & PS_LISTENER_DEFERRED) ||
	    !reaches_child(fd, info))
		return;
	struct ps_fdinfo li = *info;
	li.lflags &= ~PS_LISTENER_DEFERRED;
	setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &zero, sizeof(zero));
	ps_fd_set(fd, &li);
	ps_log(PS_LOG_DEBUG, "fd %d: TCP_DEFER_ACCEPT given back before exec", fd);
}

size_t ps_exec_prepare(void)
{
	size_t n = 0;
	/* A deferred header's raised SO_RCVLOWAT must not reach a program that will not
	 * take the header (one without the shim): the next shim raises it again. */
	if (__atomic_load_n(&ps_inherit_pending, __ATOMIC_RELAXED))
		ps_fd_each(unraise, NULL);
	if (__atomic_load_n(&ps_deferred_listeners, __ATOMIC_RELAXED))
		ps_fd_each(undefer, NULL);
	if (ps_active())
		ps_fd_each(count_one, &n);
	if (!n)
		return 0;
	if (n > PS_INHERIT_MAX)
		n = PS_INHERIT_MAX;
	size_t vars = n / PS_INHERIT_PER_VAR + 1;
	return n * (ENTRY_HEX + 1) + vars * (sizeof(PS_INHERIT_VAR) + 16);
}

bool ps_exec_active(void)
{
	return ps_active() != NULL;
}

size_t ps_child_env_vars(size_t room)
{
	return room / (PS_INHERIT_PER_VAR * ENTRY_HEX) + 2;
}

char *const *ps_child_env(char *const *envp, char **out, size_t cap, char *buf,
			  size_t room)
{
	size_t n = ps_env_count(envp), k = 0, vars = ps_child_env_vars(room);
	char *vp[vars];
	struct carry c = {.buf = buf, .cap = room, .out = vp, .out_cap = vars};
	if (!ps_active() || !room || n + vars + 1 > cap)
		return envp;
	ps_fd_each(carry_one, &c);
	if (c.dropped)
		ps_log(PS_LOG_WARN, "exec: the state of %u proxied connections did not fit the "
		       "environment; the program started will leave them untouched", c.dropped);
	if (!c.n)
		return envp;
	for (size_t i = 0; i < n; i++)
		if (!is_ours(envp[i]))
			out[k++] = envp[i];
	for (unsigned i = 0; i < c.vars; i++)
		out[k++] = vp[i];
	out[k] = NULL;
	return out;
}

/* ---- child: decode and adopt ------------------------------------------------- */

static int unhex(char ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Parses one variable's entries into out[n..]; stops at the first malformed one. */
static unsigned decode(const char *name, const char *s, struct ps_fdinfo *out, unsigned n)
{
	if (strncmp(s, FORMAT, sizeof(FORMAT) - 1)) {
		ps_log(PS_LOG_WARN, "%s: not in this build's format (another version of the "
		       "library started this program?): ignored", name);
		return n;
	}
	s += sizeof(FORMAT) - 1;
	while (n < PS_INHERIT_MAX) {
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

/* Reads and removes PROXYSHIM_INHERIT, PROXYSHIM_INHERIT_1, ... */
static unsigned take_carried(struct ps_fdinfo *out)
{
	unsigned n = 0;
	for (unsigned i = 0;; i++) {
		char name[sizeof(PS_INHERIT_VAR) + 12];
		if (i)
			snprintf(name, sizeof(name), PS_INHERIT_VAR "_%u", i);
		else
			snprintf(name, sizeof(name), PS_INHERIT_VAR);
		const char *v = getenv(name);
		if (!v)
			return n;
		n = decode(name, v, out, n);
		unsetenv(name);
	}
}

/* Lists this process's open descriptors (at most max). */
static int list_fds(int *fds, int max)
{
	char buf[4096];
	int n = 0, dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ssize_t got;
	if (dfd < 0) {  /* no /proc: probe the usual range */
		for (int fd = 0; fd < 1024 && n < max; fd++)
			if (real_fcntl(fd, F_GETFD, 0) >= 0)
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
		real_fclose(f);
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

/* ---- proof that no process has read from a socket ---------------------------- */

/* tcpi_state values (the kernel's TCP states, a stable interface; linux/tcp.h does
 * not name them and netinet/tcp.h cannot be included beside it). */
enum { ST_ESTABLISHED = 1, ST_FIN_WAIT1 = 4, ST_FIN_WAIT2 = 5, ST_CLOSE_WAIT = 8,
       ST_LAST_ACK = 9, ST_CLOSING = 11 };

/* Bytes the kernel has received on fd since the connection began (a FIN counts one),
 * and whether a FIN is among them; -1 if the kernel does not say. */
static long long received(int fd, int *fin)
{
	struct tcp_info ti = {0};
	socklen_t len = sizeof(ti);
	if (real_getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
		return -1;
	switch (ti.tcpi_state) {
	case ST_ESTABLISHED: case ST_FIN_WAIT1: case ST_FIN_WAIT2:
		*fin = 0;
		break;
	case ST_CLOSE_WAIT: case ST_LAST_ACK: case ST_CLOSING:
		*fin = 1;
		break;
	default:  /* closed: whether a FIN or a reset ended it is not known */
		return -1;
	}
	return (long long)ti.tcpi_bytes_received;
}

/* True only if no byte was ever taken from fd's receive queue, by any process: all
 * the kernel received is still queued. What a process read is gone from the queue
 * but still counted as received, so this holds even where no state says who held the
 * socket before (spawn paths the hooks miss, a cleared environment, limits). */
static bool never_read(int fd)
{
	int fin = 0, fin2 = 0, queued = 0;
	long long before = received(fd, &fin);
	if (before < 0 || ioctl(fd, SIOCINQ, &queued) < 0)
		return false;
	long long after = received(fd, &fin2);
	return after == before && fin == fin2 && before - fin == queued;  /* else: moving */
}

/* ---- inherited connections without state -------------------------------------- */

/* Sockets seen so far in the scan, so a dup (inetd's fds 0 and 1) shares one outcome. */
struct seen {
	unsigned n;
	int fd[PS_SEEN_MAX];
	uint64_t cookie[PS_SEEN_MAX];
	bool severed[PS_SEEN_MAX];
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
	if (s->n < PS_SEEN_MAX) {
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
	int sv[2], fdflags = real_fcntl(fd, F_GETFD, 0);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		real_close(fd);  /* no replacement: at least the bytes never reach the app */
		return;
	}
	real_close(sv[1]);
	real_dup3(sv[0], fd, fdflags > 0 && (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0);
	real_close(sv[0]);
	ps_fd_clear((unsigned)fd, (unsigned)fd);
}

unsigned char ps_inherit_pending;


/* A header not complete at load: finished on first use (ps_inherit_finish), never
 * waited for here. SO_RCVLOWAT stays at the bytes still missing, so that poll and
 * epoll report the socket readable only once the header can be taken. */
static void defer(int fd, int family, const struct ps_addr *peer, uint64_t cookie,
		  const struct ps_config *c)
{
	struct ps_fdinfo e = {.kind = PS_FD_PENDING, .family = (uint16_t)family,
			      .cookie = cookie, .src = *peer,
			      .deadline = (uint32_t)(ps_now_ms() + c->timeout_ms)};
	if (ps_fd_set(fd, &e))
		__atomic_store_n(&ps_inherit_pending, 1, __ATOMIC_RELEASE);
}

/* SO_RCVLOWAT back at the kernel's default: the shim raised it on a deferred header
 * (a property of the socket, seen by every process holding it). */
static void lowat_default(int fd)
{
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
}

static void adopt_fd(int fd, const struct ps_config *c, const struct ps_fdinfo *carried,
		     unsigned n, struct seen *seen)
{
	struct ps_addr peer, local, client;
	struct pp_header h;
	const char *why = NULL;
	char pa[PS_ADDR_STRLEN];
	uint64_t cookie = ps_fd_cookie(fd);
	int listening = 0;
	socklen_t ll = sizeof(listening);
	if (cookie && real_getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 &&
	    listening) {
		struct ps_fdinfo li;  /* known before the application's epoll_ctl */
		ps_listener_note(fd, c, false, &li);
		return;
	}
	if (!cookie || ps_udp_select(fd) || seen_before(seen, fd, cookie) ||
	    tcp_endpoints(fd, &peer, &local) < 0 || !ps_netlist_match(&c->trusted, &peer))
		return;
	for (unsigned i = 0; i < n; i++) {
		if (carried[i].cookie == cookie && carried[i].family == local.family) {
			ps_fd_set(fd, &carried[i]);
			return;
		}
	}
	/* No state from a parent shim. Only a connection handed over as it was accepted
	 * (inetd, systemd Accept=yes) still holds its header: one on a port listened to
	 * here, that no process has read from. */
	if (!ps_portset_has(&c->ports, local.port) || !listening_on(local.port))
		return;
	if (!never_read(fd)) {
		ps_addr_format(&peer, pa, sizeof(pa));
		ps_log(PS_LOG_WARN, "fd %d: inherited connection from proxy %s arrived without "
		       "the shim's state and was read before: left untouched (its peer is the "
		       "proxy)", fd, pa);
		return;
	}
	/* PS_TRY_KEPT: a parent may have left SO_RCVLOWAT raised (deferred too); it is
	 * back at 1 unless the header is still incomplete. */
	enum ps_take r = ps_try_header(fd, c, &h, &why, PS_TRY_KEPT, NULL);
	if (r == PS_TAKE_MORE) {
		defer(fd, local.family, &peer, cookie, c);
		return;
	}
	if (ps_settle(fd, cookie, local.family, &peer, 0, r, &h, why, &client) < 0) {
		sever(fd);
		seen->severed[seen->n - 1] = seen->fd[seen->n - 1] == fd;
	}
}

void ps_inherit_init(const struct ps_config *c)
{
	static struct ps_fdinfo carried[PS_INHERIT_MAX];
	static int fds[4096];
	static struct seen seen;
	unsigned n = take_carried(carried);
	if (!c)
		return;
	int nfds = list_fds(fds, (int)(sizeof(fds) / sizeof(fds[0])));
	for (int i = 0; i < nfds; i++)
		adopt_fd(fds[i], c, carried, n, &seen);
}

/* ---- first use of a deferred connection ------------------------------------------ */

static atomic_flag finishing;  /* one deferred header is taken at a time */

/* Every descriptor of the process that names the socket 'cookie' (dups of it) gets
 * the outcome: the new entry, or severed. */
struct outcome {
	uint64_t cookie;
	const struct ps_fdinfo *e;  /* NULL: sever */
};

static void apply(int fd, const struct ps_fdinfo *info, void *ctx)
{
	const struct outcome *o = ctx;
	if (info->kind != PS_FD_PENDING || info->cookie != o->cookie)
		return;
	if (o->e)
		ps_fd_set(fd, o->e);
	else
		sever(fd);
}

/* Takes the header of deferred connection fd (entry e), waiting unless fd is
 * non-blocking and !wait: 1 done, 0 not yet, -1 the connection was refused (severed). */
static int finish(int fd, const struct ps_fdinfo *e, const struct ps_config *c, bool wait)
{
	struct pp_header h;
	struct ps_addr client;
	const char *why = NULL;
	struct outcome o = {.cookie = e->cookie};
	int fl = real_fcntl(fd, F_GETFL, 0);
	long long left = (long long)(int32_t)(e->deadline - (uint32_t)ps_now_ms());
	enum ps_take r;
	if (!never_read(fd)) {  /* someone took bytes meanwhile: no longer provable */
		char pa[PS_ADDR_STRLEN];
		lowat_default(fd);
		ps_addr_format(&e->src, pa, sizeof(pa));
		ps_log(PS_LOG_WARN, "fd %d: inherited connection from proxy %s was read before "
		       "its header was taken: left untouched", fd, pa);
		o.e = &(struct ps_fdinfo){.kind = PS_FD_NONE};
		ps_fd_each(apply, &o);
		return 1;
	}
	if (!wait && fl >= 0 && (fl & O_NONBLOCK))
		r = ps_try_header(fd, c, &h, &why, PS_TRY_KEPT | (left <= 0 ? PS_TRY_EXPIRED : 0), NULL);
	else
		r = ps_take_header_within(fd, c, &h, &why, left > 0 ? left : 0);
	if (r == PS_TAKE_MORE)
		return 0;
	int got = ps_settle(fd, e->cookie, e->family, &e->src, 0, r, &h, why, &client);
	struct ps_fdinfo now;
	o.e = got >= 0 && ps_fd_get(fd, &now) ? &now : NULL;
	ps_fd_each(apply, &o);
	if (!o.e)
		sever(fd);
	return o.e ? 1 : -1;
}

int ps_inherit_finish(int fd, bool always_wait)
{
	const struct ps_config *c = ps_active();
	struct ps_fdinfo e;
	if (!c || !ps_fd_get(fd, &e) || e.kind != PS_FD_PENDING)
		return 0;
	int saved = errno;
	/* The holder may wait up to the header timeout; a signal handler of the holder's
	 * own thread would wait for ever, so it gives up after that long. */
	long long until = ps_now_ms() + c->timeout_ms + 1000;
	while (atomic_flag_test_and_set_explicit(&finishing, memory_order_acquire)) {
		if (ps_now_ms() > until) {
			errno = EAGAIN;
			return -1;
		}
		sched_yield();
	}
	int r = 1;
	/* Looked at again under the flag: another thread may have finished it. */
	if (ps_fd_get(fd, &e) && e.kind == PS_FD_PENDING) {
		if (ps_fd_cookie(fd) == e.cookie)
			r = finish(fd, &e, c, always_wait);
		else  /* closed behind the shim's back; the number is someone else's */
			ps_fd_clear((unsigned)fd, (unsigned)fd);
	}
	atomic_flag_clear_explicit(&finishing, memory_order_release);
	if (r == 0) {
		errno = EAGAIN;
		return -1;
	}
	errno = saved;
	return 0;  /* severed too: the application's call then reads EOF */
}
