/* loadgen: the benchmarks' load generator. One thread, epoll, edge-triggered: -c
 * connections in flight; each connects (from -s if given), waits -d ms, then sends an
 * optional PROXY header (-p 1 or 2; its source is the connection's own address, as
 * HAProxy sends for a local client) together with the request in one write, reads the
 * reply to EOF and closes; a new connection takes its place. With -d 0 the header and
 * request go out as soon as the connection is established. -S N:MS makes every N-th
 * connection wait MS instead (a slow mix: one late proxy connection among prompt ones).
 *
 * Modes (-m):
 *   http   an HTTP/1.0 GET (-u PATH, padded to -L bytes with an X-Pad field); the
 *          reply is read to EOF (the server closes). -H half-closes after the request.
 *   mysql  reads the server's greeting, logs in as -U USER without a password
 *          (mysql_native_password), sends COM_QUIT, reads to EOF. The header (if any)
 *          is sent after -d ms; the server speaks first.
 *   -b BYTES  bulk: one connection sends the header and BYTES bytes, half-closes,
 *          reads the reply to EOF; prints the throughput.
 *   -k N   hold: opens N connections (-c at a time) that stay open and idle until
 *          SIGTERM: each sends its header and, with -m http, one HTTP/1.1 keep-alive
 *          request and reads the start of the reply (the server has served it); with
 *          -m none, nothing after the header. Prints a line once all N are held.
 *          -r RATE paces the opening (with -m none nothing paces it otherwise).
 *
 * PORT may be a range FIRST-LAST: connections go to its ports in turn. -A K spreads them
 * over K consecutive IPv4 source addresses from -s (a source address and a port reach
 * about 28,000 connections to one port). The time from connect() to a connection's
 * first reply byte is recorded; its median and 99th percentile are printed (us).
 * SIGTERM or SIGINT ends a timed run early, with its line printed as usual.
 *
 * Output (stdout), one line:
 *   conns=N errors=E seconds=S rate=R connect=.. reset=.. empty=.. bad=.. p50_us=.. p99_us=..
 *   bulk: bytes=N seconds=S mib_per_s=X reply="..."
 *   hold: held=N errors=E seconds=S, and at SIGTERM: end held=N lost=L (closed by the server)
 * Exit status: 0, 1 usage or set-up failure, 2 when some connections failed. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELPER_NAME "loadgen"
#include "common.h"

#define OUT_MAX 1024
#define IN_MAX 1024
#define EXPECT_MAX 32

enum mode { M_HTTP, M_MYSQL, M_NONE };
enum st { ST_CONNECTING, ST_DELAY, ST_SEND, ST_READ, ST_GREET, ST_AUTH, ST_QUIT, ST_HELD };

static struct {
	long conc;
	double seconds;
	long count;          /* 0: run for -t seconds */
	int version;         /* PROXY header: 0 none, 1, 2 */
	double delay_ms;
	long slow_every;     /* -S: every slow_every-th connection waits slow_ms instead */
	double slow_ms;
	const char *src;
	const char *path;
	long padlen;         /* 0: no padding */
	bool half_close;
	enum mode mode;
	const char *user;
	long long bulk;      /* > 0: bulk mode */
	const char *expect;  /* reply prefix that counts as success */
	long hold;           /* > 0: hold mode */
	long nsrc;           /* source addresses from -s */
	double open_rate;    /* hold mode: new connections per second, 0: no limit */
} opt = {100, 3.0, 0, 0, 0.0, 0, 0.0, NULL, "/", 0, false, M_HTTP, "bench", 0, NULL, 0, 1, 0};

struct conn {
	int fd;
	uint8_t st, after_send;  /* state; the state a completed send moves to */
	bool in_pending;         /* readable while we were not reading */
	uint16_t outlen, outoff, inlen;
	uint32_t got;            /* reply bytes */
	uint64_t due;            /* ST_DELAY: monotonic ns */
	uint64_t t0;             /* connect() */
	char out[OUT_MAX];
	unsigned char in[IN_MAX];
};

#define PORTS_MAX 65536
static struct sockaddr_storage dst, srcaddr;
static socklen_t dstlen, srclen;
static unsigned port_first, nports = 1, port_next;
static long src_next;
static uint32_t src_base;  /* -A: the first source address, host order */
static volatile sig_atomic_t got_signal;

