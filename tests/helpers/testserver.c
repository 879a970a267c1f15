/* testserver: a small TCP server for the integration tests. One line of stdout per
 * connection:
 *   conn accept=ADDR peer=ADDR local=ADDR data="ESCAPED"
 * accept= is what accept()/accept4() wrote into the caller's buffer, peer= is
 * getpeername(), local= is getsockname(); data= is what the client sent, read until EOF,
 * 256 bytes, or -I milliseconds without data (data=EOF / data=TIMEOUT / data=RESET when
 * nothing came). The server then writes "OK <peer>\n" and closes. Run with -h for the
 * options. Exit status: 0 after -n connections, 1 on errors, 3 on the -T hard timeout. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "netaddr.h"

#define DATA_MAX 256
#define ADDR_STR 160
#define MAX_THREADS 64

enum mode { MODE_BLOCK, MODE_EPOLL, MODE_THREADS, MODE_POLL, MODE_SELECT };

static struct {
	const char *laddr;
	unsigned port;
	const char *portfile;
	long count;             /* 0: serve forever (until -T) */
	enum mode mode;
	int nthreads;
	bool greet, dup, reuse, freeport;
	unsigned hard_timeout;
	int idle_ms;
	long slow_ms;           /* -D: backlog 0, first accept after this long */
	long alen;              /* -a: addrlen passed to accept; -1 = full buffer; 0 = NULL */
} opt = { "127.0.0.1", 0, NULL, 0, MODE_BLOCK, 1, false, false, false, false, 30, 2000, 0, -1 };

static int lfd = -1;
static atomic_long served;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static char self_addr[ADDR_STR];   /* local address of the last -R probe socket */

/* One accepted connection from accept to reply. */
struct conn {
	int fd;
	struct sockaddr_storage acc;
	socklen_t alen;
	char data[DATA_MAX];
	size_t len;
	struct timespec last;   /* time of accept or of the last byte (idle timeout) */
};

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("testserver: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "testserver: hard timeout (-T)\n";
	ssize_t r = write(2, msg, sizeof msg - 1);
	(void)r;
	_exit(3);
}

static void usage(FILE *f)
{
	fputs("usage: testserver [-l ADDR] [-p PORT] [-P PORTFILE] [-n COUNT] [-m MODE] [-d] [-R]\n"
	      "                  [-a ADDRLEN] [-I IDLE_MS] [-T SECONDS] [-D MS] [-F] [-e] [-h]\n"
	      "  -l ADDR   listen address (default 127.0.0.1; '::' dual-stack, '::1' IPv6)\n"
	      "  -p PORT   port (default 0: ephemeral)\n"
	      "  -P FILE   write the port to FILE once listening\n"
	      "  -n COUNT  exit 0 after COUNT connections (default: never)\n"
	      "  -m MODE   block | epoll | threads:N | greet (block, server writes HELLO\\r\\n first)\n"
	      "            | poll | select (one thread: all connections in one poll() array or\n"
	      "            select() bitmap, sized for the descriptors in use, any number)\n"
	      "  -d        dup() the accepted fd, close the original, use the copy\n"
	      "  -R        after each connection: close it with a raw syscall, connect a new\n"
	      "            socket to the listener and print 'reuse fd=N same=0|1 peer=ADDR'\n"
	      "  -a LEN    pass *addrlen = LEN to accept (0: NULL addr); adds alen= to the line\n"
	      "  -I MS     stop reading after MS ms without data (default 2000)\n"
	      "  -T SEC    hard timeout: exit 3 after SEC seconds (default 30)\n"
	      "  -D MS     listen with backlog 0 and accept nothing for MS ms: one connection\n"
	      "            waits in the queue, the next one's SYN is dropped (its connect stays\n"
	      "            in progress, resent after 1 s, 3 s, ...)\n"
	      "  -F        print a free port of ADDR chosen by the kernel and exit\n"
	      "  -e        accepted for compatibility (local= is always printed)\n"
	      "  -h        this help\n", f);
}

static long parse_num(const char *s, long min, long max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("bad %s: \"%s\"", what, s);
	return v;
}

static void parse_mode(const char *s)
{
	if (!strcmp(s, "block"))
		opt.mode = MODE_BLOCK;
	else if (!strcmp(s, "greet"))
		opt.mode = MODE_BLOCK, opt.greet = true;
	else if (!strcmp(s, "epoll"))
		opt.mode = MODE_EPOLL;
	else if (!strcmp(s, "poll"))
		opt.mode = MODE_POLL;
	else if (!strcmp(s, "select"))
		opt.mode = MODE_SELECT;
	else if (!strncmp(s, "threads:", 8))
		opt.mode = MODE_THREADS,
		opt.nthreads = (int)parse_num(s + 8, 1, MAX_THREADS, "thread count");
	else
		die("bad mode: \"%s\"", s);
}

