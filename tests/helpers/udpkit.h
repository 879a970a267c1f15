/* What only the UDP test helpers (udpsrv, udpsend, udpstorm) share: a v2 PROXY header
 * builder for datagrams and the decoding of payloads given on the command line. The
 * rest (time, escaping, addresses) is common.h's. Header-only, like common.h. */
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

#include "common.h"

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
	memcpy(out, pp_v2_sig, 12);
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
