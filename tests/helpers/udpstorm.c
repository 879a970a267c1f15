/* udpstorm: stress and benchmark driver for the UDP side of the shim. It plays a
 * proxy in front of a UDP server that echoes "from=<reported source> <payload>" back to
 * the reported source (udpsrv -e ...), on behalf of C simulated clients; client i is
 * 127.0.(i/250+1).(i%250+2):(10000+i), all loopback, none of them 127.0.0.x.
 *
 * Modes (-m):
 *   every  one proxy socket (bound to -b); each datagram starts with a v2 PROXY UDP4
 *          header naming its client. The shim reports that client to the server and
 *          sends the server's reply, addressed to the client, back to the proxy socket.
 *   first  one proxy socket per client (bound to -b, port 0); a client's first datagram
 *          is a header-only one naming the client (never counted, never answered), the
 *          rest carry no header: the shim attributes them by the proxy socket's port.
 *   raw    one socket, no header: the no-shim baseline; replies must name the socket's
 *          own address.
 * Datagram k (0 <= k < D) belongs to client k % C; its payload is "u<client>.<k>"
 * (plus -p bytes of padding after a space). W datagrams are kept in flight; a reply is
 * right when it comes from the server, on the socket of the datagram's client (first),
 * and names the datagram's client (the proxy socket itself with raw). A datagram without
 * a reply after -T ms is lost (a reply after that counts as late, not wrong).
 *
 * Output, one line on stdout:
 *   sent=N replies=N wrong=N lost=N secs=S dps=R late=N hdronly=N mode=M [aborted=lost]
 * dps is replies per second from the first send to the last reply. The first few wrong
 * replies are shown on stderr. Once more than --max-lost are lost the run stops at once
 * (the datagrams still in flight count as lost, "aborted=lost" is added): a broken
 * reply path costs one reply timeout, not one per datagram. Exit status: 0; 1 usage or set-up failure; 2 wrong > 0
 * or lost > --max-lost; 3 not all D datagrams could be sent within -t seconds. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELPER_NAME "udpstorm"
#include "udpkit.h"

#define BATCH 64
#define DGRAM_MAX 2048
#define CLIENTS_MAX 50000
#define DATAGRAMS_MAX 20000000L
#define WRONG_SHOWN 5
#define ADDR_STR 160

enum mode { M_EVERY, M_FIRST, M_RAW };
enum state { S_UNSENT, S_INFLIGHT, S_REPLIED, S_LOST };

static struct {
	enum mode mode;
	long clients, datagrams, window;
	double seconds;
	const char *proxy;
	long reply_timeout_ms;
	long max_lost;
	long pad;
} opt = { M_EVERY, 100, 10000, 64, 60.0, "127.0.0.10", 2000, 0, 0 };

static struct sockaddr_storage server;    /* ADDR:PORT (IPv4) */
static socklen_t serverlen;
static int *socks;                        /* every/raw: socks[0]; first: one per client */
static int ep = -1;
static uint8_t *state;                    /* per datagram */
static uint32_t *sent_ms;                 /* per datagram: ms after start */
static bool *introduced;                  /* first: header-only datagram sent */
static char self[ADDR_STR];               /* raw: the socket's own address */
static uint64_t t0;
static long next_seq, oldest, inflight;
static unsigned long n_sent, n_replies, n_wrong, n_lost, n_late, n_hdr;

static void usage(FILE *f)
{
	fputs("usage: udpstorm [-m every|first|raw] [--raw] [-c CLIENTS] [-d DATAGRAMS]\n"
	      "                [-w WINDOW] [-t SECONDS] [-b PROXYADDR] [-T REPLY_MS]\n"
	      "                [--max-lost N] [-p PAD] [-h] ADDR PORT\n"
	      "  -m MODE       every (default) | first | raw (--raw: the same as -m raw)\n"
	      "  -c CLIENTS    simulated clients (default 100, at most 50000)\n"
	      "  -d DATAGRAMS  datagrams in all (default 10000)\n"
	      "  -w WINDOW     datagrams in flight (default 64)\n"
	      "  -t SECONDS    stop sending after SECONDS (default 60)\n"
	      "  -b ADDR       the proxy socket(s)' IPv4 address (default 127.0.0.10)\n"
	      "  -T MS         a datagram without a reply after MS is lost (default 2000)\n"
	      "  --max-lost N  exit 2 when more than N are lost (default 0)\n"
	      "  -p PAD        add PAD bytes of padding to each payload (default 0)\n"
	      "ADDR PORT: the server under test (IPv4).\n", f);
}

