/* hammer: many connections at once from one source address, each sending stdin's bytes
 * (at most 1 MiB) whole, split in two writes, or one byte at a time, then ending the
 * write side in a chosen way; reports how each connection ended. One thread, poll.
 * Run with -h.
 *
 * Results: served (reply bytes came), closed (EOF, no reply), reset (ECONNRESET, no
 * reply), timeout (neither within -t), connfail (no connection), rst (we reset it
 * ourselves with -e rst; not watched further). Output: with -v one line per
 * connection, "conn I split=K port=P result=R bytes=B ms=T reply=ESCAPED", then always
 * "summary served=N closed=N reset=N timeout=N connfail=N rst=N".
 * Exit status: 0 after every connection ended, 1 usage or set-up error. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netaddr.h"

#define PAYLOAD_MAX (1 << 20)
#define REPLY_KEEP 64

enum end { END_SHUT, END_KEEP, END_RST };
enum phase { CONNECTING, SENDING, WAITING };
enum result { R_SERVED, R_CLOSED, R_RESET, R_TIMEOUT, R_CONNFAIL, R_RST, R_COUNT };
static const char *const result_name[] = {"served", "closed", "reset", "timeout",
					  "connfail", "rst"};

static struct {
	const char *src;
	long count, parallel, split, delay_ms, partial, timeout_ms;
	bool sweep, trickle, verbose;
	enum end end;
} opt = {NULL, 1, 1, 0, 20, -1, 5000, false, false, false, END_SHUT};

static unsigned char payload[PAYLOAD_MAX];
static size_t plen;       /* bytes to send (after -p) */
static struct sockaddr_storage dst, src;
static socklen_t dlen, slen;
static long counts[R_COUNT];

struct conn {
	int fd;
	long idx;
	enum phase phase;
	size_t sent, split;   /* split: end of the first write (plen: one write) */
	long long t0;         /* connect started, then connected (ms) */
	long long next;       /* earliest time of the next write */
	unsigned port;
	size_t got;
	char reply[REPLY_KEEP];
};

static void usage(FILE *f)
{
	fputs("usage: hammer [-s SRC] [-n COUNT] [-j PARALLEL] [-c SPLIT] [-S] [-1] [-d MS]\n"
	      "              [-p BYTES] [-e shut|keep|rst] [-t MS] [-v] [-M] [-h] HOST PORT\n"
	      "  -s SRC     bind to SRC (port 0) before connecting\n"
	      "  -n COUNT   connections in all (default 1)\n"
	      "  -j N       at most N connections open at once (default 1)\n"
	      "  -c K       two writes: the first K bytes, then after -d ms the rest\n"
	      "  -S         sweep: connection I splits at byte K + I (with -c K)\n"
	      "  -1         trickle: one byte every -d ms\n"
	      "  -d MS      pause between the writes (default 20)\n"
	      "  -p BYTES   send only the first BYTES bytes of stdin\n"
	      "  -e END     after sending: shut (shutdown SHUT_WR, default), keep (write side\n"
	      "             left open), rst (SO_LINGER 0 and close: a reset, not watched)\n"
	      "  -t MS      bound on each connection's reply or close, from connect (default 5000)\n"
	      "  -v         one line per connection (see the header comment)\n"
	      "  -M         print CLOCK_MONOTONIC in seconds (the shim's log clock) and exit\n", f);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long num(const char *s, long min, long max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "hammer: bad %s: \"%s\"\n", what, s);
		exit(1);
	}
	return v;
}


static void parse_args(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "s:n:j:c:S1d:p:e:t:vMh")) != -1) {
		switch (c) {
		case 's': opt.src = optarg; break;
		case 'n': opt.count = num(optarg, 1, 10000000, "count"); break;
		case 'j': opt.parallel = num(optarg, 1, 100000, "parallel"); break;
		case 'c': opt.split = num(optarg, 0, PAYLOAD_MAX, "split"); break;
		case 'S': opt.sweep = true; break;
		case '1': opt.trickle = true; break;
		case 'd': opt.delay_ms = num(optarg, 0, 600000, "delay"); break;
		case 'p': opt.partial = num(optarg, 0, PAYLOAD_MAX, "partial"); break;
		case 'e':
			if (!strcmp(optarg, "shut"))
				opt.end = END_SHUT;
			else if (!strcmp(optarg, "keep"))
				opt.end = END_KEEP;
			else if (!strcmp(optarg, "rst"))
				opt.end = END_RST;
			else
				num("", 0, 0, "end");
			break;
		case 't': opt.timeout_ms = num(optarg, 1, 3600000, "timeout"); break;
		case 'v': opt.verbose = true; break;
		case 'M':
			printf("%lld.%03lld\n", now_ms() / 1000, now_ms() % 1000);
			exit(0);
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		exit(1);
	}
	dlen = na_parse(argv[optind], (unsigned)num(argv[optind + 1], 1, 65535, "port"), &dst);
	if (!dlen)
		num("", 0, 0, "host");
	if (opt.src && !(slen = na_parse(opt.src, 0, &src)))
		num("", 0, 0, "source");
}

static void read_payload(void)
{
	ssize_t r;
	while (plen < PAYLOAD_MAX && (r = read(0, payload + plen, PAYLOAD_MAX - plen)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perror("hammer: stdin");
			exit(1);
		}
		plen += (size_t)r;
	}
	if (opt.partial >= 0 && (size_t)opt.partial < plen)
		plen = (size_t)opt.partial;
}

static void escape(const char *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 5 < cap; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch == '\n')
			o += (size_t)snprintf(out + o, cap - o, "\\n");
		else if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
	}
	out[o] = '\0';
}