/* Latencies, connect() to the first reply byte, in us. */
static uint32_t *lat;
static size_t nlat, lat_cap;

/* Hold mode: the descriptors of the held connections (epoll data: HELD_TAG | index). */
#define HELD_TAG (1ULL << 62)
static int *held;
static long nheld, nlost;
static long *freeslot;  /* hold mode: free slots of conns, started by top_up() */
static long nfree;
static int ep;
static struct conn *conns;
static long active, started;
static bool stopping;
static unsigned long done_ok, err_connect, err_reset, err_empty, err_bad;
static char request[OUT_MAX];
static size_t reqlen;

/* Connections waiting out -d, and those waiting out -S's delay: each a ring in due
 * order (every delay in one ring is the same). */
struct ring {
	long *q;
	long head, len;
};
static struct ring dq[2];
static unsigned long nconnected;  /* decides which connections are -S's slow ones */

static void usage(FILE *f)
{
	fputs("usage: loadgen [-c CONC] [-t SECONDS | -n COUNT | -k N] [-p 0|1|2] [-d DELAY_MS]\n"
	      "               [-s SRCADDR [-A K]] [-m http|mysql|none] [-u PATH] [-L LEN] [-H]\n"
	      "               [-U USER] [-e PREFIX] [-b BYTES] [-h] HOST PORT[-LAST]\n"
	      "  -c CONC    connections in flight (default 100)\n"
	      "  -t SEC     run for SEC seconds (default 3; fractions allowed)\n"
	      "  -n COUNT   instead: make COUNT connections, then stop\n"
	      "  -p V       PROXY header version: 0 none (default), 1 text, 2 binary\n"
	      "  -d MS      wait MS (fractions allowed) between connect and header+request\n"
	      "  -S N:MS    every N-th connection waits MS instead of -d (a slow mix)\n"
	      "  -s ADDR    bind to ADDR (port chosen at connect) before connecting\n"
	      "  -A K       with -s (IPv4): K consecutive source addresses from ADDR, in turn\n"
	      "  -m MODE    http (default) or mysql (greeting, login as -U, COM_QUIT)\n"
	      "  -u PATH    http: the path (default /)\n"
	      "  -L LEN     http: pad the request to exactly LEN bytes (X-Pad field)\n"
	      "  -H         http: shutdown(SHUT_WR) after the request\n"
	      "  -U USER    mysql: user, no password (default bench)\n"
	      "  -e PREFIX  a reply must start with PREFIX (else counted as bad)\n"
	      "  -b BYTES   bulk: one connection sends BYTES (K/M/G suffixes), reports MiB/s\n"
	      "  -k N       hold N idle connections (-c at a time while opening) until SIGTERM;\n"
	      "             -m http: header + one keep-alive request each, -m none: header only\n"
	      "  -r RATE    with -k: open at most RATE connections per second (with -m none\n"
	      "             nothing tells the server's accepts: keeps its accept queue short)\n"
	      "  PORT-LAST  connections go to the ports FIRST..LAST in turn\n"
	      "Prints: conns=N errors=E seconds=S rate=CONNS_PER_S ... p50_us=X p99_us=Y\n"
	      "(bulk: mib_per_s=X; hold: held=N errors=E seconds=S, at SIGTERM end held=N lost=L)\n", f);
}

static double parse_double(const char *s, double min, double max, const char *what)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < min || v > max)
		die("bad %s: \"%s\"", what, s);
	return v;
}

static long long parse_size(const char *s)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	long long mul = 1;
	if (*end == 'K' || *end == 'k')
		mul = 1LL << 10, end++;
	else if (*end == 'M' || *end == 'm')
		mul = 1LL << 20, end++;
	else if (*end == 'G' || *end == 'g')
		mul = 1LL << 30, end++;
	if (errno || end == s || *end || v <= 0 || v > (1LL << 50) / mul)
		die("bad byte count: \"%s\"", s);
	return v * mul;
}

