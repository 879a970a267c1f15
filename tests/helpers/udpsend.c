/* udpsend: sends datagrams to ADDR:PORT from a chosen local source, each payload
 * argument one datagram, optionally prefixed by a PROXY header built from the options
 * (v2 UDP4/UDP6 PROXY or LOCAL, a v1 text line, or raw hex bytes; cut short with
 * --trunc), then optionally waits for replies and prints them:
 *
 *   reply from=ADDR:PORT len=N payload="ESCAPED"
 *
 * Payload arguments take the escapes \r \n \t \0 \\ \" \xNN; an empty argument is an
 * empty payload (so with a header: a header-only datagram). Run with -h for the options.
 * Exit status: 0; 1 usage; 2 socket, bind or send failure; 4 fewer than -r N replies
 * within -t. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HELPER_NAME "udpsend"
#include "udpkit.h"

#define DGRAM_MAX 65536
#define HDR_MAX (16 + 36 + 4096)
#define ADDR_STR 160
#define HDRS_MAX 64

static struct {
	const char *bind;         /* -b ADDR[:PORT] */
	const char *hdr[HDRS_MAX];   /* -H SRC:PORT,DST:PORT, one per datagram */
	int nhdr;
	bool local, v1, crc, first, verbose;
	const char *tlv_hex, *raw_hex;
	long trunc;               /* -1: whole header */
	long delay_ms;
	long replies;             /* -1: do not wait; 0: for -t; N: until N arrived */
	long timeout_ms;
	const char *call;         /* -m: the libc call that sends */
} opt = { NULL, { NULL }, 0, false, false, false, false, false, NULL, NULL, -1, 0, -1, 2000,
	  "sendto" };

static void usage(FILE *f)
{
	fputs("usage: udpsend [-b ADDR[:PORT]] [-H SRC:PORT,DST:PORT] [-L] [--v1] [-T HEX] [-K]\n"
	      "               [-X HEX] [-x N] [-f] [-d MS] [-r N] [-t MS] [-m CALL] [-v] [-h]\n"
	      "               ADDR PORT PAYLOAD...\n"
	      "Sends each PAYLOAD (escapes \\r \\n \\t \\0 \\\\ \\\" \\xNN) as one datagram to ADDR:PORT.\n"
	      "  -b A[:P]      bind to A (port P, default 0) first: the datagrams' source\n"
	      "  -H S:P,D:P    prefix a v2 PROXY header, UDP over IPv4 (21 12) or IPv6 (21 22)\n"
	      "                from the addresses' family; IPv6 as [ADDR]:PORT. Repeated: the\n"
	      "                Nth datagram gets the Nth header (the last one for the rest)\n"
	      "  -L, --local   LOCAL (20) instead of PROXY; without -H: family 00, no addresses\n"
	      "  -V, --v1      a v1 text line instead (PROXY TCP4|TCP6 S D SP DP\\r\\n, needs -H)\n"
	      "  -T, --tlv HEX append these TLV bytes to the v2 header (its length covers them)\n"
	      "  -K, --crc     append a CRC32C TLV with the right checksum\n"
	      "  -X, --raw HEX the header is exactly these bytes (replaces -H/-L/-V)\n"
	      "  -x, --trunc N send only the header's first N bytes\n"
	      "  -f, --first   only the first datagram carries the header\n"
	      "  -d MS         pause between datagrams\n"
	      "  -r N          then wait for N replies (0: print what comes within -t)\n"
	      "  -t MS         reply timeout (default 2000)\n"
	      "  -m CALL       sendto (default) | sendmsg | sendmmsg (every datagram in one\n"
	      "                call) | send | write | writev (these three after connect())\n"
	      "  -v            print 'udpsend: local=ADDR:PORT' on stderr\n"
	      "  -h            this help\n", f);
}

/* CRC-32C (Castagnoli), bit by bit: reflected polynomial 0x82F63B78. */
/* The header from the options for the datagram whose -H is spec (NULL: none) into
 * out; returns its size (0: no header). */