static void finish(struct conn *c, enum result r)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (r == R_CLOSED && c->got)
		r = R_SERVED;
	if (r == R_RESET && c->got)
		r = R_SERVED;
	counts[r]++;
	if (opt.verbose) {
		char rep[REPLY_KEEP * 4 + 1];
		escape(c->reply, c->got < REPLY_KEEP ? c->got : REPLY_KEEP, rep, sizeof rep);
		printf("conn %ld split=%zu port=%u result=%s bytes=%zu ms=%lld reply=%s\n", c->idx,
		       c->split, c->port, result_name[r], c->got, now_ms() - c->t0, rep);
	}
}

static void start(struct conn *c, long idx)
{
	memset(c, 0, sizeof *c);
	c->idx = idx;
	c->t0 = now_ms();
	c->split = opt.split ? (size_t)opt.split + (opt.sweep ? (size_t)idx : 0) : plen;
	if (c->split > plen)
		c->split = plen;
	c->fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		perror("hammer: socket");
		exit(1);
	}
	if (opt.src && bind(c->fd, (struct sockaddr *)&src, slen) < 0) {
		perror("hammer: bind");
		exit(1);
	}
	c->phase = CONNECTING;
	if (connect(c->fd, (struct sockaddr *)&dst, dlen) < 0 && errno != EINPROGRESS)
		finish(c, R_CONNFAIL);
}

static void connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof err;
	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		finish(c, R_CONNFAIL);
		return;
	}
	struct sockaddr_storage ss;
	len = sizeof ss;
	if (getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0)
		c->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
							: ((struct sockaddr_in6 *)&ss)->sin6_port);
	c->phase = SENDING;
	c->t0 = c->next = now_ms();
}

/* After the last byte: end the write side as asked. */
static void sent_all(struct conn *c)
{
	c->phase = WAITING;
	if (opt.end == END_SHUT) {
		shutdown(c->fd, SHUT_WR);
	} else if (opt.end == END_RST) {
		struct linger lg = {1, 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		finish(c, R_RST);
	}
}

/* Writes what is due now. */
static void send_due(struct conn *c, long long now)
{
	while (c->fd >= 0 && c->phase == SENDING && now >= c->next) {
		size_t upto = opt.trickle ? c->sent + 1 : c->sent < c->split ? c->split : plen;
		if (upto > plen)
			upto = plen;
		if (c->sent >= plen) {
			sent_all(c);
			return;
		}
		ssize_t w = send(c->fd, payload + c->sent, upto - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (w < 0) {  /* the server is gone: see how it ended */
			c->phase = WAITING;
			return;
		}
		c->sent += (size_t)w;
		if (c->sent == upto && c->sent < plen &&
		    (opt.trickle || c->sent == c->split))
			c->next = now + opt.delay_ms;
		if (c->sent >= plen)
			sent_all(c);
	}
}

static void read_some(struct conn *c)
{
	char buf[4096];
	for (;;) {
		ssize_t r = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r > 0) {
			for (ssize_t i = 0; i < r && c->got + (size_t)i < REPLY_KEEP; i++)
				c->reply[c->got + (size_t)i] = buf[i];
			c->got += (size_t)r;
			continue;
		}
		if (r == 0) {
			finish(c, R_CLOSED);
		} else if (errno == ECONNRESET || errno == EPIPE) {
			finish(c, R_RESET);
		} else if (errno != EAGAIN && errno != EINTR) {
			finish(c, R_RESET);
		}
		return;
	}
}

static void raise_nofile(long need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need + 16) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)need + 16 ? rl.rlim_max : (rlim_t)need + 16;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	read_payload();
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	raise_nofile(opt.parallel);
	struct conn *conns = calloc((size_t)opt.parallel, sizeof *conns);
	struct pollfd *pfd = calloc((size_t)opt.parallel, sizeof *pfd);
	if (!conns || !pfd)
		return 1;
	for (long i = 0; i < opt.parallel; i++)
		conns[i].fd = -1;
	long next_idx = 0, done = 0;
	while (done < opt.count) {
		long long now = now_ms();
		int wait = 100;
		for (long i = 0; i < opt.parallel; i++) {
			struct conn *c = &conns[i];
			if (c->fd < 0 && next_idx < opt.count)
				start(c, next_idx++);
			if (c->fd >= 0 && now - c->t0 >= opt.timeout_ms)
				finish(c, c->phase == CONNECTING ? R_CONNFAIL : R_TIMEOUT);
			if (c->fd >= 0 && c->phase == SENDING)
				send_due(c, now);
			pfd[i] = (struct pollfd){.fd = c->fd};
			if (c->fd < 0)
				continue;
			pfd[i].events = c->phase == CONNECTING ? POLLOUT : POLLIN;
			if (c->phase == SENDING && c->next > now && c->next - now < wait)
				wait = (int)(c->next - now);
			if (c->phase == SENDING && c->next <= now)
				pfd[i].events |= POLLOUT;
		}
		if (poll(pfd, (nfds_t)opt.parallel, wait) < 0 && errno != EINTR) {
			perror("hammer: poll");
			return 1;
		}
		for (long i = 0; i < opt.parallel; i++) {
			struct conn *c = &conns[i];
			if (c->fd < 0 || !pfd[i].revents)
				continue;
			if (c->phase == CONNECTING)
				connected(c);
			else if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				read_some(c);
		}
		done = 0;
		for (int r = 0; r < R_COUNT; r++)
			done += counts[r];
	}
	printf("summary served=%ld closed=%ld reset=%ld timeout=%ld connfail=%ld rst=%ld\n",
	       counts[R_SERVED], counts[R_CLOSED], counts[R_RESET], counts[R_TIMEOUT],
	       counts[R_CONNFAIL], counts[R_RST]);
	return 0;
}
