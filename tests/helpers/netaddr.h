/* Address parsing and formatting shared by the test helper programs (header-only: the
 * Makefile builds each tests/helpers/NAME.c on its own). */
#ifndef PS_TEST_NETADDR_H
#define PS_TEST_NETADDR_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Fills *ss from a numeric IPv4 or IPv6 address and a port; returns the sockaddr
 * length, 0 if ip is neither. */
static inline socklen_t na_parse(const char *ip, unsigned port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		return sizeof *s4;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return sizeof *s6;
	}
	return 0;
}

/* "1.2.3.4:80", "[::1]:80". Any other family, or a length that does not match the
 * family, is shown as "familyF/lenL" so that a wrong report stays visible. */
static inline void na_format(const struct sockaddr_storage *ss, socklen_t len, char *buf,
			     size_t n)
{
	char ip[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET && len == sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
		snprintf(buf, n, "%s:%u", ip, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
		snprintf(buf, n, "[%s]:%u", ip, ntohs(s->sin6_port));
	} else {
		snprintf(buf, n, "family%u/len%u", (unsigned)ss->ss_family, (unsigned)len);
	}
}

/* getpeername (peer true) or getsockname of fd, formatted; "ERROR(reason)" on failure. */
static inline void na_format_name(int fd, int peer, char *buf, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	memset(&ss, 0, sizeof ss);
	int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
		     : getsockname(fd, (struct sockaddr *)&ss, &len);
	if (r < 0)
		snprintf(buf, n, "ERROR(%s)", strerror(errno));
	else
		na_format(&ss, len, buf, n);
}

#endif