static void parse_args(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "l:p:P:n:m:dRa:I:T:FD:eh")) != -1) {
		switch (c) {
		case 'l': opt.laddr = optarg; break;
		case 'p': opt.port = (unsigned)parse_num(optarg, 0, 65535, "port"); break;
		case 'P': opt.portfile = optarg; break;
		case 'n': opt.count = parse_num(optarg, 1, 1000000, "count"); break;
		case 'm': parse_mode(optarg); break;
		case 'd': opt.dup = true; break;
		case 'R': opt.reuse = true; break;
		case 'a': opt.alen = parse_num(optarg, 0, sizeof(struct sockaddr_storage), "addrlen"); break;
		case 'I': opt.idle_ms = (int)parse_num(optarg, 1, 600000, "idle ms"); break;
		case 'T': opt.hard_timeout = (unsigned)parse_num(optarg, 1, 86400, "timeout"); break;
		case 'F': opt.freeport = true; break;
		case 'D': opt.slow_ms = parse_num(optarg, 1, 600000, "delay ms"); break;
		case 'e': break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(1);
	}
}

static void hex(const unsigned char *p, size_t n, char *buf, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 3 <= cap; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%02x", p[i]);
	buf[o] = '\0';
}

/* The accept= field (plus " alen=N" with -a). */
static void fmt_accept(const struct conn *c, char *buf, size_t n)
{
	if (opt.alen < 0) {
		na_format(&c->acc, c->alen, buf, n);
		return;
	}
	char a[ADDR_STR];
	const char *kind = "";
	if (opt.alen == 0) {
		snprintf(a, sizeof a, "NULL");
	} else if ((long)c->alen > opt.alen) {   /* truncated: the bytes written */
		kind = "raw:";
		hex((const unsigned char *)&c->acc, (size_t)opt.alen, a, sizeof a);
	} else {
		na_format(&c->acc, c->alen, a, sizeof a);
	}
	snprintf(buf, n, "%s%s alen=%u", kind, a, (unsigned)c->alen);
}

/* data= value: quoted and escaped, or EOF / TIMEOUT / RESET / ERROR when nothing came. */
static void fmt_data(const struct conn *c, const char *end, char *buf, size_t n)
{
	if (c->len == 0) {
		snprintf(buf, n, "%s", end);
		return;
	}
	size_t o = 0;
	buf[o++] = '"';
	for (size_t i = 0; i < c->len && o + 6 < n; i++) {
		unsigned char ch = (unsigned char)c->data[i];
		if (ch == '\r')
			o += (size_t)snprintf(buf + o, n - o, "\\r");
		else if (ch == '\n')
			o += (size_t)snprintf(buf + o, n - o, "\\n");
		else if (ch == '\\' || ch == '"')
			o += (size_t)snprintf(buf + o, n - o, "\\%c", ch);
		else if (ch >= 0x20 && ch < 0x7f)
			buf[o++] = (char)ch;
		else
			o += (size_t)snprintf(buf + o, n - o, "\\x%02x", ch);
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

static void out_line(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&out_lock);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			if (poll(&pfd, 1, 1000) <= 0)
				return;
			continue;
		}
		if (w <= 0)
			return;    /* the client went away: nothing to report */
		p += w;
		n -= (size_t)w;
	}
}

static int connect_to_listener(void)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(lfd, (struct sockaddr *)&ss, &len) < 0)
		die("getsockname(listener): %s", strerror(errno));
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
			s6->sin6_addr = in6addr_loopback;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		if (s4->sin_addr.s_addr == htonl(INADDR_ANY))
			s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket: %s", strerror(errno));
	while (connect(s, (struct sockaddr *)&ss, len) < 0)
		if (errno != EINTR)
			die("connect(self): %s", strerror(errno));
	return s;
}

/* -R: the fd number of a connection closed behind the shim's back is reused by a new
 * socket; its peer must be the real one (the listener), never the stale client. */
static void reuse_check(int fd)
{
	syscall(SYS_close, fd);
	int s = connect_to_listener();
	char peer[ADDR_STR];
	na_format_name(s, true, peer, sizeof peer);
	pthread_mutex_lock(&out_lock);
	na_format_name(s, false, self_addr, sizeof self_addr);
	pthread_mutex_unlock(&out_lock);
	out_line("reuse fd=%d same=%d peer=%s\n", s, s == fd, peer);
	close(s);
}

