/* rawsend: connects from a chosen source address and sends stdin's bytes as they are,
 * optionally in chunks with delays, then optionally prints the reply. Run with -h.
 * Exit status: 0 connected and sent (and, with -r, the reply ended by EOF or reset);
 * 1 usage; 2 could not connect; 3 sending failed; 4 no end of reply within -t. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netaddr.h"

#define PAYLOAD_MAX (1 << 20)

static struct {
	const char *src;
	size_t chunk;        /* 0: all at once */
	long delay_ms, wait_ms, timeout_ms;
	bool reply, keep_open, verbose;
} opt = { NULL, 0, 0, 0, 5000, false, false, false };

static void usage(FILE *f)
{
	fputs("usage: rawsend [-s SRCADDR] [-c CHUNK] [-d DELAY_MS] [-w WAIT_MS] [-r] [-k]\n"
	      "               [-t TIMEOUT_MS] [-v] [-h] HOST PORT\n"
	      "Sends stdin (binary, at most 1 MiB) to HOST:PORT (IPv4 or IPv6).\n"
	      "  -s SRCADDR  bind to SRCADDR (port 0) before connecting\n"
	      "  -c CHUNK    write CHUNK bytes at a time (default: all at once)\n"
	      "  -d MS       sleep MS between chunks\n"
	      "  -w MS       sleep MS after connecting, before the first byte\n"
	      "  -r          after sending, print the reply until EOF (or -t)\n"
	      "  -k          keep the write side open (default: shutdown(SHUT_WR) after sending)\n"
	      "  -t MS       reply timeout, also bounds the connect (default 5000)\n"
	      "  -v          report on stderr: 'rawsend: local=ADDR' once connected, 'first=MS'\n"
	      "              (first reply byte, ms after connect), 'end=eof|reset bytes=N'\n"
	      "  -h          this help\n", f);
}

static long num(const char *s, long min, long max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "rawsend: bad %s: \"%s\"\n", what, s);
		exit(1);
	}
	return v;
}

static struct timespec connected_at;

static long ms_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static size_t read_stdin(char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		if (n == cap) {
			fputs("rawsend: payload larger than 1 MiB\n", stderr);
			exit(1);
		}
		ssize_t r = read(0, buf + n, cap - n);
		if (r == 0)
			return n;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perror("rawsend: stdin");
			exit(1);
		}
		n += (size_t)r;
	}
}

static int connect_to(const char *host, unsigned port)
{
	struct sockaddr_storage dst, src;
	socklen_t dlen = na_parse(host, port, &dst);
	if (!dlen) {
		fprintf(stderr, "rawsend: bad host address \"%s\"\n", host);
		exit(1);
	}
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("rawsend: socket");
		exit(2);
	}
	if (opt.src) {
		socklen_t slen = na_parse(opt.src, 0, &src);
		if (!slen || src.ss_family != dst.ss_family) {
			fprintf(stderr, "rawsend: bad source address \"%s\" for %s\n", opt.src, host);
			exit(1);
		}
		if (bind(fd, (struct sockaddr *)&src, slen) < 0) {
			fprintf(stderr, "rawsend: bind %s: %s\n", opt.src, strerror(errno));
			exit(2);
		}
	}
	struct timeval tv = { opt.timeout_ms / 1000, (opt.timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&dst, dlen) < 0) {
		fprintf(stderr, "rawsend: connect %s %u: %s\n", host, port, strerror(errno));
		exit(2);
	}
	clock_gettime(CLOCK_MONOTONIC, &connected_at);
	int one = 1;   /* each chunk its own segment */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void send_payload(int fd, const char *p, size_t n)
{
	size_t chunk = opt.chunk ? opt.chunk : n;
	for (size_t off = 0; off < n;) {
		if (off && opt.delay_ms)
			sleep_ms(opt.delay_ms);
		size_t len = n - off < chunk ? n - off : chunk;
		ssize_t w = send(fd, p + off, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, "rawsend: send failed after %zu of %zu bytes: %s\n", off, n,
				strerror(errno));
			exit(3);
		}
		off += (size_t)w;
	}
}

/* Copies the reply to stdout until EOF or reset. Returns false on timeout. */
static bool copy_reply(int fd)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	size_t total = 0;
	const char *end = NULL;
	while (!end) {
		long left = opt.timeout_ms - ms_since(&start);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			fprintf(stderr, "rawsend: no end of reply within %ld ms (%zu bytes)\n",
				opt.timeout_ms, total);
			return false;
		}
		char buf[4096];
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r > 0) {
			if (total == 0 && opt.verbose)
				fprintf(stderr, "rawsend: first=%ld\n", ms_since(&connected_at));
			fwrite(buf, 1, (size_t)r, stdout);
			fflush(stdout);
			total += (size_t)r;
		} else if (r == 0) {
			end = "eof";
		} else if (errno == ECONNRESET) {
			end = "reset";
		} else if (errno != EINTR) {
			fprintf(stderr, "rawsend: recv: %s\n", strerror(errno));
			end = "error";
		}
	}
	if (opt.verbose)
		fprintf(stderr, "rawsend: end=%s bytes=%zu\n", end, total);
	return true;
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "s:c:d:w:rkt:vh")) != -1) {
		switch (c) {
		case 's': opt.src = optarg; break;
		case 'c': opt.chunk = (size_t)num(optarg, 1, PAYLOAD_MAX, "chunk size"); break;
		case 'd': opt.delay_ms = num(optarg, 0, 600000, "delay"); break;
		case 'w': opt.wait_ms = num(optarg, 0, 600000, "wait"); break;
		case 'r': opt.reply = true; break;
		case 'k': opt.keep_open = true; break;
		case 't': opt.timeout_ms = num(optarg, 1, 600000, "timeout"); break;
		case 'v': opt.verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 1;
	}
	unsigned port = (unsigned)num(argv[optind + 1], 1, 65535, "port");

	static char payload[PAYLOAD_MAX];
	size_t n = read_stdin(payload, sizeof payload);
	int fd = connect_to(argv[optind], port);
	if (opt.verbose) {
		char local[128];
		na_format_name(fd, 0, local, sizeof local);
		fprintf(stderr, "rawsend: local=%s\n", local);
	}
	if (opt.wait_ms)
		sleep_ms(opt.wait_ms);
	send_payload(fd, payload, n);
	if (!opt.keep_open)
		shutdown(fd, SHUT_WR);
	if (opt.reply && !copy_reply(fd))
		return 4;
	close(fd);
	return 0;
}