static void parse_args(int argc, char **argv)
{
	int c;
	bool have_t = false;
	while ((c = getopt(argc, argv, "c:t:n:p:d:S:s:A:m:u:L:HU:e:b:k:r:h")) != -1) {
		switch (c) {
		case 'c': opt.conc = (long)parse_double(optarg, 1, 60000, "concurrency"); break;
		case 't': opt.seconds = parse_double(optarg, 0.01, 86400, "seconds"); have_t = true; break;
		case 'n': opt.count = (long)parse_double(optarg, 1, 1e9, "count"); break;
		case 'p': opt.version = (int)parse_double(optarg, 0, 2, "header version"); break;
		case 'd': opt.delay_ms = parse_double(optarg, 0, 60000, "delay"); break;
		case 'S': {
			char *colon = strchr(optarg, ':');
			if (!colon)
				die("bad slow mix: \"%s\" (N:MS)", optarg);
			*colon = 0;
			opt.slow_every = (long)parse_double(optarg, 1, 1e9, "slow mix N");
			opt.slow_ms = parse_double(colon + 1, 0, 60000, "slow mix delay");
			break;
		}
		case 's': opt.src = optarg; break;
		case 'A': opt.nsrc = (long)parse_double(optarg, 1, 65536, "source address count"); break;
		case 'k': opt.hold = (long)parse_double(optarg, 1, 1e7, "held connections"); break;
		case 'r': opt.open_rate = parse_double(optarg, 1, 1e7, "rate"); break;
		case 'm':
			if (!strcmp(optarg, "http"))
				opt.mode = M_HTTP;
			else if (!strcmp(optarg, "mysql"))
				opt.mode = M_MYSQL;
			else if (!strcmp(optarg, "none"))
				opt.mode = M_NONE;
			else
				die("bad mode: \"%s\"", optarg);
			break;
		case 'u': opt.path = optarg; break;
		case 'L': opt.padlen = (long)parse_double(optarg, 1, OUT_MAX - 120, "length"); break;
		case 'H': opt.half_close = true; break;
		case 'U': opt.user = optarg; break;
		case 'e': opt.expect = optarg; break;
		case 'b': opt.bulk = parse_size(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		exit(1);
	}
	if (have_t && opt.count)
		die("-t and -n exclude each other");
	if (opt.expect && strlen(opt.expect) > EXPECT_MAX)
		die("-e: at most %d bytes", EXPECT_MAX);
	if ((have_t || opt.count) && opt.hold)
		die("-k excludes -t and -n");
	if (opt.mode == M_NONE && !opt.hold)
		die("-m none: only with -k");
	char *end;
	unsigned long port = strtoul(argv[optind + 1], &end, 10), last = port;
	if (*end == '-')
		last = strtoul(end + 1, &end, 10);
	if (*end || !port || last < port || last > 65535 ||
	    !(dstlen = na_parse(argv[optind], (unsigned)port, &dst)))
		die("bad target: %s %s", argv[optind], argv[optind + 1]);
	port_first = (unsigned)port;
	nports = (unsigned)(last - port + 1);
	if (opt.src && (!(srclen = na_parse(opt.src, 0, &srcaddr)) ||
			srcaddr.ss_family != dst.ss_family))
		die("bad source address (must be of the target's family): \"%s\"", opt.src);
	if (opt.nsrc > 1 && (!opt.src || srcaddr.ss_family != AF_INET))
		die("-A: only with an IPv4 -s");
	if (opt.nsrc > 1)
		src_base = ntohl(((struct sockaddr_in *)&srcaddr)->sin_addr.s_addr);
}

/* The next target port and source address (in turn). */
static void next_addrs(void)
{
	unsigned p = port_first + port_next;
	port_next = (port_next + 1) % nports;
	if (dst.ss_family == AF_INET)
		((struct sockaddr_in *)&dst)->sin_port = htons((uint16_t)p);
	else
		((struct sockaddr_in6 *)&dst)->sin6_port = htons((uint16_t)p);
	if (opt.nsrc > 1) {
		((struct sockaddr_in *)&srcaddr)->sin_addr.s_addr = htonl(src_base + (uint32_t)src_next);
		src_next = (src_next + 1) % opt.nsrc;
	}
}

static void lat_add(uint64_t ns)
{
	if (nlat == lat_cap) {
		lat_cap = lat_cap ? 2 * lat_cap : 4096;
		lat = realloc(lat, lat_cap * sizeof *lat);
		if (!lat)
			die("out of memory");
	}
	uint64_t us = ns / 1000;
	lat[nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* The q-quantile of the recorded latencies (nearest rank), 0 when none. */
static uint32_t lat_quantile(double q)
{
	if (!nlat)
		return 0;
	size_t k = (size_t)(q * (double)nlat + 0.999999);
	return lat[k ? k - 1 : 0];
}

static void build_request(void)
{
	int n = snprintf(request, sizeof request, "GET %s HTTP/1.%d\r\nHost: bench\r\n", opt.path,
			 opt.hold ? 1 : 0);  /* held: keep-alive, HTTP/1.1's default */
	if (n < 0 || (size_t)n > sizeof request - 64)
		die("path too long");
	if (opt.padlen) {
		/* "X-Pad: " + pad + "\r\n" + "\r\n" */
		long pad = opt.padlen - n - 7 - 2 - 2;
		if (pad < 0)
			die("-L %ld: the request needs at least %d bytes", opt.padlen, n + 11);
		n += snprintf(request + n, sizeof request - (size_t)n, "X-Pad: ");
		memset(request + n, 'x', (size_t)pad);
		n += (int)pad;
	}
	if (opt.padlen)
		n += snprintf(request + n, sizeof request - (size_t)n, "\r\n\r\n");
	else
		n += snprintf(request + n, sizeof request - (size_t)n, "\r\n");
	reqlen = (size_t)n;
}

/* The PROXY header for fd's connection into buf; returns its length. */
static size_t build_header(int fd, char *buf, size_t cap)
{
	struct sockaddr_storage l, r;
	socklen_t ll = sizeof l, rl = sizeof r;
	if (getsockname(fd, (struct sockaddr *)&l, &ll) < 0 ||
	    getpeername(fd, (struct sockaddr *)&r, &rl) < 0)
		return 0;
	if (opt.version == 1) {
		char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
		unsigned sp, dp;
		if (l.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&l)->sin_addr, a, sizeof a);
			inet_ntop(AF_INET, &((struct sockaddr_in *)&r)->sin_addr, b, sizeof b);
			sp = ntohs(((struct sockaddr_in *)&l)->sin_port);
			dp = ntohs(((struct sockaddr_in *)&r)->sin_port);
		} else {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&l)->sin6_addr, a, sizeof a);
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&r)->sin6_addr, b, sizeof b);
			sp = ntohs(((struct sockaddr_in6 *)&l)->sin6_port);
			dp = ntohs(((struct sockaddr_in6 *)&r)->sin6_port);
		}
		int n = snprintf(buf, cap, "PROXY %s %s %s %u %u\r\n",
				 l.ss_family == AF_INET ? "TCP4" : "TCP6", a, b, sp, dp);
		return n > 0 && (size_t)n < cap ? (size_t)n : 0;
	}
	static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
	unsigned char *p = (unsigned char *)buf;
	memcpy(p, sig, 12);
	p[12] = 0x21;
	size_t body;
	if (l.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&l, *b = (struct sockaddr_in *)&r;
		p[13] = 0x11;
		body = 12;
		memcpy(p + 16, &a->sin_addr, 4);
		memcpy(p + 20, &b->sin_addr, 4);
		memcpy(p + 24, &a->sin_port, 2);
		memcpy(p + 26, &b->sin_port, 2);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&l, *b = (struct sockaddr_in6 *)&r;
		p[13] = 0x21;
		body = 36;
		memcpy(p + 16, &a->sin6_addr, 16);
		memcpy(p + 32, &b->sin6_addr, 16);
		memcpy(p + 48, &a->sin6_port, 2);
		memcpy(p + 50, &b->sin6_port, 2);
	}
	p[14] = (unsigned char)(body >> 8);
	p[15] = (unsigned char)body;
	return 16 + body;
}