/* The connection that reuse_check() made to ourselves: not counted, not printed. */
static bool is_self(int fd)
{
	if (!opt.reuse)
		return false;
	char peer[ADDR_STR];
	na_format_name(fd, true, peer, sizeof peer);
	pthread_mutex_lock(&out_lock);
	bool self = self_addr[0] && !strcmp(peer, self_addr);
	pthread_mutex_unlock(&out_lock);
	return self;
}

static void count_one(void)
{
	if (opt.count && atomic_fetch_add(&served, 1) + 1 >= opt.count) {
		pthread_mutex_lock(&out_lock);
		fflush(stdout);
		_exit(0);
	}
}

/* Prints the line, replies, closes (or runs the reuse check), counts. */
static void finish(struct conn *c, const char *end)
{
	char acc[ADDR_STR + 80], peer[ADDR_STR], local[ADDR_STR], data[DATA_MAX * 4 + 8];
	fmt_accept(c, acc, sizeof acc);
	na_format_name(c->fd, true, peer, sizeof peer);
	na_format_name(c->fd, false, local, sizeof local);
	fmt_data(c, end, data, sizeof data);
	out_line("conn accept=%s peer=%s local=%s data=%s\n", acc, peer, local, data);

	char reply[ADDR_STR + 8];
	int n = snprintf(reply, sizeof reply, "OK %s\n", peer);
	write_all(c->fd, reply, (size_t)n);
	if (opt.reuse)
		reuse_check(c->fd);
	else
		close(c->fd);
	c->fd = -1;
	count_one();
}

/* After accept: -d, self-connection filter, greeting. Returns false if c was dropped. */
static bool start_conn(struct conn *c)
{
	if (opt.dup) {
		int d = dup(c->fd);
		if (d < 0)
			die("dup: %s", strerror(errno));
		close(c->fd);
		c->fd = d;
	}
	if (is_self(c->fd)) {
		close(c->fd);
		return false;
	}
	if (opt.greet)
		write_all(c->fd, "HELLO\r\n", 7);
	c->len = 0;
	clock_gettime(CLOCK_MONOTONIC, &c->last);
	return true;
}

static long ms_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Reads what is there. Returns NULL to go on, or why reading ended. */
static const char *read_some(struct conn *c)
{
	for (;;) {
		if (c->len == DATA_MAX)
			return "FULL";
		ssize_t r = recv(c->fd, c->data + c->len, DATA_MAX - c->len, MSG_DONTWAIT);
		if (r > 0) {
			c->len += (size_t)r;
			clock_gettime(CLOCK_MONOTONIC, &c->last);
			continue;
		}
		if (r == 0)
			return "EOF";
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return NULL;
		return errno == ECONNRESET ? "RESET" : "ERROR";
	}
}

/* Blocking mode: read until EOF, full, or idle. */
static void serve_blocking(struct conn *c)
{
	if (!start_conn(c))
		return;
	const char *end;
	while (!(end = read_some(c))) {
		long left = opt.idle_ms - ms_since(&c->last);
		if (left <= 0) {
			end = "TIMEOUT";
			break;
		}
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
	}
	finish(c, end);
}

/* The accepted socket is handed over as without the shim: exactly the flags accept4
 * asked for (none for accept), and SO_RCVLOWAT back at 1 so that poll wakes for the
 * first byte. Anything else ends the server with status 1. */
static void check_socket(int fd, int flags)
{
	bool nonblock = fcntl(fd, F_GETFL) & O_NONBLOCK, cloexec = fcntl(fd, F_GETFD) & FD_CLOEXEC;
	if (nonblock != !!(flags & SOCK_NONBLOCK) || cloexec != !!(flags & SOCK_CLOEXEC))
		die("accepted fd %d: O_NONBLOCK=%d FD_CLOEXEC=%d, asked for %s%s", fd, nonblock,
		    cloexec, flags & SOCK_NONBLOCK ? "SOCK_NONBLOCK " : "",
		    flags & SOCK_CLOEXEC ? "SOCK_CLOEXEC" : "");
	int lowat = 0;
	socklen_t len = sizeof lowat;
	if (getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, &len) < 0 || lowat != 1)
		die("accepted fd %d: SO_RCVLOWAT=%d, expected 1", fd, lowat);
}

