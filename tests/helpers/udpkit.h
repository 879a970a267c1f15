/* Small pieces shared by the UDP test helpers (udpsrv, udpsend, udpstorm): address
 * parsing with a port, the escaped form of bytes, a v2 PROXY header builder for
 * datagrams, time. Header-only, like netaddr.h (each helper is built on its own). */
#ifndef PS_TEST_UDPKIT_H
#define PS_TEST_UDPKIT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "netaddr.h"

/* The 12-byte v2 signature (holds a NUL: always handled with memcpy/memcmp). */
static const uint8_t uk_v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				       0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

static inline uint64_t uk_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void uk_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Parses "1.2.3.4:80", "[::1]:80", or, when port_optional, a bare "1.2.3.4" / "::1"
 * (port 0). Returns the sockaddr length, 0 when the text is not one of these. */
static inline socklen_t uk_parse_hostport(const char *s, bool port_optional,
					  struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port = NULL;
	const char *colon = strrchr(s, ':');
	size_t hl;
	if (s[0] == '[') {                      /* [v6] or [v6]:port */
		const char *close = strchr(s, ']');
		if (!close)
			return 0;
		hl = (size_t)(close - s - 1);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return 0;
		s++;
	} else if (colon && strchr(s, ':') == colon) {   /* exactly one colon: v4:port */
		hl = (size_t)(colon - s);
		port = colon + 1;
	} else {                                /* bare address (v4, or v6 without port) */
		hl = strlen(s);
	}
	if (hl == 0 || hl >= sizeof host || (!port && !port_optional))
		return 0;
	memcpy(host, s, hl);
	host[hl] = '\0';
	unsigned long p = 0;
	if (port) {
		char *end;
		errno = 0;
		p = strtoul(port, &end, 10);
		if (errno || end == port || *end || p > 65535)
			return 0;
	}
	return na_parse(host, (unsigned)p, ss);
}

/* Writes the escaped, quoted form of n bytes to f: printable ASCII as is, \r \n \\ \"
 * and \xNN otherwise (the same form testserver prints and helpers.bash's esc makes). */
static inline void uk_put_escaped(FILE *f, const uint8_t *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c == '\r')
			fputs("\\r", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\\' || c == '"')
			fprintf(f, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, f);
		else
			fprintf(f, "\\x%02x", c);
	}
	fputc('"', f);
}

static inline int uk_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes the escapes \r \n \t \0 \\ \" \xNN of s into out (cap bytes). Returns the
 * length, -1 on a bad escape or when out is too small. */
static inline long uk_unescape(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	for (; *s; s++) {
		int c = (unsigned char)*s;
		if (c == '\\') {
			s++;
			switch (*s) {
			case 'r': c = '\r'; break;
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case '0': c = 0; break;
			case '\\': c = '\\'; break;
			case '"': c = '"'; break;
			case 'x': {
				int h = uk_hexval(s[1]), l = h < 0 ? -1 : uk_hexval(s[2]);
				if (l < 0)
					return -1;
				c = h * 16 + l;
				s += 2;
				break;
			}
			default: return -1;
			}
		}
		if (n == cap)
			return -1;
		out[n++] = (uint8_t)c;
	}
	return (long)n;
}

/* Decodes hex digits (whitespace allowed between bytes). Returns the length, -1 if bad. */
static inline long uk_unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	while (*s) {
		if (*s == ' ' || *s == '\n' || *s == '\t' || *s == ':') {
			s++;
			continue;
		}
		int h = uk_hexval(s[0]), l = h < 0 ? -1 : uk_hexval(s[1]);
		if (l < 0 || n == cap)
			return -1;
		out[n++] = (uint8_t)(h * 16 + l);
		s += 2;
	}
	return (long)n;
}

/* Appends the address block of a v2 header for src -> dst (both the same family):
 * addresses, then ports, as the spec lays them out. Returns its size. */
static inline size_t uk_v2_block(uint8_t *p, const struct sockaddr_storage *src,
				 const struct sockaddr_storage *dst)
{
	if (src->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)src, *d = (const void *)dst;
		memcpy(p, &s->sin_addr, 4);
		memcpy(p + 4, &d->sin_addr, 4);
		memcpy(p + 8, &s->sin_port, 2);
		memcpy(p + 10, &d->sin_port, 2);
		return 12;
	}
	const struct sockaddr_in6 *s = (const void *)src, *d = (const void *)dst;
	memcpy(p, &s->sin6_addr, 16);
	memcpy(p + 16, &d->sin6_addr, 16);
	memcpy(p + 32, &s->sin6_port, 2);
	memcpy(p + 34, &d->sin6_port, 2);
	return 36;
}

/* A v2 header: byte 12 vercmd (0x21 PROXY, 0x20 LOCAL), family 0x12 or 0x22 from src's
 * family (0x00 with no addresses when src is NULL), then tlv (tlvlen bytes). out must
 * hold 16 + 36 + tlvlen bytes. Returns the header's size. */
static inline size_t uk_v2_header(uint8_t *out, uint8_t vercmd,
				  const struct sockaddr_storage *src,
				  const struct sockaddr_storage *dst, const uint8_t *tlv,
				  size_t tlvlen)
{
	size_t len = 0;
	memcpy(out, uk_v2_sig, 12);
	out[12] = vercmd;
	out[13] = 0x00;
	if (src) {
		out[13] = src->ss_family == AF_INET ? 0x12 : 0x22;
		len = uk_v2_block(out + 16, src, dst);
	}
	if (tlvlen)
		memcpy(out + 16 + len, tlv, tlvlen);
	len += tlvlen;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	return 16 + len;
}

#endif
