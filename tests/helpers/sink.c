/* sink: a TCP server for the bulk benchmark. Blocking accept; reads each connection
 * with read() to EOF into one buffer, replies "OK bytes=N reads=M\n", closes, and prints
 * "sink peer=ADDR bytes=N reads=M" on stdout. Run with -h. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELPER_NAME "sink"
#include "common.h"

static void usage(FILE *f)
{
	fputs("usage: sink [-l ADDR] [-p PORT] [-P PORTFILE] [-n COUNT] [-B BUFSIZE] [-h]\n"
	      "  -l ADDR   listen address (default 127.0.0.1)\n"
	      "  -p PORT   port (default 0: ephemeral)\n"
	      "  -P FILE   write the port to FILE once listening\n"
	      "  -n COUNT  exit after COUNT connections (default: never)\n"
	      "  -B SIZE   read() size in bytes (default 262144)\n", f);
}

/* The data path under test: read() to EOF. Kept out of line so that a profiler can
 * attribute its cost. */
__attribute__((noinline)) static unsigned long long drain(int fd, char *buf, size_t n,
							   unsigned long *reads)
{
	unsigned long long total = 0;
	for (;;) {
		ssize_t r = read(fd, buf, n);
		++*reads;
		if (r > 0) {
			total += (unsigned long long)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		return total;
	}
}

int main(int argc, char **argv)
{
	const char *laddr = "127.0.0.1", *portfile = NULL;
	unsigned port = 0;
	long count = 0;
	size_t bufsize = 262144;
	int c;
	while ((c = getopt(argc, argv, "l:p:P:n:B:h")) != -1) {
		switch (c) {
		case 'l': laddr = optarg; break;
		case 'p': port = (unsigned)atoi(optarg); break;
		case 'P': portfile = optarg; break;
		case 'n': count = atol(optarg); break;
		case 'B': bufsize = (size_t)atol(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc || !bufsize) {
		usage(stderr);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sockaddr_storage ss;
	socklen_t len = na_parse(laddr, port, &ss);
	if (!len) {
		fprintf(stderr, "sink: bad address \"%s\"\n", laddr);
		return 1;
	}
	int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (lfd < 0)
		die_errno("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lfd, (struct sockaddr *)&ss, len) < 0 || listen(lfd, 16) < 0)
		die_errno("bind/listen");
	len = sizeof ss;
	if (getsockname(lfd, (struct sockaddr *)&ss, &len) < 0)
		die_errno("getsockname");
	if (portfile) {
		char tmp[4096];
		snprintf(tmp, sizeof tmp, "%s.tmp", portfile);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%u\n", ntohs(((struct sockaddr_in *)&ss)->sin_port)) < 0 ||
		    fclose(f) != 0 || rename(tmp, portfile) < 0)
			die_errno(portfile);
	}
	char *buf = malloc(bufsize);
	if (!buf)
		die_errno("malloc");
	for (long served = 0; !count || served < count; served++) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die_errno("accept");
		}
		unsigned long reads = 0;
		unsigned long long total = drain(fd, buf, bufsize, &reads);
		char peer[160], reply[96];
		na_format_name(fd, 1, peer, sizeof peer);
		int n = snprintf(reply, sizeof reply, "OK bytes=%llu reads=%lu\n", total, reads);
		if (write(fd, reply, (size_t)n) < 0) {}
		close(fd);
		printf("sink peer=%s bytes=%llu reads=%lu\n", peer, total, reads);
	}
	return 0;
}