/* accept() (block mode) or accept4() (threads, epoll). Returns the fd or -1 with errno. */
static int do_accept(struct conn *c, bool use_accept4, int flags)
{
	memset(&c->acc, 0, sizeof c->acc);
	c->alen = opt.alen < 0 ? sizeof c->acc : (socklen_t)opt.alen;
	struct sockaddr *a = opt.alen == 0 ? NULL : (struct sockaddr *)&c->acc;
	socklen_t *l = opt.alen == 0 ? NULL : &c->alen;
	if (opt.alen == 0)
		c->alen = 0;
	c->fd = use_accept4 ? accept4(lfd, a, l, flags) : accept(lfd, a, l);
	if (c->fd >= 0)
		check_socket(c->fd, use_accept4 ? flags : 0);
	return c->fd;
}

static bool accept_error_is_transient(int e)
{
	return e == EINTR || e == ECONNABORTED || e == EPROTO || e == ENETDOWN ||
	       e == ENOPROTOOPT || e == EHOSTDOWN || e == EHOSTUNREACH || e == ENETUNREACH;
}

static void *accept_loop(void *arg)
{
	bool use_accept4 = arg != NULL;
	for (;;) {
		struct conn c;
		if (do_accept(&c, use_accept4, SOCK_CLOEXEC) < 0) {
			if (accept_error_is_transient(errno))
				continue;
			die("accept: %s", strerror(errno));
		}
		serve_blocking(&c);
	}
	return NULL;
}

static void run_threads(void)
{
	pthread_t t[MAX_THREADS];
	for (int i = 0; i < opt.nthreads; i++)
		if (pthread_create(&t[i], NULL, accept_loop, (void *)1) != 0)
			die("pthread_create failed");
	for (int i = 0; i < opt.nthreads; i++)
		pthread_join(t[i], NULL);
}

/* The connections of the event-loop modes (epoll, poll, select), by descriptor, and the
 * dense list of their descriptors; both grow with the highest descriptor. */
static struct conn **byfd;
static int *live, *livepos;
static int nlive, fdcap;

static void table_add(const struct conn *c)
{
	if (c->fd >= fdcap) {
		int cap = fdcap ? fdcap : 1024;
		while (cap <= c->fd)
			cap *= 2;
		byfd = realloc(byfd, (size_t)cap * sizeof *byfd);
		live = realloc(live, (size_t)cap * sizeof *live);
		livepos = realloc(livepos, (size_t)cap * sizeof *livepos);
		if (!byfd || !live || !livepos)
			die("out of memory");
		memset(byfd + fdcap, 0, (size_t)(cap - fdcap) * sizeof *byfd);
		fdcap = cap;
	}
	if (!(byfd[c->fd] = malloc(sizeof *c)))
		die("out of memory");
	*byfd[c->fd] = *c;
	livepos[c->fd] = nlive;
	live[nlive++] = c->fd;
}

/* Ends connection fd (ep: its epoll instance, or -1): line, reply, close. */
static void conn_done(int ep, int fd, const char *end)
{
	struct conn *c = byfd[fd];
	if (ep >= 0)
		epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	byfd[fd] = NULL;
	int k = livepos[fd];
	live[k] = live[--nlive];
	livepos[live[k]] = k;
	finish(c, end);
	free(c);
}

/* Accepts all pending connections into the table (and into epoll instance ep if >= 0). */
static void accept_all(int ep)
{
	for (;;) {
		struct conn c;
		if (do_accept(&c, true, SOCK_NONBLOCK | SOCK_CLOEXEC) < 0) {
			if (errno == EAGAIN)
				return;
			if (accept_error_is_transient(errno))
				continue;
			die("accept4: %s", strerror(errno));
		}
		if (!start_conn(&c))
			continue;
		table_add(&c);
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = c.fd };
		if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) < 0)
			die("epoll_ctl: %s", strerror(errno));
	}
}

/* A connection reported readable. */
static void conn_ready(int ep, int fd)
{
	if (fd < fdcap && byfd[fd]) {
		const char *end = read_some(byfd[fd]);
		if (end)
			conn_done(ep, fd, end);
	}
}

/* Ends the connections idle for -I ms; looks at most every 10 ms. */
static void idle_scan(int ep)
{
	static struct timespec last;
	if (ms_since(&last) < 10)
		return;
	clock_gettime(CLOCK_MONOTONIC, &last);
	for (int k = nlive - 1; k >= 0; k--) {
		const struct timespec *t = &byfd[live[k]]->last;
		if ((last.tv_sec - t->tv_sec) * 1000 + (last.tv_nsec - t->tv_nsec) / 1000000 >=
		    opt.idle_ms)
			conn_done(ep, live[k], "TIMEOUT");
	}
}