static uint32_t elapsed_ms(void)
{
	return (uint32_t)((now_ns() - t0) / 1000000u);
}

/* Client i's address (as the server reports and echoes it). */
static void client_addr(long i, struct sockaddr_in *s)
{
	memset(s, 0, sizeof *s);
	s->sin_family = AF_INET;
	s->sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(i / 250 + 1) << 8 |
				   (uint32_t)(i % 250 + 2));
	s->sin_port = htons((uint16_t)(10000 + i));
}

static int client_text(long i, char *buf, size_t n)
{
	return snprintf(buf, n, "127.0.%ld.%ld:%ld", i / 250 + 1, i % 250 + 2, 10000 + i);
}

/* ---- sockets ---- */

static void big_buffers(int fd, int bytes)
{
	/* as root the FORCE variants go past net.core.[rw]mem_max; otherwise capped */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

static int proxy_socket(long tag)
{
	struct sockaddr_storage b;
	socklen_t bl = na_parse(opt.proxy, 0, &b);
	if (!bl || b.ss_family != AF_INET) {
		fprintf(stderr, "udpstorm: bad proxy address \"%s\" (IPv4)\n", opt.proxy);
		exit(1);
	}
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die_errno("socket");
	if (bind(fd, (struct sockaddr *)&b, bl) < 0)
		die_errno("bind");
	big_buffers(fd, opt.mode == M_FIRST ? 1 << 16 : 8 << 20);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)tag };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die_errno("epoll_ctl");
	return fd;
}

static void open_sockets(void)
{
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die_errno("epoll_create1");
	long n = opt.mode == M_FIRST ? opt.clients : 1;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 32) {
		rl.rlim_cur = rl.rlim_max;   /* one descriptor per client in first mode */
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	socks = calloc((size_t)n, sizeof *socks);
	if (!socks)
		die_errno("calloc");
	for (long i = 0; i < n; i++)
		socks[i] = proxy_socket(i);
	na_format_name(socks[0], 0, self, sizeof self);
}

/* ---- sending ---- */

/* The datagram for seq (with its header in every mode) into p; returns its size. */
static size_t build(long seq, uint8_t *p)
{
	size_t off = 0;
	long c = seq % opt.clients;
	if (opt.mode == M_EVERY) {
		struct sockaddr_storage src;
		client_addr(c, (struct sockaddr_in *)&src);
		off = uk_v2_header(p, 0x21, &src, &server, NULL, 0);
	}
	off += (size_t)snprintf((char *)p + off, DGRAM_MAX - off, "u%ld.%ld", c, seq);
	if (opt.pad > 0) {
		p[off++] = ' ';
		memset(p + off, 'x', (size_t)opt.pad - 1);
		off += (size_t)opt.pad - 1;
	}
	return off;
}

static void mark_sent(long seq)
{
	state[seq] = S_INFLIGHT;
	sent_ms[seq] = elapsed_ms();
	inflight++;
	n_sent++;
}

/* every/raw: fills the window with sendmmsg batches from the one socket. */
static void send_shared(void)
{
	static uint8_t bufs[BATCH][DGRAM_MAX];
	struct mmsghdr mm[BATCH];
	struct iovec iov[BATCH];
	while (inflight < opt.window && next_seq < opt.datagrams) {
		long room = opt.window - inflight, left = opt.datagrams - next_seq;
		unsigned k = (unsigned)(room < left ? room : left);
		if (k > BATCH)
			k = BATCH;
		for (unsigned i = 0; i < k; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = build(next_seq + (long)i, bufs[i]);
			memset(&mm[i], 0, sizeof mm[i]);
			mm[i].msg_hdr.msg_name = &server;
			mm[i].msg_hdr.msg_namelen = serverlen;
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
		}
		int r = sendmmsg(socks[0], mm, k, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOBUFS))
			return;          /* try again after the next wait */
		if (r < 0)
			die_errno("sendmmsg");
		for (int i = 0; i < r; i++)
			mark_sent(next_seq++);
	}
}