static size_t build_header(const char *spec, uint8_t *out)
{
	if (opt.raw_hex) {
		long n = uk_unhex(opt.raw_hex, out, HDR_MAX);
		if (n < 0)
			die("bad %s: \"%s\"", "hex header", opt.raw_hex);
		return (size_t)n;
	}
	struct sockaddr_storage src, dst;
	bool addrs = false;
	if (spec) {
		char buf[256];
		snprintf(buf, sizeof buf, "%s", spec);
		char *comma = strchr(buf, ',');
		if (!comma)
			die("bad %s: \"%s\"", "-H (SRC:PORT,DST:PORT)", spec);
		*comma = '\0';
		if (!na_parse_hostport(buf, false, &src) ||
		    !na_parse_hostport(comma + 1, false, &dst) || src.ss_family != dst.ss_family)
			die("bad %s: \"%s\"", "-H (SRC:PORT,DST:PORT, one family)", spec);
		addrs = true;
	}
	if (opt.v1) {
		if (!addrs)
			die("bad %s: \"%s\"", "--v1 without -H", "");
		char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
		unsigned sp, dp;
		if (src.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&src)->sin_addr, s, sizeof s);
			inet_ntop(AF_INET, &((struct sockaddr_in *)&dst)->sin_addr, d, sizeof d);
			sp = ntohs(((struct sockaddr_in *)&src)->sin_port);
			dp = ntohs(((struct sockaddr_in *)&dst)->sin_port);
		} else {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&src)->sin6_addr, s, sizeof s);
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&dst)->sin6_addr, d, sizeof d);
			sp = ntohs(((struct sockaddr_in6 *)&src)->sin6_port);
			dp = ntohs(((struct sockaddr_in6 *)&dst)->sin6_port);
		}
		return (size_t)snprintf((char *)out, HDR_MAX, "PROXY %s %s %s %u %u\r\n",
					src.ss_family == AF_INET ? "TCP4" : "TCP6", s, d, sp, dp);
	}
	if (!addrs && !opt.local && !opt.tlv_hex && !opt.crc)
		return 0;                   /* no header at all */
	uint8_t tlv[4096 + 7];
	long tl = 0;
	if (opt.tlv_hex && (tl = uk_unhex(opt.tlv_hex, tlv, 4096)) < 0)
		die("bad %s: \"%s\"", "TLV hex", opt.tlv_hex);
	if (opt.crc) {                  /* type 03, length 4, value zero for now */
		memcpy(tlv + tl, "\x03\x00\x04\x00\x00\x00\x00", 7);
		tl += 7;
	}
	size_t n = uk_v2_header(out, opt.local ? 0x20 : 0x21, addrs ? &src : NULL,
				addrs ? &dst : NULL, tlv, (size_t)tl);
	if (opt.crc) {
		uint32_t c = crc32c(out, n);
		out[n - 4] = (uint8_t)(c >> 24);
		out[n - 3] = (uint8_t)(c >> 16);
		out[n - 2] = (uint8_t)(c >> 8);
		out[n - 1] = (uint8_t)c;
	}
	return n;
}

static int open_socket(const struct sockaddr_storage *to)
{
	int fd = socket(to->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("udpsend: socket");
		exit(2);
	}
	if (opt.bind) {
		struct sockaddr_storage b;
		socklen_t bl = na_parse_hostport(opt.bind, true, &b);
		if (!bl || b.ss_family != to->ss_family)
			die("bad %s: \"%s\"", "-b address (same family as the destination)", opt.bind);
		int one = 1;   /* a fixed source port may be reused right after a previous run */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&b, bl) < 0) {
			fprintf(stderr, "udpsend: bind %s: %s\n", opt.bind, strerror(errno));
			exit(2);
		}
	}
	return fd;
}