/* The MySQL login packet (sequence 1): HandshakeResponse41, empty auth response. */
static size_t build_login(char *buf, size_t cap)
{
	unsigned char *p = (unsigned char *)buf;
	size_t ul = strlen(opt.user);
	static const char plugin[] = "mysql_native_password";
	size_t len = 4 + 4 + 1 + 23 + ul + 1 + 1 + sizeof plugin;
	if (4 + len > cap)
		die("user name too long");
	uint32_t caps = 0x1 | 0x4 | 0x200 | 0x2000 | 0x8000 | 0x80000;
	p[0] = (unsigned char)len, p[1] = (unsigned char)(len >> 8), p[2] = 0, p[3] = 1;
	unsigned char *q = p + 4;
	for (int i = 0; i < 4; i++)
		*q++ = (unsigned char)(caps >> (8 * i));
	*q++ = 0, *q++ = 0, *q++ = 0, *q++ = 1;  /* max packet 16 MiB */
	*q++ = 33;                                 /* utf8_general_ci */
	memset(q, 0, 23), q += 23;
	memcpy(q, opt.user, ul + 1), q += ul + 1;
	*q++ = 0;                                  /* auth response: empty */
	memcpy(q, plugin, sizeof plugin), q += sizeof plugin;
	return (size_t)(q - p);
}

