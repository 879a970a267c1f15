/* What the test helper programs share: errors and numbers on the command line, time,
 * the escaped form of bytes, address parsing and formatting, file descriptor limits,
 * the v2 signature and CRC32C. Header-only (the Makefile builds each tests/helpers/NAME.c on its own), so
 * every function is static inline: a helper pays only for what it calls.
 *
 * A helper defines HELPER_NAME (the prefix of its error messages, "hammer") before it
 * includes this file, and HELPER_DIE_STATUS when die() and die_errno() are to exit with
 * another status than 1. */
#ifndef PS_TEST_COMMON_H
#define PS_TEST_COMMON_H

#ifndef HELPER_NAME
#error "define HELPER_NAME before including common.h"
#endif
#ifndef HELPER_DIE_STATUS
#define HELPER_DIE_STATUS 1
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

/* ---- errors and the command line ---- */

/* "NAME: MESSAGE\n" on stderr, then exit(HELPER_DIE_STATUS). */
static inline void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(HELPER_NAME ": ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(HELPER_DIE_STATUS);
}

/* "NAME: WHAT: strerror(errno)\n" on stderr (perror's form), then the same exit. */
static inline void die_errno(const char *what) __attribute__((noreturn));
static inline void die_errno(const char *what)
{
	die("%s: %s", what, strerror(errno));
}

/* A whole decimal number in [min, max]; otherwise 'NAME: bad WHAT: "S"' and exit. */
static inline long parse_num(const char *s, long min, long max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("bad %s: \"%s\"", what, s);
	return v;
}

/* ---- time (CLOCK_MONOTONIC, the shim's log clock) ---- */

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline long long now_ms(void)
{
	return (long long)(now_ns() / 1000000u);
}

/* Milliseconds from *t (a CLOCK_MONOTONIC time) to now. */
static inline long ms_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Sleeps ms milliseconds, whole even across signals. */
static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the escaped form of bytes ---- */

/* How bytes are escaped: printable ASCII but '\' as it is, any other byte as \xNN, and
 * with ESC_NL a newline as \n. ESC_QUOTED (which has ESC_NL) adds \r, \\ and \" and
 * quotes the whole: the form testserver prints and helpers.bash's esc makes. */
enum { ESC_NL = 1, ESC_QUOTED = 3 };

/* The escaped form of one byte into out (at most 4 bytes, no NUL); returns its length. */
static inline size_t escape_char(unsigned char ch, int how, char out[4])
{
	bool named = (how & ESC_QUOTED) == ESC_QUOTED;
	if (ch == '\n' && (how & ESC_NL))
		return memcpy(out, "\\n", 2), 2;
	if (named && ch == '\r')
		return memcpy(out, "\\r", 2), 2;
	if (named && (ch == '\\' || ch == '"'))
		return out[0] = '\\', out[1] = (char)ch, 2;
	if (ch >= 0x20 && ch < 0x7f && ch != '\\')
		return out[0] = (char)ch, 1;
	static const char hexdig[] = "0123456789abcdef";
	out[0] = '\\', out[1] = 'x', out[2] = hexdig[ch >> 4], out[3] = hexdig[ch & 15];
	return 4;
}

/* The escaped form of n bytes into buf (cap bytes, NUL-terminated); what does not fit
 * is left out (the closing quote always fits). */
static inline void escape_bytes(const void *p, size_t n, char *buf, size_t cap, int how)
{
	const unsigned char *s = p;
	size_t q = (how & ESC_QUOTED) == ESC_QUOTED, o = 0;
	if (q)
		buf[o++] = '"';
	for (size_t i = 0; i < n && o + 5 + q < cap; i++)
		o += escape_char(s[i], how, buf + o);
	if (q)
		buf[o++] = '"';
	buf[o] = '\0';
}

/* Writes the ESC_QUOTED form of n bytes to f, whole. */
static inline void put_escaped(FILE *f, const void *p, size_t n)
{
	const unsigned char *s = p;
	char e[4];
	fputc('"', f);
	for (size_t i = 0; i < n; i++)
		fwrite(e, 1, escape_char(s[i], ESC_QUOTED, e), f);
	fputc('"', f);
}

/* ---- addresses ---- */

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

/* Parses "1.2.3.4:80", "[::1]:80", or, when port_optional, a bare "1.2.3.4" / "::1"
 * (port 0). Returns the sockaddr length, 0 when the text is not one of these. */
static inline socklen_t na_parse_hostport(const char *s, bool port_optional,
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

/* The port of an IPv4 or IPv6 address (host order); 0 for any other family. */
static inline unsigned na_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
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

/* ---- limits and checksums ---- */

/* Raises RLIMIT_NOFILE's soft limit to need + 16 descriptors, as far as the hard one
 * allows. */
static inline void raise_nofile(long need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need + 16) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)need + 16 ? rl.rlim_max : (rlim_t)need + 16;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The 12-byte signature of a v2 PROXY header (holds a NUL: always handled with
 * memcpy/memcmp). */
static const uint8_t pp_v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				       0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* CRC-32C (Castagnoli), bit by bit: reflected polynomial 0x82F63B78 (the v2 header's
 * PP2_TYPE_CRC32C). */
static inline uint32_t crc32c(const void *data, size_t n)
{
	const unsigned char *p = data;
	uint32_t crc = 0xFFFFFFFFu;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return crc ^ 0xFFFFFFFFu;
}

#endif