/* Sends one datagram with the call -m names (connected calls after connect()). */
static ssize_t send_one(int fd, const uint8_t *p, size_t n, const struct sockaddr_storage *to,
			socklen_t tolen)
{
	struct iovec iov[2] = {{(void *)p, n / 2}, {(void *)(p + n / 2), n - n / 2}};
	struct msghdr m = {.msg_name = (void *)to, .msg_namelen = tolen, .msg_iov = iov,
			   .msg_iovlen = 2};
	if (!strcmp(opt.call, "sendmsg"))
		return sendmsg(fd, &m, 0);
	if (!strcmp(opt.call, "send"))
		return send(fd, p, n, 0);
	if (!strcmp(opt.call, "write"))
		return write(fd, p, n);
	if (!strcmp(opt.call, "writev"))
		return writev(fd, iov, 2);
	return sendto(fd, p, n, 0, (const struct sockaddr *)to, tolen);
}

static bool connected_call(void)
{
	return !strcmp(opt.call, "send") || !strcmp(opt.call, "write") ||
	       !strcmp(opt.call, "writev");
}

/* Prints replies until `want` arrived (0: until the timeout). Returns how many came. */
static long collect_replies(int fd, long want)
{
	static uint8_t buf[DGRAM_MAX];
	uint64_t deadline = now_ns() + (uint64_t)opt.timeout_ms * 1000000u;
	long got = 0;
	while (want == 0 || got < want) {
		uint64_t now = now_ns();
		if (now >= deadline)
			break;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		struct sockaddr_storage from;
		socklen_t fl = sizeof from;
		ssize_t r = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from,
				     &fl);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			/* an ICMP error (nothing listening) is reported here: note it, go on */
			fprintf(stderr, "udpsend: recvfrom: %s\n", strerror(errno));
			continue;
		}
		char a[ADDR_STR];
		na_format(&from, fl, a, sizeof a);
		printf("reply from=%s len=%zd payload=", a, r);
		put_escaped(stdout, buf, (size_t)r);
		putchar('\n');
		fflush(stdout);
		got++;
	}
	return got;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "local", no_argument, NULL, 'L' }, { "v1", no_argument, NULL, 'V' },
		{ "tlv", required_argument, NULL, 'T' }, { "crc", no_argument, NULL, 'K' },
		{ "raw", required_argument, NULL, 'X' }, { "trunc", required_argument, NULL, 'x' },
		{ "first", no_argument, NULL, 'f' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	/* "+": options come before ADDR PORT, so a payload may start with '-' */
	while ((c = getopt_long(argc, argv, "+b:H:LVT:KX:x:fd:r:t:m:vh", longs, NULL)) != -1) {
		switch (c) {
		case 'b': opt.bind = optarg; break;
		case 'H':
			if (opt.nhdr == HDRS_MAX)
				die("bad %s: \"%s\"", "-H: too many", optarg);
			opt.hdr[opt.nhdr++] = optarg;
			break;
		case 'L': opt.local = true; break;
		case 'V': opt.v1 = true; break;
		case 'T': opt.tlv_hex = optarg; break;
		case 'K': opt.crc = true; break;
		case 'X': opt.raw_hex = optarg; break;
		case 'x': opt.trunc = parse_num(optarg, 0, HDR_MAX, "--trunc"); break;
		case 'f': opt.first = true; break;
		case 'd': opt.delay_ms = parse_num(optarg, 0, 600000, "delay"); break;
		case 'r': opt.replies = parse_num(optarg, 0, 1000000, "reply count"); break;
		case 't': opt.timeout_ms = parse_num(optarg, 1, 600000, "timeout"); break;
		case 'm': opt.call = optarg; break;
		case 'v': opt.verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (argc - optind < 3) {
		usage(stderr);
		return 1;
	}
	struct sockaddr_storage to;
	socklen_t tolen = na_parse(argv[optind], (unsigned)parse_num(argv[optind + 1], 1, 65535, "port"),
				   &to);
	if (!tolen)
		die("bad %s: \"%s\"", "destination address", argv[optind]);

	static uint8_t hdr[HDR_MAX], dgram[DGRAM_MAX];
	static const char *const calls[] = {"sendto", "sendmsg", "sendmmsg", "send", "write",
					    "writev"};
	bool known = false;
	for (size_t k = 0; k < sizeof calls / sizeof calls[0]; k++)
		known |= !strcmp(opt.call, calls[k]);
	if (!known)
		die("bad %s: \"%s\"", "-m call", opt.call);
	int fd = open_socket(&to);
	if (connected_call() && connect(fd, (struct sockaddr *)&to, tolen) < 0) {
		fprintf(stderr, "udpsend: connect: %s\n", strerror(errno));
		return 2;
	}
	if (!strcmp(opt.call, "sendmmsg")) {   /* the payloads as they are, one call */
		enum { MAXV = 64 };
		static uint8_t bufs[MAXV][2048];
		struct mmsghdr v[MAXV];
		struct iovec iov[MAXV];
		unsigned n = 0;
		for (int i = optind + 2; i < argc && n < MAXV; i++, n++) {
			long pl = uk_unescape(argv[i], bufs[n], sizeof bufs[n]);
			if (pl < 0)
				die("bad %s: \"%s\"", "payload (escape or size)", argv[i]);
			iov[n] = (struct iovec){bufs[n], (size_t)pl};
			v[n] = (struct mmsghdr){.msg_hdr = {.msg_name = &to, .msg_namelen = tolen,
							    .msg_iov = &iov[n], .msg_iovlen = 1}};
		}
		int r = sendmmsg(fd, v, n, 0);
		if (r != (int)n) {
			fprintf(stderr, "udpsend: sendmmsg: %d of %u: %s\n", r, n, strerror(errno));
			return 2;
		}
		for (unsigned k = 0; k < n; k++)
			if (v[k].msg_len != iov[k].iov_len) {
				fprintf(stderr, "udpsend: sendmmsg: msg_len %u, want %zu\n",
					v[k].msg_len, iov[k].iov_len);
				return 2;
			}
		goto sent;
	}
	for (int i = optind + 2; i < argc; i++) {
		int k = i - optind - 2;   /* the datagram's index */
		size_t hl = build_header(opt.nhdr ? opt.hdr[k < opt.nhdr ? k : opt.nhdr - 1] : NULL,
					 hdr);
		if (opt.trunc >= 0 && (size_t)opt.trunc < hl)
			hl = (size_t)opt.trunc;
		size_t off = 0;
		if (hl && (!opt.first || i == optind + 2)) {
			memcpy(dgram, hdr, hl);
			off = hl;
		}
		long pl = uk_unescape(argv[i], dgram + off, sizeof dgram - off);
		if (pl < 0)
			die("bad %s: \"%s\"", "payload (escape or size)", argv[i]);
		if (i > optind + 2 && opt.delay_ms)
			sleep_ms(opt.delay_ms);
		ssize_t w = send_one(fd, dgram, off + (size_t)pl, &to, tolen);
		if (w != (ssize_t)(off + (size_t)pl)) {
			fprintf(stderr, "udpsend: %s: %zd: %s\n", opt.call, w, strerror(errno));
			return 2;
		}
		if (i == optind + 2 && opt.verbose) {   /* bound by now, even without -b */
			char a[ADDR_STR];
			na_format_name(fd, 0, a, sizeof a);
			fprintf(stderr, "udpsend: local=%s\n", a);
		}
	}
sent:
	if (opt.verbose && !strcmp(opt.call, "sendmmsg")) {
		char a[ADDR_STR];
		na_format_name(fd, 0, a, sizeof a);
		fprintf(stderr, "udpsend: local=%s\n", a);
	}
	if (opt.replies >= 0) {
		long got = collect_replies(fd, opt.replies);
		if (opt.replies > 0 && got < opt.replies) {
			fprintf(stderr, "udpsend: %ld of %ld replies within %ld ms\n", got,
				opt.replies, opt.timeout_ms);
			return 4;
		}
	}
	close(fd);
	return 0;
}