static void dq_push(struct ring *r, long i)
{
	r->q[(r->head + r->len++) % opt.conc] = i;
}

static void start_conn(long i);

static bool more_to_start(void)
{
	if (stopping)
		return false;
	if (opt.hold)  /* a failed connection is replaced, up to N failures */
		return started < opt.hold + (long)(err_connect + err_reset + err_empty + err_bad) &&
		       started < 2 * opt.hold;
	return !opt.count || started < opt.count;
}

static void finish(struct conn *c, long i, bool ok, unsigned long *err)
{
	close(c->fd);
	c->fd = -1;
	active--;
	if (ok)
		done_ok++;
	else
		(*err)++;
	if (opt.hold)
		freeslot[nfree++] = i;
	else if (more_to_start())
		start_conn(i);
}

/* Hold mode: the connection is up (and served): its descriptor moves to the held list
 * and its slot takes the next connection. */
static void make_held(struct conn *c, long i)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
				 .data.u64 = HELD_TAG | (uint64_t)nheld};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	held[nheld++] = c->fd;
	c->fd = -1;
	active--;
	done_ok++;
	freeslot[nfree++] = i;
}

/* Hold mode: starts connections in the free slots, within -r since t0. Returns the ns
 * until the next one may start (0: none is waiting for the rate). */
static uint64_t top_up(uint64_t t0)
{
	while (nfree && more_to_start()) {
		if (opt.open_rate > 0) {
			uint64_t at = t0 + (uint64_t)((double)(started + 1) * 1e9 / opt.open_rate),
				 now = now_ns();
			if (at > now)
				return at - now;
		}
		start_conn(freeslot[--nfree]);
	}
	return 0;
}

/* A held connection is readable: drains it; the server's close counts as lost. */
static void on_held(long k)
{
	char buf[4096];
	for (;;) {
		ssize_t r = recv(held[k], buf, sizeof buf, 0);
		if (r > 0)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		close(held[k]);
		held[k] = -1;
		nlost++;
		return;
	}
}

static void fail_errno(struct conn *c, long i)
{
	int e = errno;
	if (c->st == ST_CONNECTING || e == ECONNREFUSED || (c->st == ST_SEND && c->outoff == 0 &&
							     e != ECONNRESET && e != EPIPE))
		finish(c, i, false, &err_connect);
	else
		finish(c, i, false, &err_reset);
}

static void queue_send(struct conn *c, const char *data, size_t n, uint8_t next)
{
	memcpy(c->out, data, n);
	c->outlen = (uint16_t)n;
	c->outoff = 0;
	c->st = ST_SEND;
	c->after_send = next;
}

/* The connection is up (or -d has passed): header and request go out together. */
static void prepare_first(struct conn *c)
{
	size_t n = 0;
	if (opt.version)
		n = build_header(c->fd, c->out, sizeof c->out);
	if (opt.mode == M_HTTP) {
		memcpy(c->out + n, request, reqlen);
		n += reqlen;
	}
	c->outlen = (uint16_t)n;
	c->outoff = 0;
	c->st = ST_SEND;
	c->after_send = opt.mode == M_HTTP ? ST_READ : opt.mode == M_NONE ? ST_HELD : ST_GREET;
}