static void run_epoll(void)
{
	int fl = fcntl(lfd, F_GETFL);
	fcntl(lfd, F_SETFL, fl | O_NONBLOCK);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, 50);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == lfd)
				accept_all(ep);
			else
				conn_ready(ep, evs[i].data.fd);
		}
		idle_scan(ep);
	}
}

/* poll (sel false) or select: the listener and every connection in one call. The
 * select bitmaps are allocated for the highest descriptor, beyond FD_SETSIZE. */
static void run_poll(bool sel)
{
	int fl = fcntl(lfd, F_GETFL);
	fcntl(lfd, F_SETFL, fl | O_NONBLOCK);
	struct pollfd *pf = NULL;
	unsigned long *bits = NULL;
	size_t cap = 0;
	const int wb = (int)(8 * sizeof *bits);
	for (;;) {
		if ((size_t)nlive + 1 > cap || (size_t)fdcap > cap) {
			cap = 2 * ((size_t)nlive + 1 > (size_t)fdcap ? (size_t)nlive + 1 : (size_t)fdcap);
			pf = realloc(pf, cap * sizeof *pf);
			bits = realloc(bits, (cap / (size_t)wb + 1) * sizeof *bits);
			if (!pf || !bits)
				die("out of memory");
		}
		bool listener_ready = false;
		if (!sel) {
			pf[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
			for (int k = 0; k < nlive; k++)
				pf[k + 1] = (struct pollfd){ .fd = live[k], .events = POLLIN };
			int np = nlive + 1;
			int n = poll(pf, (nfds_t)np, 50);
			if (n < 0 && errno != EINTR)
				die("poll: %s", strerror(errno));
			for (int k = 1; k < np && n > 0; k++)
				if (pf[k].revents)
					conn_ready(-1, pf[k].fd);
			listener_ready = n > 0 && pf[0].revents;
		} else {
			int maxfd = lfd;
			for (int k = 0; k < nlive; k++)
				if (live[k] > maxfd)
					maxfd = live[k];
			int words = maxfd / wb + 1;
			memset(bits, 0, (size_t)words * sizeof *bits);
			bits[lfd / wb] |= 1UL << (lfd % wb);
			for (int k = 0; k < nlive; k++)
				bits[live[k] / wb] |= 1UL << (live[k] % wb);
			struct timeval tv = { 0, 50000 };
			int n = select(maxfd + 1, (fd_set *)bits, NULL, NULL, &tv);
			if (n < 0 && errno != EINTR)
				die("select: %s", strerror(errno));
			for (int w = 0; w < words && n > 0; w++)
				for (unsigned long m = bits[w]; m; m &= m - 1) {
					int fd = w * wb + __builtin_ctzl(m);
					if (fd == lfd)
						listener_ready = true;
					else
						conn_ready(-1, fd);
				}
		}
		if (listener_ready)
			accept_all(-1);
		idle_scan(-1);
	}
}

static int make_listener(void)
{
	struct sockaddr_storage ss;
	socklen_t len = na_parse(opt.laddr, opt.port, &ss);
	if (!len)
		die("bad listen address: \"%s\"", opt.laddr);
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	int one = 1, zero = 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr)
			       ? &zero : &one, sizeof one) < 0)
		die("IPV6_V6ONLY: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		die("bind %s:%u: %s", opt.laddr, opt.port, strerror(errno));
	if (!opt.freeport && listen(fd, opt.slow_ms ? 0 : 128) < 0)
		die("listen: %s", strerror(errno));
	return fd;
}

static unsigned bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		die("getsockname: %s", strerror(errno));
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Written to FILE.tmp, then renamed: a reader never sees a partial number. */
static void write_portfile(unsigned port)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", opt.portfile);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 || rename(tmp, opt.portfile) < 0)
		die("cannot write %s: %s", opt.portfile, strerror(errno));
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, on_alarm);
	alarm(opt.hard_timeout);

	lfd = make_listener();
	unsigned port = bound_port(lfd);
	if (opt.freeport) {
		printf("%u\n", port);
		return 0;
	}
	if (opt.portfile)
		write_portfile(port);
	if (opt.slow_ms) {
		struct timespec ts = { opt.slow_ms / 1000, (opt.slow_ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}

	if (opt.mode == MODE_EPOLL)
		run_epoll();
	else if (opt.mode == MODE_POLL || opt.mode == MODE_SELECT)
		run_poll(opt.mode == MODE_SELECT);
	else if (opt.mode == MODE_THREADS)
		run_threads();
	else
		accept_loop(NULL);
	return 0;
}
