/* forgeinherit: runs PROG with a hand-made PROXYSHIM_INHERIT, to check that a forged
 * value never sets an address. The entry has the layout the shim carries (hex of
 * struct ps_fdinfo, shim/rt/fdtable.h), naming an address of our choice. Run with -h.
 * Never preload the shim into this program itself. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdtable.h"

/* The carried entry: struct ps_fdinfo's layout, written out here so that this forger
 * does not depend on the field names; the sizes are checked against the real one. */
struct entry {
	uint8_t kind;
	uint8_t selected;
	uint16_t family;      /* the socket's own family */
	uint32_t pad;
	uint64_t cookie;      /* SO_COOKIE: the identity the shim checks */
	struct ps_addr peer;  /* the original client the entry claims */
	struct ps_addr local; /* the header's destination */
};
_Static_assert(sizeof(struct entry) == sizeof(struct ps_fdinfo), "ps_fdinfo layout changed");
_Static_assert(offsetof(struct entry, cookie) == offsetof(struct ps_fdinfo, cookie),
	       "ps_fdinfo layout changed");

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

static void usage(FILE *f)
{
	fputs("usage: forgeinherit [-d FD] [-c right|wrong|NUMBER] [-k conn|handled|RAW]\n"
	      "                    [-f 4|6] [-a ADDR] [-p PORT] [-V FORMAT] [-n] [-e] PROG [ARGS...]\n"
	      "  -d FD      the socket whose cookie 'right' takes (default 0)\n"
	      "  -c COOKIE  right: FD's SO_COOKIE; wrong: right+1000003 (never a live one\n"
	      "             of this connection); NUMBER: that value (default right)\n"
	      "  -k KIND    entry kind (default conn)\n"
	      "  -f 4|6     family recorded for the socket (default: FD's own)\n"
	      "  -a ADDR    claimed client address (IPv4 or IPv6, default 127.0.0.66)\n"
	      "  -p PORT    claimed client port (default 6666)\n"
	      "  -V FORMAT  the format version prefix (default 2:, the library's)\n"
	      "  -n         no PROXYSHIM_INHERIT at all (control)\n"
	      "  -e         print the variable on stderr first\n", f);
}

static void addr_set(struct ps_addr *a, const char *s, unsigned port)
{
	memset(a, 0, sizeof(*a));
	a->port = (uint16_t)port;
	if (inet_pton(AF_INET, s, a->ip) == 1) {
		a->family = AF_INET;
	} else if (inet_pton(AF_INET6, s, a->ip) == 1) {
		a->family = AF_INET6;
	} else {
		fprintf(stderr, "forgeinherit: bad address \"%s\"\n", s);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	const char *cookie_opt = "right", *kind_opt = "conn", *addr = "127.0.0.66";
	int fd = 0, fam = 0, none = 0, show = 0, opt;
	unsigned port = 6666;
	const char *format = "2:";
	while ((opt = getopt(argc, argv, "+d:c:k:f:a:p:V:neh")) != -1) {
		switch (opt) {
		case 'd': fd = atoi(optarg); break;
		case 'c': cookie_opt = optarg; break;
		case 'k': kind_opt = optarg; break;
		case 'f': fam = atoi(optarg) == 6 ? AF_INET6 : AF_INET; break;
		case 'a': addr = optarg; break;
		case 'p': port = (unsigned)atoi(optarg); break;
		case 'V': format = optarg; break;
		case 'n': none = 1; break;
		case 'e': show = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 1;
	}
	if (none) {
		unsetenv("PROXYSHIM_INHERIT");
		goto run;
	}

	uint64_t cookie = 0;
	socklen_t cl = sizeof(cookie);
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl) < 0) {
		perror("forgeinherit: SO_COOKIE");
		return 1;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		perror("forgeinherit: getsockname");
		return 1;
	}

	struct entry info;
	memset(&info, 0, sizeof(info));
	info.kind = !strcmp(kind_opt, "conn")	 ? PS_FD_CONN
		    : !strcmp(kind_opt, "handled") ? PS_FD_HANDLED
						   : (uint8_t)atoi(kind_opt);
	info.family = (uint16_t)(fam ? fam : ss.ss_family);
	info.cookie = !strcmp(cookie_opt, "right")   ? cookie
		      : !strcmp(cookie_opt, "wrong") ? cookie + 1000003u
						     : strtoull(cookie_opt, NULL, 0);
	addr_set(&info.peer, addr, port);
	/* The header's destination: the socket's real local address. */
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)&ss;
		info.local.family = AF_INET;
		info.local.port = ntohs(in->sin_port);
		memcpy(info.local.ip, &in->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)&ss;
		info.local.family = AF_INET6;
		info.local.port = ntohs(in6->sin6_port);
		memcpy(info.local.ip, &in6->sin6_addr, 16);
	}

	/* The library's format: a version, then the entry's bytes in hex. */
	static const char hex[] = "0123456789abcdef";
	char var[16 + 2 * sizeof(info)];
	const unsigned char *b = (const unsigned char *)&info;
	size_t vl = strnlen(format, 15);
	memcpy(var, format, vl);
	char *h = var + vl;
	for (size_t i = 0; i < sizeof(info); i++) {
		h[2 * i] = hex[b[i] >> 4];
		h[2 * i + 1] = hex[b[i] & 15];
	}
	h[2 * sizeof(info)] = 0;
	if (setenv("PROXYSHIM_INHERIT", var, 1)) {
		perror("forgeinherit: setenv");
		return 1;
	}
	if (show)
		fprintf(stderr, "forgeinherit: PROXYSHIM_INHERIT=%s\n", var);
run:
	execvp(argv[optind], argv + optind);
	fprintf(stderr, "forgeinherit: exec %s: %s\n", argv[optind], strerror(errno));
	return 127;
}