/* Whole MySQL packet in c->in? Returns its total length (header included) or 0. */
static size_t packet_len(const struct conn *c)
{
	if (c->inlen < 4)
		return 0;
	size_t len = 4 + (c->in[0] | (size_t)c->in[1] << 8 | (size_t)c->in[2] << 16);
	return c->inlen >= len ? len : 0;
}

/* Makes all the progress possible without blocking. */
static void step(struct conn *c, long i)
{
	for (;;) {
		switch (c->st) {
		case ST_CONNECTING:
		case ST_DELAY:
			return;
		case ST_HELD:
			make_held(c, i);
			return;
		case ST_SEND: {
			if (c->outoff < c->outlen) {
				ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
						 MSG_NOSIGNAL);
				if (w < 0) {
					if (errno == EAGAIN || errno == EINTR)
						return;
					fail_errno(c, i);
					return;
				}
				c->outoff = (uint16_t)(c->outoff + w);
				if (c->outoff < c->outlen)
					continue;
			}
			if (c->after_send == ST_READ && opt.half_close)
				shutdown(c->fd, SHUT_WR);
			c->st = c->after_send;
			/* Replies that came while we were sending (edge-triggered: no new
			 * event for them), and the server-speaks-first greeting. */
			if (!c->in_pending && c->st == ST_READ)
				return;
			c->in_pending = false;
			continue;
		}
		case ST_READ: {
			char buf[16384];
			ssize_t r = recv(c->fd, buf, sizeof buf, 0);
			if (r > 0 && !c->got)
				lat_add(now_ns() - c->t0);
			if (r > 0 && opt.hold) {
				make_held(c, i);
				return;
			}
			if (r > 0) {
				if (opt.expect && c->got < EXPECT_MAX) {
					size_t k = (size_t)r < EXPECT_MAX - c->got ? (size_t)r
										: EXPECT_MAX - c->got;
					memcpy(c->in + c->got, buf, k);
				}
				c->got += (uint32_t)r;
				continue;
			}
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			if (r < 0) {
				finish(c, i, false, &err_reset);
				return;
			}
			if (!c->got) {
				finish(c, i, false, &err_empty);
				return;
			}
			if (opt.expect) {
				size_t el = strlen(opt.expect);
				if (c->got < el || memcmp(c->in, opt.expect, el)) {
					finish(c, i, false, &err_bad);
					return;
				}
			}
			finish(c, i, true, NULL);
			return;
		}
		case ST_GREET:
		case ST_AUTH:
		case ST_QUIT: {
			ssize_t r = recv(c->fd, c->in + c->inlen, IN_MAX - c->inlen, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			if (r > 0 && c->st == ST_GREET && !c->inlen)
				lat_add(now_ns() - c->t0);
			if (r < 0) {
				finish(c, i, false, &err_reset);
				return;
			}
			if (r == 0) {
				if (c->st == ST_QUIT)
					finish(c, i, true, NULL);
				else
					finish(c, i, false, c->st == ST_GREET && !c->inlen ? &err_empty
											: &err_bad);
				return;
			}
			c->inlen = (uint16_t)(c->inlen + r);
			if (c->st == ST_QUIT) {
				c->inlen = 0;
				continue;
			}
			size_t pl = packet_len(c);
			if (!pl) {
				if (c->inlen == IN_MAX) {
					finish(c, i, false, &err_bad);
					return;
				}
				continue;
			}
			unsigned char kind = c->in[4];
			c->inlen = 0;
			if (c->st == ST_GREET) {
				if (kind != 10) {  /* protocol 10, else an error packet */
					finish(c, i, false, &err_bad);
					return;
				}
				char login[256];
				size_t n = build_login(login, sizeof login);
				queue_send(c, login, n, ST_AUTH);
				c->in_pending = true;
			} else {
				if (kind != 0) {  /* OK */
					finish(c, i, false, &err_bad);
					return;
				}
				static const char quit[] = {1, 0, 0, 0, 1};
				queue_send(c, quit, sizeof quit, ST_QUIT);
				c->in_pending = true;
			}
			continue;
		}
		}
	}
}