/* first: each client's socket; its first datagram is preceded by a header-only one. */
static void send_per_client(void)
{
	uint8_t buf[DGRAM_MAX];
	while (inflight < opt.window && next_seq < opt.datagrams) {
		long c = next_seq % opt.clients;
		int fd = socks[c];
		if (!introduced[c]) {
			struct sockaddr_storage src;
			client_addr(c, (struct sockaddr_in *)&src);
			size_t hl = uk_v2_header(buf, 0x21, &src, &server, NULL, 0);
			if (sendto(fd, buf, hl, 0, (struct sockaddr *)&server, serverlen) < 0) {
				if (errno == EAGAIN || errno == EINTR || errno == ENOBUFS)
					return;
				die_errno("sendto");
			}
			introduced[c] = true;
			n_hdr++;
		}
		size_t n = build(next_seq, buf);
		if (sendto(fd, buf, n, 0, (struct sockaddr *)&server, serverlen) < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ENOBUFS)
				return;
			die_errno("sendto");
		}
		mark_sent(next_seq++);
	}
}

/* ---- replies ---- */

static void wrong(const char *why, const uint8_t *p, size_t n)
{
	if (n_wrong++ < WRONG_SHOWN) {
		fprintf(stderr, "udpstorm: wrong reply (%s): ", why);
		put_escaped(stderr, p, n < 200 ? n : 200);
		fputc('\n', stderr);
	}
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t al)
{
	const struct sockaddr_in *x = (const void *)a, *y = (const void *)&server;
	return al == sizeof *x && x->sin_family == AF_INET &&
	       x->sin_addr.s_addr == y->sin_addr.s_addr && x->sin_port == y->sin_port;
}

/* Checks one reply that arrived on the socket of client `on` (-1: the shared socket). */
static void check(const uint8_t *p, size_t n, const struct sockaddr_storage *from,
		  socklen_t fromlen, long on)
{
	if (!same_addr(from, fromlen)) {
		wrong("not from the server", p, n);
		return;
	}
	/* "from=<addr> u<client>.<seq>[ pad]" */
	char text[DGRAM_MAX + 1];
	memcpy(text, p, n);
	text[n] = '\0';
	char *sp = strchr(text, ' ');
	if (strncmp(text, "from=", 5) || !sp || sp[1] != 'u') {
		wrong("unparsable", p, n);
		return;
	}
	char *end;
	errno = 0;
	unsigned long c = strtoul(sp + 2, &end, 10);
	unsigned long seq = *end == '.' ? strtoul(end + 1, &end, 10) : ULONG_MAX;
	if (errno || (*end && *end != ' ') || seq >= (unsigned long)opt.datagrams ||
	    c != seq % (unsigned long)opt.clients) {
		wrong("bad payload", p, n);
		return;
	}
	switch (state[seq]) {
	case S_LOST:
		n_late++;
		return;
	case S_UNSENT:
	case S_REPLIED:
		wrong(state[seq] == S_UNSENT ? "never sent" : "duplicate", p, n);
		return;
	case S_INFLIGHT:
		break;
	}
	state[seq] = S_REPLIED;
	inflight--;
	char want[ADDR_STR];
	int wl = opt.mode == M_RAW ? snprintf(want, sizeof want, "%s", self)
				   : client_text((long)c, want, sizeof want);
	if (sp - (text + 5) != wl || memcmp(text + 5, want, (size_t)wl)) {
		wrong("names another source", p, n);
		return;
	}
	if (on >= 0 && (unsigned long)on != c) {
		wrong("arrived on another client's proxy socket", p, n);
		return;
	}
	n_replies++;
}

/* Drains one socket. */
static void receive(int fd, long on)
{
	static uint8_t bufs[BATCH][DGRAM_MAX];
	static struct sockaddr_storage from[BATCH];
	struct mmsghdr mm[BATCH];
	struct iovec iov[BATCH];
	for (;;) {
		for (int i = 0; i < BATCH; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = DGRAM_MAX;
			memset(&mm[i], 0, sizeof mm[i]);
			mm[i].msg_hdr.msg_name = &from[i];
			mm[i].msg_hdr.msg_namelen = sizeof from[i];
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
		}
		int r = recvmmsg(fd, mm, BATCH, MSG_DONTWAIT, NULL);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (errno == ECONNREFUSED)   /* ICMP: the server is not there (yet) */
				continue;
			die_errno("recvmmsg");
		}
		for (int i = 0; i < r; i++)
			check(bufs[i], mm[i].msg_len, &from[i], mm[i].msg_hdr.msg_namelen, on);
		if (r < BATCH)
			return;
	}
}