static void start_conn(long i)
{
	struct conn *c = &conns[i];
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	next_addrs();
	c->t0 = now_ns();
	if (opt.src) {
		int one = 1;
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&srcaddr, srclen) < 0)
			die("bind %s: %s", opt.src, strerror(errno));
	}
	c->fd = fd;
	c->st = ST_CONNECTING;
	c->in_pending = false;
	c->inlen = 0;
	c->got = 0;
	c->outlen = c->outoff = 0;
	active++;
	started++;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = (uint64_t)i};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&dst, dstlen) < 0 && errno != EINPROGRESS) {
		if (errno == EADDRNOTAVAIL)
			die("connect: %s (out of local ports?)", strerror(errno));
		finish(c, i, false, &err_connect);
	}
}

static void on_event(uint64_t data, uint32_t events)
{
	if (data & HELD_TAG) {
		long k = (long)(data & ~HELD_TAG);
		if (held[k] >= 0)
			on_held(k);
		return;
	}
	long i = (long)data;
	struct conn *c = &conns[i];
	if (c->fd < 0)
		return;
	if (c->st == ST_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (events & EPOLLERR) {
			int e = 0;
			socklen_t l = sizeof e;
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
			errno = e;
			finish(c, i, false, &err_connect);
			return;
		}
		if (events & EPOLLIN)
			c->in_pending = true;
		bool slow = opt.slow_every && ++nconnected % (unsigned long)opt.slow_every == 0;
		double ms = slow ? opt.slow_ms : opt.delay_ms;
		if (ms > 0) {
			c->st = ST_DELAY;
			c->due = now_ns() + (uint64_t)(ms * 1e6);
			dq_push(&dq[slow], i);
			return;
		}
		if (opt.mode == M_MYSQL && !opt.version) {
			c->st = ST_GREET;
			step(c, i);
			return;
		}
		prepare_first(c);
		step(c, i);
		return;
	}
	if (c->st == ST_DELAY) {
		if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			c->in_pending = true;
		return;
	}
	if (c->st == ST_SEND && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		c->in_pending = true;
		return;
	}
	if (c->st == ST_SEND && (events & (EPOLLIN | EPOLLRDHUP)))
		c->in_pending = true;
	step(c, i);
}

static void run_delays(struct ring *r)
{
	uint64_t now = now_ns();
	while (r->len) {
		long i = r->q[r->head];
		struct conn *c = &conns[i];
		if (c->fd >= 0 && c->st == ST_DELAY && c->due > now)
			break;
		r->head = (r->head + 1) % opt.conc;
		r->len--;
		if (c->fd < 0 || c->st != ST_DELAY)
			continue;
		if (opt.mode == M_MYSQL && !opt.version) {
			c->st = ST_GREET;
		} else {
			bool pend = c->in_pending;
			prepare_first(c);
			c->in_pending = pend;
		}
		step(c, i);
	}
}

static void on_signal(int sig)
{
	got_signal = sig;
}

static int run_load(void)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)opt.conc + (rlim_t)opt.hold + 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	build_request();
	if (opt.hold && opt.conc > opt.hold)
		opt.conc = opt.hold;
	conns = calloc((size_t)opt.conc, sizeof *conns);
	dq[0].q = calloc((size_t)opt.conc, sizeof *dq[0].q);
	dq[1].q = calloc((size_t)opt.conc, sizeof *dq[1].q);
	held = opt.hold ? calloc((size_t)opt.hold, sizeof *held) : NULL;
	freeslot = calloc((size_t)opt.conc, sizeof *freeslot);
	if (!conns || !dq[0].q || !dq[1].q || !freeslot || (opt.hold && !held))
		die("out of memory");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
	for (long i = 0; i < opt.conc; i++)
		conns[i].fd = -1;
	bool timed = !opt.count && !opt.hold, reported = false;
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(opt.seconds * 1e9);
	if (opt.hold)
		for (long i = opt.conc - 1; i >= 0; i--)
			freeslot[nfree++] = i;
	else
		for (long i = 0; i < opt.conc && more_to_start(); i++)
			start_conn(i);
	struct epoll_event evs[256];
	while ((active > 0 || opt.hold) && !got_signal) {
		struct timespec to = {0, 0}, *top = NULL;
		uint64_t wait = opt.hold ? top_up(t0) : 0;
		if (opt.hold) {  /* bounded: a signal may come just before the wait */
			to.tv_nsec = wait ? (long)(wait < 1000000 ? wait : 1000000) : 100000000;
			top = &to;
		}
		uint64_t now = now_ns();
		if (opt.hold && !active && !more_to_start() && !reported) {
			printf("held=%ld errors=%lu seconds=%.3f\n", nheld,
			       err_connect + err_reset + err_empty + err_bad,
			       (double)(now - t0) / 1e9);
			reported = true;
		}
		if (timed) {
			if (now >= end)
				break;
			uint64_t left = end - now;
			to.tv_sec = (time_t)(left / 1000000000u);
			to.tv_nsec = (long)(left % 1000000000u);
			top = &to;
		}
		for (int k = 0; k < 2; k++) {
			if (!dq[k].len)
				continue;
			struct conn *h = &conns[dq[k].q[dq[k].head]];
			uint64_t left = h->due > now ? h->due - now : 0;
			if (!top || left < (uint64_t)to.tv_sec * 1000000000u + (uint64_t)to.tv_nsec) {
				to.tv_sec = (time_t)(left / 1000000000u);
				to.tv_nsec = (long)(left % 1000000000u);
				top = &to;
			}
		}
		int n = epoll_pwait2(ep, evs, 256, top, NULL);
		if (n < 0 && errno != EINTR)
			die("epoll_pwait2: %s", strerror(errno));
		for (int k = 0; k < n; k++)
			on_event(evs[k].data.u64, evs[k].events);
		run_delays(&dq[0]);
		run_delays(&dq[1]);
	}
	stopping = true;
	double secs = (double)(now_ns() - t0) / 1e9;
	unsigned long errs = err_connect + err_reset + err_empty + err_bad;
	if (opt.hold) {
		printf("end held=%ld lost=%ld\n", nheld - nlost, nlost);
		return 0;
	}
	qsort(lat, nlat, sizeof *lat, cmp_u32);
	printf("conns=%lu errors=%lu seconds=%.3f rate=%.1f connect=%lu reset=%lu empty=%lu bad=%lu"
	       " p50_us=%u p99_us=%u\n", done_ok, errs, secs, (double)done_ok / secs, err_connect,
	       err_reset, err_empty, err_bad, lat_quantile(0.5), lat_quantile(0.99));
	return errs ? 2 : 0;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("send: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
}

static int run_bulk(void)
{
	static char buf[1 << 20];
	memset(buf, 'x', sizeof buf);
	uint64_t t0 = now_ns();
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (opt.src && bind(fd, (struct sockaddr *)&srcaddr, srclen) < 0)
		die("bind %s: %s", opt.src, strerror(errno));
	if (connect(fd, (struct sockaddr *)&dst, dstlen) < 0)
		die("connect: %s", strerror(errno));
	char hdr[128];
	size_t hl = opt.version ? build_header(fd, hdr, sizeof hdr) : 0;
	if (hl)
		write_all(fd, hdr, hl);
	for (long long left = opt.bulk; left > 0;) {
		size_t n = left < (long long)sizeof buf ? (size_t)left : sizeof buf;
		write_all(fd, buf, n);
		left -= (long long)n;
	}
	shutdown(fd, SHUT_WR);
	char reply[256];
	size_t rl = 0;
	for (;;) {
		ssize_t r = recv(fd, reply + rl, sizeof reply - 1 - rl, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		rl += (size_t)r;
		if (rl == sizeof reply - 1)
			break;
	}
	reply[rl] = '\0';
	while (rl && (reply[rl - 1] == '\n' || reply[rl - 1] == '\r'))
		reply[--rl] = '\0';
	double secs = (double)(now_ns() - t0) / 1e9;
	close(fd);
	printf("bytes=%lld seconds=%.3f mib_per_s=%.1f reply=\"%s\"\n", opt.bulk, secs,
	       (double)opt.bulk / 1048576.0 / secs, reply);
	return rl ? 0 : 2;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	return opt.bulk ? run_bulk() : run_load();
}