/* Datagrams in flight for longer than -T become lost. */
static void expire(void)
{
	uint32_t now = elapsed_ms();
	while (oldest < next_seq) {
		if (state[oldest] == S_INFLIGHT) {
			if (now - sent_ms[oldest] < (uint32_t)opt.reply_timeout_ms)
				return;
			state[oldest] = S_LOST;
			inflight--;
			n_lost++;
		}
		oldest++;
	}
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "raw", no_argument, NULL, 'r' }, { "max-lost", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "m:c:d:w:t:b:T:p:h", longs, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (!strcmp(optarg, "every"))
				opt.mode = M_EVERY;
			else if (!strcmp(optarg, "first"))
				opt.mode = M_FIRST;
			else if (!strcmp(optarg, "raw"))
				opt.mode = M_RAW;
			else {
				fprintf(stderr, "udpstorm: bad mode: \"%s\"\n", optarg);
				return 1;
			}
			break;
		case 'r': opt.mode = M_RAW; break;
		case 'c': opt.clients = parse_num(optarg, 1, CLIENTS_MAX, "client count"); break;
		case 'd': opt.datagrams = parse_num(optarg, 1, DATAGRAMS_MAX, "datagram count"); break;
		case 'w': opt.window = parse_num(optarg, 1, 100000, "window"); break;
		case 't': opt.seconds = (double)parse_num(optarg, 1, 3600, "seconds"); break;
		case 'b': opt.proxy = optarg; break;
		case 'T': opt.reply_timeout_ms = parse_num(optarg, 1, 600000, "reply timeout"); break;
		case 'L': opt.max_lost = parse_num(optarg, 0, DATAGRAMS_MAX, "max lost"); break;
		case 'p': opt.pad = parse_num(optarg, 0, 1000, "padding"); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 1;
	}
	serverlen = na_parse(argv[optind], (unsigned)parse_num(argv[optind + 1], 1, 65535, "port"),
			     &server);
	if (!serverlen || server.ss_family != AF_INET) {
		fprintf(stderr, "udpstorm: bad server address \"%s\" (IPv4)\n", argv[optind]);
		return 1;
	}
	state = calloc((size_t)opt.datagrams, 1);
	sent_ms = calloc((size_t)opt.datagrams, sizeof *sent_ms);
	introduced = calloc((size_t)opt.clients, sizeof *introduced);
	if (!state || !sent_ms || !introduced)
		die_errno("calloc");
	open_sockets();

	t0 = now_ns();
	uint64_t stop_sending = t0 + (uint64_t)(opt.seconds * 1e9);
	uint64_t last_reply = t0;
	bool aborted = false;
	struct epoll_event evs[256];
	for (;;) {
		uint64_t now = now_ns();
		bool sending = next_seq < opt.datagrams && now < stop_sending;
		if (sending && opt.mode == M_FIRST)
			send_per_client();
		else if (sending)
			send_shared();
		expire();
		if (inflight == 0 && !(next_seq < opt.datagrams && now_ns() < stop_sending))
			break;
		if (n_lost > (unsigned long)opt.max_lost) {
			/* the run has failed: stop now rather than lose the rest one timeout at a
			 * time; what is still in flight counts as lost */
			n_lost += (unsigned long)inflight;
			inflight = 0;
			aborted = true;
			break;
		}
		/* wake for a reply, the oldest datagram's loss time, or the end of sending */
		long wait = opt.reply_timeout_ms;
		if (oldest < next_seq)
			wait = (long)sent_ms[oldest] + opt.reply_timeout_ms - (long)elapsed_ms();
		if (sending && inflight < opt.window)
			wait = 0;            /* the send was cut short: retry soon */
		if (wait < 1)
			wait = 1;
		int n = epoll_wait(ep, evs, 256, (int)wait);
		if (n < 0 && errno != EINTR)
			die_errno("epoll_wait");
		unsigned long before = n_replies;
		for (int i = 0; i < n; i++) {
			long tag = (long)evs[i].data.u64;
			receive(socks[tag], opt.mode == M_FIRST ? tag : -1);
		}
		if (n_replies != before)
			last_reply = now_ns();
	}
	double secs = (double)(last_reply - t0) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	static const char *const names[] = { "every", "first", "raw" };
	printf("sent=%lu replies=%lu wrong=%lu lost=%lu secs=%.3f dps=%.0f late=%lu "
	       "hdronly=%lu mode=%s%s\n", n_sent, n_replies, n_wrong, n_lost, secs,
	       (double)n_replies / secs, n_late, n_hdr, names[opt.mode],
	       aborted ? " aborted=lost" : "");
	fflush(stdout);
	if (n_wrong > 0 || n_lost > (unsigned long)opt.max_lost)
		return 2;
	return n_sent < (unsigned long)opt.datagrams ? 3 : 0;
}
