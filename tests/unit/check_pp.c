/* Unit tests for the PROXY protocol parser, builder and CRC32C (shim/proto/pp.h), written from
 * the PROXY protocol specification. Only documentation addresses are used, except in
 * Netty's LOCAL vector, whose address bytes are never read as addresses. */
#include <stdint.h>
#include <stdio.h>

#include "pp.h"
#include "unit.h"
#define LIT(s) (s), (sizeof(s) - 1)

/* Bytes the application sends right after the header. They start with NULs so that a
 * parser reading a truncated TLV past the header's end would find it "complete". */
#define APP "\0\0\0\0\0\0\0\0GET / HTTP/1.0\r\n\r\n"
#define APP_LEN (sizeof(APP) - 1)

#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* Section 7, byte for byte. */
#define EX_V1_TCP4 "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
#define EX_V1_TCP6 "PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n"
#define EX_V1_UNKNOWN "PROXY UNKNOWN\r\n"
#define EX_V2_TCP4 SIG "\x21\x11\x00\x0c" \
	"\xc0\x00\x02\x01\xc6\x33\x64\x01\xdc\x04\x01\xbb"
#define EX_V2_TCP6_NOOP SIG "\x21\x21\x00\x29" \
	"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" \
	"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02" \
	"\xc7\x38\x01\xbb\x04\x00\x02\x00\x00"
#define EX_V2_LOCAL SIG "\x20\x00\x00\x00"
#define EX_V2_TCP4_CRC SIG "\x21\x11\x00\x13" \
	"\xc0\x00\x02\x01\xc6\x33\x64\x01\xdc\x04\x01\xbb\x03\x00\x04\x73\x7e\xe9\x19"
/* Netty's LOCAL test vector: family 00 with len 12 and an IPv4-like block, which does
 * not walk as TLVs (its first "TLV" claims 0xa800 bytes). */
#define NETTY_LOCAL SIG "\x20\x00\x00\x0c" \
	"\xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb"

/* Longest hex-only TCP6 line (104 bytes) and the longest UNKNOWN line (107 bytes). */
#define V6_MAX_A "2001:0db8:ffff:ffff:ffff:ffff:ffff:ffff"
#define V6_MAX_B "2001:0db8:ffff:ffff:ffff:ffff:ffff:fffe"
#define V1_TCP6_MAX "PROXY TCP6 " V6_MAX_A " " V6_MAX_B " 65535 65535\r\n"
#define V1_UNKNOWN_MAX "PROXY UNKNOWN " V6_MAX_A " " V6_MAX_B " 65535 65535\r\n"

/* SSL TLV value: client flags, verify, then VERSION, CN, CIPHER and GROUP sub-TLVs. */
#define SSL_VALUE "\x07" "\0\0\0\0" "\x21\0\x07" "TLSv1.3" "\x22\0\x0b" "example.com" \
	"\x23\0\x16" "TLS_AES_128_GCM_SHA256" "\x26\0\x09" "secp256r1"
#define SSL_TLV "\x20\0\x42" SSL_VALUE
_Static_assert(sizeof(SSL_VALUE) - 1 == 0x42, "SSL_TLV length field");

/* Reference CRC-32C (bitwise), so the checks do not rely on the code under test. */
static uint32_t ref_crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & -(c & 1u));
	}
	return ~c;
}

static const char *st_name(enum pp_status st)
{
	return st == PP_NEED_MORE ? "NEED_MORE" : st == PP_DONE ? "DONE" : "INVALID";
}

static bool is_v4mapped(const uint8_t ip[16])
{
	static const uint8_t pfx[12] = { [10] = 0xff, [11] = 0xff };

	return memcmp(ip, pfx, 12) == 0;
}

/* Same endpoint? A v4-mapped expectation may come back as either family. */
static bool addr_eq(const struct ps_addr *got, const struct ps_addr *want)
{
	if (got->port != want->port)
		return false;
	if (want->family == AF_INET6 && is_v4mapped(want->ip) && got->family == AF_INET)
		return memcmp(got->ip, want->ip + 12, 4) == 0;
	if (got->family != want->family)
		return false;
	return memcmp(got->ip, want->ip, want->family == AF_INET ? 4 : 16) == 0;
}

static void assert_addr(const char *name, const char *which, const struct ps_addr *got,
			const char *ip, uint16_t port)
{
	struct ps_addr want = mkaddr(ip, port);
	char text[INET6_ADDRSTRLEN] = "?";

	if (got->family == AF_INET || got->family == AF_INET6)
		inet_ntop(got->family, got->ip, text, sizeof text);
	ck_assert_msg(addr_eq(got, &want), "%s: %s is family %u %s port %u, want %s port %u",
		      name, which, got->family, text, got->port, ip, port);
}

/* A heap copy of exactly n bytes, so ASan catches any read past the end. */
static uint8_t *dup_exact(const void *p, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	ck_assert(b != NULL);
	memcpy(b, p, n);
	return b;
}

static enum pp_status parse(const uint8_t *p, size_t n, struct pp_header *h)
{
	memset(h, 0, sizeof *h);
	return pp_parse(p, n, h);
}

struct expect {
	uint8_t version, command, fam;
	bool has_addrs, has_crc;
	const char *src, *dst;
	uint16_t sport, dport;
	int tlv_off;       /* -1: not checked (v1); NO_TLVS: none read (LOCAL, skipped) */
	size_t tlv_len;
};

#define NO_TLVS (-2)

#define E_V1_4(s, d, sp, dp) { 1, PP_CMD_PROXY, 0x11, true, false, s, d, sp, dp, -1, 0 }
#define E_V1_6(s, d, sp, dp) { 1, PP_CMD_PROXY, 0x21, true, false, s, d, sp, dp, -1, 0 }
#define E_V1_UNKNOWN { 1, PP_CMD_LOCAL, 0x00, false, false, NULL, NULL, 0, 0, -1, 0 }

static void check_fields(const char *name, const struct pp_header *h, const uint8_t *buf,
			 const struct expect *e)
{
	ck_assert_msg(h->version == e->version, "%s: version %u", name, h->version);
	ck_assert_msg(h->command == e->command, "%s: command %u", name, h->command);
	ck_assert_msg(h->fam == e->fam, "%s: fam %02x, want %02x", name, h->fam, e->fam);
	ck_assert_msg(h->has_addrs == e->has_addrs, "%s: has_addrs %d", name, h->has_addrs);
	ck_assert_msg(h->has_crc == e->has_crc, "%s: has_crc %d", name, h->has_crc);
	if (e->has_addrs) {
		assert_addr(name, "src", &h->src, e->src, e->sport);
		assert_addr(name, "dst", &h->dst, e->dst, e->dport);
	}
	if (e->tlv_off == NO_TLVS)
		ck_assert_msg(h->tlv == NULL && h->tlv_len == 0, "%s: TLVs read from bytes that "
			      "should be skipped unparsed", name);
	if (e->tlv_off < 0)
		return;
	ck_assert_msg(h->tlv_len == e->tlv_len, "%s: tlv_len %zu, want %zu", name, h->tlv_len,
		      e->tlv_len);
	/* With no TLVs, NULL is as good as a pointer to the header's end. */
	ck_assert_msg(h->tlv == buf + e->tlv_off || (e->tlv_len == 0 && h->tlv == NULL),
		      "%s: tlv at offset %ld, want %d", name,
		      h->tlv ? (long)((uintptr_t)h->tlv - (uintptr_t)buf) : -1L, e->tlv_off);
}

/* Every proper prefix is a valid prefix: NEED_MORE, asking for more than it has and
 * no more than the whole header; a v2 header's length is known after 16 bytes. */
static void check_prefix(const char *name, const uint8_t *hdr, size_t n, size_t k)
{
	uint8_t *b = dup_exact(hdr, k);
	struct pp_header h;
	enum pp_status st = parse(b, k, &h);

	free(b);
	ck_assert_msg(st == PP_NEED_MORE, "%s: prefix %zu of %zu gives %s (%s)", name, k, n,
		      st_name(st), st == PP_INVALID && h.reason ? h.reason : "");
	ck_assert_msg(h.need > k && h.need <= n, "%s: prefix %zu of %zu: need %zu", name, k, n,
		      h.need);
	if (hdr[0] == '\r' && k >= PP_V2_FIXED)
		ck_assert_msg(h.need == n, "%s: prefix %zu: need %zu, want %zu", name, k, h.need,
			      n);
}

static void check_prefixes(const char *name, const uint8_t *hdr, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		/* Huge headers: the fixed part, the start of the block and the tail suffice. */
		if (n > 4096 && k > 64 && k < n - 64)
			continue;
		check_prefix(name, hdr, n, k);
	}
}

/* hdr alone (with_app 0) or followed by application bytes, in a heap block of exactly
 * that size; returns the status and sets *total. The caller frees *out. */
static enum pp_status parse_whole(const void *hdr, size_t n, int with_app,
				  struct pp_header *h, uint8_t **out, size_t *total)
{
	*total = n + (with_app ? APP_LEN : 0);
	*out = malloc(*total);
	ck_assert(*out != NULL);
	memcpy(*out, hdr, n);
	memcpy(*out + n, APP, *total - n);
	return parse(*out, *total, h);
}

/* A complete valid header, alone and followed by application bytes (left unconsumed),
 * and all its prefixes. */
static void check_valid(const char *name, const void *hdr, size_t n, const struct expect *e)
{
	for (int with_app = 0; with_app < 2; with_app++) {
		const char *how = with_app ? " + data" : "";
		struct pp_header h;
		uint8_t *b;
		size_t total;
		enum pp_status st = parse_whole(hdr, n, with_app, &h, &b, &total);

		ck_assert_msg(st == PP_DONE, "%s%s: %s (%s)", name, how, st_name(st),
			      st == PP_INVALID && h.reason ? h.reason : "");
		ck_assert_msg(h.len == n, "%s%s: len %zu, want %zu", name, how, h.len, n);
		check_fields(name, &h, b, e);
		free(b);
	}
	check_prefixes(name, hdr, n);
}

/* A complete invalid header, alone and followed by application bytes. */
static void check_invalid(const char *name, const void *hdr, size_t n)
{
	for (int with_app = 0; with_app < 2; with_app++) {
		struct pp_header h;
		uint8_t *b;
		size_t total;
		enum pp_status st = parse_whole(hdr, n, with_app, &h, &b, &total);

		free(b);
		ck_assert_msg(st == PP_INVALID, "%s%s: %s (len %zu, need %zu)", name,
			      with_app ? " + data" : "", st_name(st), h.len, h.need);
		ck_assert_msg(h.reason != NULL && h.reason[0] != '\0', "%s: no reason", name);
	}
}

/* ---- literal headers ---------------------------------------------------------- */

struct valid_case {
	const char *name;
	const char *bytes;
	size_t len;
	struct expect e;
};

static const struct valid_case valid_lit[] = {
	{ "ex-v1-tcp4", LIT(EX_V1_TCP4), E_V1_4("192.0.2.1", "198.51.100.1", 56324, 443) },
	{ "ex-v1-tcp6", LIT(EX_V1_TCP6), E_V1_6("2001:db8::1", "2001:db8::2", 51000, 443) },
	{ "ex-v1-unknown", LIT(EX_V1_UNKNOWN), E_V1_UNKNOWN },
	{ "v1 ports 0 and 65535, octet 0",
	  LIT("PROXY TCP4 192.0.2.0 198.51.100.254 0 65535\r\n"),
	  E_V1_4("192.0.2.0", "198.51.100.254", 0, 65535) },
	{ "v1 longest hex-only TCP6 (104)", LIT(V1_TCP6_MAX),
	  E_V1_6(V6_MAX_A, V6_MAX_B, 65535, 65535) },
	{ "v1 TCP6 upper case, uncompressed",
	  LIT("PROXY TCP6 2001:DB8::A 2001:db8:0:0:0:0:0:b 1 2\r\n"),
	  E_V1_6("2001:db8::a", "2001:db8::b", 1, 2) },
	{ "v1 TCP6 dotted tail", LIT("PROXY TCP6 ::ffff:192.0.2.1 2001:db8:: 80 443\r\n"),
	  E_V1_6("::ffff:192.0.2.1", "2001:db8::", 80, 443) },
	{ "v1 UNKNOWN with the usual fields",
	  LIT("PROXY UNKNOWN 192.0.2.1 198.51.100.1 56324 443\r\n"), E_V1_UNKNOWN },
	{ "v1 UNKNOWN longest line (107)", LIT(V1_UNKNOWN_MAX), E_V1_UNKNOWN },
	{ "v1 UNKNOWN text never validated",
	  LIT("PROXY UNKNOWN 2001:db8::1::2 x 99999 \x80\xff" "\0" "!\r\n"), E_V1_UNKNOWN },
	{ "ex-v2-tcp4", LIT(EX_V2_TCP4),
	  { 2, PP_CMD_PROXY, 0x11, true, false, "192.0.2.1", "198.51.100.1", 56324, 443, 28,
	    0 } },
	{ "ex-v2-tcp6-noop", LIT(EX_V2_TCP6_NOOP),
	  { 2, PP_CMD_PROXY, 0x21, true, false, "2001:db8::1", "2001:db8::2", 51000, 443, 52,
	    5 } },
	{ "ex-v2-local", LIT(EX_V2_LOCAL),
	  { 2, PP_CMD_LOCAL, 0x00, false, false, NULL, NULL, 0, 0, 16, 0 } },
	{ "ex-v2-tcp4-crc", LIT(EX_V2_TCP4_CRC),
	  { 2, PP_CMD_PROXY, 0x11, true, true, "192.0.2.1", "198.51.100.1", 56324, 443, 28,
	    7 } },
	/* The spec: a receiver must accept LOCAL whatever the block holds. */
	{ "Netty LOCAL vector (family 00, 12-byte block)", LIT(NETTY_LOCAL),
	  { 2, PP_CMD_LOCAL, 0x00, false, false, NULL, NULL, 0, 0, NO_TLVS, 0 } },
};

START_TEST(test_valid_literal)
{
	const struct valid_case *c = &valid_lit[_i];

	check_valid(c->name, c->bytes, c->len, &c->e);
}
END_TEST

struct bytes_case {
	const char *name;
	const char *bytes;
	size_t len;
};

#define L4_TAIL " 198.51.100.1 56324 443\r\n"

static const struct bytes_case v1_invalid[] = {
	{ "lowercase PROXY", LIT("proxy TCP4 192.0.2.1" L4_TAIL) },
	{ "mixed-case PROXY", LIT("Proxy TCP4 192.0.2.1" L4_TAIL) },
	{ "lowercase tcp4", LIT("PROXY tcp4 192.0.2.1" L4_TAIL) },
	{ "lowercase tcp6", LIT("PROXY tcp6 2001:db8::1 2001:db8::2 51000 443\r\n") },
	{ "lowercase unknown", LIT("PROXY unknown\r\n") },
	{ "UNKNOWN without SP before text", LIT("PROXY UNKNOWNX\r\n") },
	{ "no family", LIT("PROXY\r\n") },
	{ "empty family", LIT("PROXY \r\n") },
	{ "family TCP5", LIT("PROXY TCP5 192.0.2.1" L4_TAIL) },
	{ "family TCP", LIT("PROXY TCP 192.0.2.1" L4_TAIL) },
	{ "family UDP4", LIT("PROXY UDP4 192.0.2.1" L4_TAIL) },
	{ "double space after PROXY", LIT("PROXY  TCP4 192.0.2.1" L4_TAIL) },
	{ "double space after TCP4", LIT("PROXY TCP4  192.0.2.1" L4_TAIL) },
	{ "double space after src", LIT("PROXY TCP4 192.0.2.1 " L4_TAIL) },
	{ "double space after dst", LIT("PROXY TCP4 192.0.2.1 198.51.100.1  56324 443\r\n") },
	{ "double space after sport", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324  443\r\n") },
	{ "double space before UNKNOWN", LIT("PROXY  UNKNOWN\r\n") },
	{ "tab after PROXY", LIT("PROXY\tTCP4 192.0.2.1" L4_TAIL) },
	{ "tab after TCP4", LIT("PROXY TCP4\t192.0.2.1" L4_TAIL) },
	{ "tab after src", LIT("PROXY TCP4 192.0.2.1\t198.51.100.1 56324 443\r\n") },
	{ "tab before dport", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324\t443\r\n") },
	{ "tab before UNKNOWN", LIT("PROXY\tUNKNOWN\r\n") },
	{ "leading space", LIT(" PROXY TCP4 192.0.2.1" L4_TAIL) },
	{ "trailing space TCP4", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443 \r\n") },
	{ "trailing space TCP6", LIT("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443 \r\n") },
	{ "trailing word TCP6", LIT("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443 x\r\n") },
	{ "extra field", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443 80\r\n") },
	{ "missing dport", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n") },
	{ "only family", LIT("PROXY TCP4\r\n") },
	{ "family and space", LIT("PROXY TCP4 \r\n") },
	{ "only src", LIT("PROXY TCP4 192.0.2.1\r\n") },
	{ "leading zero last octet", LIT("PROXY TCP4 192.0.2.01" L4_TAIL) },
	{ "leading zero octet 00", LIT("PROXY TCP4 192.0.2.00" L4_TAIL) },
	{ "leading zero inner octet", LIT("PROXY TCP4 192.0.02.1" L4_TAIL) },
	{ "leading zero 000", LIT("PROXY TCP4 192.000.2.1" L4_TAIL) },
	{ "leading zero first octet", LIT("PROXY TCP4 0192.0.2.1" L4_TAIL) },
	{ "leading zero sport", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 056324 443\r\n") },
	{ "leading zero dport", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 0443\r\n") },
	{ "port 00", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 00 443\r\n") },
	{ "sport 65536", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 65536 443\r\n") },
	{ "dport 65536", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 65536\r\n") },
	{ "port 99999", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 99999 443\r\n") },
	{ "port 6 digits", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 100000 443\r\n") },
	{ "port 2^32+443", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 4294967739\r\n") },
	{ "port with +", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 +56324 443\r\n") },
	{ "port -1", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 -1 443\r\n") },
	{ "port with letter", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 44a\r\n") },
	{ "port in hex", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 0x1bb\r\n") },
	{ "octet 256", LIT("PROXY TCP4 192.0.2.256" L4_TAIL) },
	{ "octet 1000", LIT("PROXY TCP4 192.0.2.1 198.51.100.1000 56324 443\r\n") },
	{ "3 octets", LIT("PROXY TCP4 192.0.2" L4_TAIL) },
	{ "2 octets", LIT("PROXY TCP4 192.2" L4_TAIL) },
	{ "5 octets", LIT("PROXY TCP4 192.0.2.1.7" L4_TAIL) },
	{ "empty octet", LIT("PROXY TCP4 192..2.1" L4_TAIL) },
	{ "trailing dot", LIT("PROXY TCP4 192.0.2." L4_TAIL) },
	{ "leading dot", LIT("PROXY TCP4 .192.0.2" L4_TAIL) },
	{ "hex octet", LIT("PROXY TCP4 0xc0.0.2.1" L4_TAIL) },
	{ "letter after address", LIT("PROXY TCP4 192.0.2.1a" L4_TAIL) },
	{ "IPv6 in TCP4", LIT("PROXY TCP4 2001:db8::1 2001:db8::2 51000 443\r\n") },
	{ "IPv6 dst in TCP4", LIT("PROXY TCP4 192.0.2.1 2001:db8::2 56324 443\r\n") },
	{ "v4-mapped in TCP4", LIT("PROXY TCP4 ::ffff:192.0.2.1" L4_TAIL) },
	{ "IPv4 in TCP6", LIT("PROXY TCP6 192.0.2.1 198.51.100.1 56324 443\r\n") },
	{ "IPv4 dst in TCP6", LIT("PROXY TCP6 2001:db8::1 198.51.100.1 51000 443\r\n") },
	{ "two ::", LIT("PROXY TCP6 2001:db8::1::2 2001:db8::2 51000 443\r\n") },
	{ ":::", LIT("PROXY TCP6 2001:db8:::1 2001:db8::2 51000 443\r\n") },
	{ "zone id name", LIT("PROXY TCP6 2001:db8::1%eth0 2001:db8::2 51000 443\r\n") },
	{ "zone id number", LIT("PROXY TCP6 2001:db8::1 2001:db8::2%1 51000 443\r\n") },
	{ "brackets", LIT("PROXY TCP6 [2001:db8::1] 2001:db8::2 51000 443\r\n") },
	{ "prefix length", LIT("PROXY TCP6 2001:db8::1/64 2001:db8::2 51000 443\r\n") },
	{ "9 groups", LIT("PROXY TCP6 2001:db8:0:0:0:0:0:0:1 2001:db8::2 51000 443\r\n") },
	{ "7 groups", LIT("PROXY TCP6 2001:db8:0:0:0:0:1 2001:db8::2 51000 443\r\n") },
	{ "5-digit group", LIT("PROXY TCP6 2001:db8::12345 2001:db8::2 51000 443\r\n") },
	{ "non-hex digit", LIT("PROXY TCP6 2001:db8::g 2001:db8::2 51000 443\r\n") },
	{ "dotted tail leading zero",
	  LIT("PROXY TCP6 ::ffff:192.0.2.01 2001:db8::2 51000 443\r\n") },
	{ "dotted tail 256", LIT("PROXY TCP6 ::ffff:192.0.2.256 2001:db8::2 51000 443\r\n") },
	{ "TCP6 port 65536", LIT("PROXY TCP6 2001:db8::1 2001:db8::2 65536 443\r\n") },
	{ "TCP6 over 107 bytes with dotted tails",
	  LIT("PROXY TCP6 2001:0db8:0000:0000:0000:ffff:198.51.100.255 "
	      "2001:0db8:0000:0000:0000:ffff:198.51.100.254 65535 65535\r\n") },
	{ "lone LF TCP4", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\n") },
	{ "lone LF TCP6", LIT("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\n") },
	{ "lone LF UNKNOWN", LIT("PROXY UNKNOWN\n") },
	{ "LF CR", LIT("PROXY UNKNOWN\n\r") },
	{ "UNKNOWN LF then data with CRLF", LIT("PROXY UNKNOWN\nGET / HTTP/1.0\r\n\r\n") },
	{ "UNKNOWN CR then data with CRLF", LIT("PROXY UNKNOWN\rGET / HTTP/1.0\r\n\r\n") },
	{ "CR CR LF", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\r\n") },
	{ "UNKNOWN CR CR LF", LIT("PROXY UNKNOWN\r\r\n") },
	{ "CR inside UNKNOWN text", LIT("PROXY UNKNOWN a\rb\r\n") },
	{ "CR as separator", LIT("PROXY TCP4 192.0.2.1\r198.51.100.1 56324 443\r\n") },
	{ "NUL as separator", LIT("PROXY TCP4 192.0.2.1" "\0" "198.51.100.1 56324 443\r\n") },
	{ "NUL after address", LIT("PROXY TCP4 192.0.2.1" "\0" L4_TAIL) },
	{ "NUL before CRLF", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443" "\0" "\r\n") },
	{ "0xA0 as separator", LIT("PROXY TCP4 192.0.2.1" "\xa0" "198.51.100.1 56324 443\r\n") },
	{ "0xB9 in port", LIT("PROXY TCP4 192.0.2.1 198.51.100.1 5632\xb9 443\r\n") },
	{ "0xFF in TCP6 address", LIT("PROXY TCP6 2001:db8::1\xff 2001:db8::2 51000 443\r\n") },
	{ "UTF-8 NBSP after family", LIT("PROXY TCP4\xc2\xa0" "192.0.2.1" L4_TAIL) },
	{ "not a header: HTTP", LIT("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n") },
	{ "not a header: one byte", LIT("G") },
	{ "not a header: TLS", LIT("\x16\x03\x01\x02\x00") },
	{ "not a header: SSH", LIT("SSH-2.0-OpenSSH_9.2\r\n") },
	{ "not a header: NUL", LIT("\0") },
};

START_TEST(test_v1_invalid)
{
	check_invalid(v1_invalid[_i].name, v1_invalid[_i].bytes, v1_invalid[_i].len);
}
END_TEST

/* "PROXY UNKNOWN " padded with 'x' to total bytes; a CRLF ends it when crlf is set. */
static size_t unknown_line(char *b, size_t total, bool crlf)
{
	memset(b, 'x', total);
	memcpy(b, "PROXY UNKNOWN ", 14);
	if (crlf)
		memcpy(b + total - 2, "\r\n", 2);
	return total;
}

/* No line end within 107 bytes, or a line one byte too long: invalid. */
START_TEST(test_v1_too_long)
{
	static const struct { size_t total; bool crlf; } cases[] = {
		{ 107, false }, { 108, false }, { 200, false }, { 108, true }, { 200, true },
	};
	char b[256], name[64];

	for (size_t i = 0; i < N(cases); i++) {
		size_t n = unknown_line(b, cases[i].total, cases[i].crlf);

		snprintf(name, sizeof name, "%zu bytes, crlf %d", n, cases[i].crlf);
		check_invalid(name, b, n);
	}
}
END_TEST

/* Right below the limit: a 105-byte start of UNKNOWN text still waits. */
START_TEST(test_v1_unknown_waits)
{
	char b[PP_V1_MAX];
	struct pp_header h;
	size_t n = unknown_line(b, 105, false);

	ck_assert_int_eq(parse((const uint8_t *)b, n, &h), PP_NEED_MORE);
	ck_assert_uint_gt(h.need, n);
	ck_assert_uint_le(h.need, PP_V1_MAX);
}
END_TEST

/* ---- generated v2 headers ----------------------------------------------------- */

struct tlv_spec {
	uint8_t type;
	uint16_t decl;      /* length field */
	uint16_t have;      /* value bytes written; fewer than decl overrun the header */
	const char *value;  /* NULL: filled with 'v' */
};

struct v2_case {
	const char *name;
	uint8_t b12, b13;
	uint16_t block;     /* bytes written after the fixed 16 before the TLVs */
	unsigned ntlv;
	struct tlv_spec tlv[8];
	uint8_t tail;       /* 1..2 bytes of a TLV header cut short */
	bool bad_crc;       /* store the right CRC32C with one bit flipped */
	bool unparsed;      /* LOCAL: its len bytes are skipped without a TLV walk */
	enum pp_status want;
};

static const uint8_t V4_BLOCK[12] = { 192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb };
static const uint8_t V6_BLOCK[36] = {
	0x20, 0x01, 0x0d, 0xb8, [15] = 1, 0x20, 0x01, 0x0d, 0xb8, [31] = 2,
	0xc7, 0x38, 0x01, 0xbb,
};

static size_t block_size(uint8_t fam)
{
	switch (fam) {
	case 0x11: case 0x12: return 12;
	case 0x21: case 0x22: return 36;
	case 0x31: case 0x32: return 216;
	default: return 0;
	}
}

/* A real address block when the size fits the family; otherwise 0xFF bytes, which
 * read as a TLV claiming 0xFFFF bytes if anyone walked them. */
static size_t put_block(uint8_t *b, uint8_t fam, size_t n)
{
	if (n == sizeof V4_BLOCK && fam >> 4 == 1)
		memcpy(b, V4_BLOCK, n);
	else if (n == sizeof V6_BLOCK && fam >> 4 == 2)
		memcpy(b, V6_BLOCK, n);
	else
		memset(b, 0xFF, n);
	return n;
}

static size_t put_tlv(uint8_t *b, const struct tlv_spec *t, size_t *crc_at)
{
	b[0] = t->type;
	b[1] = t->decl >> 8;
	b[2] = t->decl & 0xFF;
	if (t->value)
		memcpy(b + 3, t->value, t->have);
	else
		memset(b + 3, t->type == PP2_TYPE_CRC32C ? 0 : 'v', t->have);
	if (t->type == PP2_TYPE_CRC32C && t->have == 4)
		*crc_at = 3;
	return 3 + t->have;
}

static uint8_t gbuf[PP_V2_MAX + 64];

static size_t gen_v2(const struct v2_case *c)
{
	size_t n = PP_V2_FIXED, crc_at = 0, len;

	memcpy(gbuf, SIG, 12);
	gbuf[12] = c->b12;
	gbuf[13] = c->b13;
	n += put_block(gbuf + n, c->b13, c->block);
	for (unsigned i = 0; i < c->ntlv; i++) {
		size_t at = 0;

		n += put_tlv(gbuf + n, &c->tlv[i], &at);
		if (at)
			crc_at = n - 4;
	}
	memcpy(gbuf + n, "\x04\x00", c->tail);
	n += c->tail;
	len = n - PP_V2_FIXED;
	ck_assert_uint_le(len, 65535);
	gbuf[14] = len >> 8;
	gbuf[15] = len & 0xFF;
	if (crc_at) {
		uint32_t crc = ref_crc32c(gbuf, n) ^ c->bad_crc;

		for (int k = 0; k < 4; k++)
			gbuf[crc_at + k] = crc >> (24 - 8 * k);
	}
	return n;
}

static struct expect v2_expect(const struct v2_case *c, size_t n)
{
	struct expect e = { .version = 2, .command = c->b12 & 0x0F, .fam = c->b13,
			    .tlv_off = -1 };

	e.has_addrs = c->b12 == 0x21 && (c->b13 == 0x11 || c->b13 == 0x21);
	if (e.has_addrs && c->b13 == 0x11)
		e.src = "192.0.2.1", e.dst = "198.51.100.1", e.sport = 56324, e.dport = 443;
	else if (e.has_addrs)
		e.src = "2001:db8::1", e.dst = "2001:db8::2", e.sport = 51000, e.dport = 443;
	for (unsigned i = 0; i < c->ntlv; i++)  /* only a 4-byte value is a checksum */
		e.has_crc |= c->tlv[i].type == PP2_TYPE_CRC32C && c->tlv[i].have == 4;
	e.has_crc &= !c->unparsed;
	if (c->unparsed) {
		e.tlv_off = NO_TLVS;
	} else {
		e.tlv_off = PP_V2_FIXED + (int)block_size(c->b13);
		e.tlv_len = n - e.tlv_off;
	}
	return e;
}

#define T(type, len) { type, len, len, NULL }
#define TV(type, str) { type, sizeof(str) - 1, sizeof(str) - 1, str }
#define CRC T(PP2_TYPE_CRC32C, 4)

static const struct v2_case v2_cases[] = {
	/* valid */
	{ "PROXY UNSPEC", 0x21, 0x00, 0, 0, {{0}}, 0, false, false, PP_DONE },
	{ "PROXY UDP4 keeps real addrs", 0x21, 0x12, 12, 0, {{0}}, 0, false, false, PP_DONE },
	{ "PROXY UDP6 keeps real addrs", 0x21, 0x22, 36, 0, {{0}}, 0, false, false, PP_DONE },
	{ "PROXY UNIX stream", 0x21, 0x31, 216, 0, {{0}}, 0, false, false, PP_DONE },
	{ "PROXY UNIX dgram + NOOP", 0x21, 0x32, 216, 1, { T(PP2_TYPE_NOOP, 5) }, 0, false,
	  false, PP_DONE },
	{ "TCP4 + empty NOOP", 0x21, 0x11, 12, 1, { T(PP2_TYPE_NOOP, 0) }, 0, false, false,
	  PP_DONE },
	{ "TCP4 + SSL with sub-TLVs", 0x21, 0x11, 12, 1, { TV(PP2_TYPE_SSL, SSL_VALUE) }, 0,
	  false, false, PP_DONE },
	{ "TCP6 + SSL + CRC32C", 0x21, 0x21, 36, 2, { TV(PP2_TYPE_SSL, SSL_VALUE), CRC }, 0,
	  false, false, PP_DONE },
	{ "TCP4 + CRC32C first, then NOOP", 0x21, 0x11, 12, 2, { CRC, T(PP2_TYPE_NOOP, 3) }, 0,
	  false, false, PP_DONE },
	{ "TCP4 + UNIQUE_ID 128", 0x21, 0x11, 12, 1, { T(PP2_TYPE_UNIQUE_ID, 128) }, 0, false,
	  false, PP_DONE },
	{ "TCP4 + UNIQUE_ID 0", 0x21, 0x11, 12, 1, { T(PP2_TYPE_UNIQUE_ID, 0) }, 0, false,
	  false, PP_DONE },
	{ "TCP4 + every other type", 0x21, 0x11, 12, 8,
	  { TV(PP2_TYPE_ALPN, "h2"), TV(PP2_TYPE_AUTHORITY, "example.com"),
	    TV(PP2_TYPE_NETNS, "ns1"), T(0xE0, 1), T(0xF0, 2), T(0xFF, 0), T(0x06, 4),
	    T(0x21, 7) }, 0, false, false, PP_DONE },
	{ "largest header (65551)", 0x21, 0x11, 12, 1, { T(PP2_TYPE_NOOP, 65520) }, 0, false,
	  false, PP_DONE },
	/* LOCAL: accepted whatever family byte and bytes it carries (the spec: the receiver
	 * must accept it). Only a CRC32C TLV that is found and wrong rejects it, and it is
	 * found only when the bytes after a listed family's block walk as a TLV list ending
	 * exactly at the header's end (every other case is skipped unparsed, 'unparsed'). */
	{ "LOCAL TCP4 block + CRC32C", 0x20, 0x11, 12, 1, { CRC }, 0, false, false, PP_DONE },
	{ "LOCAL UNSPEC + CRC32C", 0x20, 0x00, 0, 1, { CRC }, 0, false, false, PP_DONE },
	{ "LOCAL TCP6 block", 0x20, 0x21, 36, 0, {{0}}, 0, false, false, PP_DONE },
	{ "LOCAL UNSPEC + NOOP", 0x20, 0x00, 0, 1, { T(PP2_TYPE_NOOP, 2) }, 0, false, false,
	  PP_DONE },
	{ "LOCAL UNIX block + NOOP", 0x20, 0x31, 216, 1, { T(PP2_TYPE_NOOP, 1) }, 0, false,
	  false, PP_DONE },
	{ "LOCAL family 41 skipped", 0x20, 0x41, 7, 0, {{0}}, 0, false, true, PP_DONE },
	{ "LOCAL family FF skipped", 0x20, 0xFF, 40, 0, {{0}}, 0, false, true, PP_DONE },
	{ "LOCAL family 13 skipped", 0x20, 0x13, 12, 0, {{0}}, 0, false, true, PP_DONE },
	{ "LOCAL TCP4 short block skipped", 0x20, 0x11, 5, 0, {{0}}, 0, false, true, PP_DONE },
	{ "LOCAL TCP6 short block skipped", 0x20, 0x21, 12, 0, {{0}}, 0, false, true, PP_DONE },
	{ "LOCAL UNSPEC + 12 bytes that are no TLVs", 0x20, 0x00, 12, 0, {{0}}, 0, false, true,
	  PP_DONE },
	{ "LOCAL UNSPEC + 36 bytes that are no TLVs", 0x20, 0x00, 36, 0, {{0}}, 0, false, true,
	  PP_DONE },
	{ "LOCAL TCP4 block, TLV header cut: skipped", 0x20, 0x11, 12, 0, {{0}}, 1, false, true,
	  PP_DONE },
	{ "LOCAL UNSPEC, TLV past end: skipped", 0x20, 0x00, 0, 1,
	  { { PP2_TYPE_NOOP, 4, 1, NULL } }, 0, false, true, PP_DONE },
	{ "LOCAL wrong CRC32C, then a cut TLV: skipped", 0x20, 0x00, 0, 1, { CRC }, 2, true,
	  true, PP_DONE },
	{ "LOCAL family 41, wrong CRC32C: skipped", 0x20, 0x41, 0, 1, { CRC }, 0, true, true,
	  PP_DONE },
	{ "LOCAL TCP6 block, UNIQUE_ID 129 ignored", 0x20, 0x21, 36, 1,
	  { T(PP2_TYPE_UNIQUE_ID, 129) }, 0, false, false, PP_DONE },
	{ "LOCAL TCP4 block, CRC32C length 5 ignored", 0x20, 0x11, 12, 1,
	  { T(PP2_TYPE_CRC32C, 5) }, 0, false, false, PP_DONE },
	{ "LOCAL UNSPEC, SSL TLV too short ignored", 0x20, 0x00, 0, 1, { T(PP2_TYPE_SSL, 2) },
	  0, false, false, PP_DONE },
	/* invalid */
	{ "TCP4 len 11", 0x21, 0x11, 11, 0, {{0}}, 0, false, false, PP_INVALID },
	{ "TCP4 len 0", 0x21, 0x11, 0, 0, {{0}}, 0, false, false, PP_INVALID },
	{ "UDP4 len 11", 0x21, 0x12, 11, 0, {{0}}, 0, false, false, PP_INVALID },
	{ "TCP6 len 35", 0x21, 0x21, 35, 0, {{0}}, 0, false, false, PP_INVALID },
	{ "TCP6 len 12", 0x21, 0x21, 12, 0, {{0}}, 0, false, false, PP_INVALID },
	{ "UDP6 len 35", 0x21, 0x22, 35, 0, {{0}}, 0, false, false, PP_INVALID },
	{ "UNIX stream len 215", 0x21, 0x31, 215, 0, {{0}}, 0, false, false, PP_INVALID },
	{ "UNIX dgram len 215", 0x21, 0x32, 215, 0, {{0}}, 0, false, false, PP_INVALID },
	{ "TLV header 1 byte", 0x21, 0x11, 12, 0, {{0}}, 1, false, false, PP_INVALID },
	{ "TLV header 2 bytes", 0x21, 0x11, 12, 0, {{0}}, 2, false, false, PP_INVALID },
	{ "TLV header cut after a TLV", 0x21, 0x21, 36, 1, { T(PP2_TYPE_NOOP, 2) }, 2, false,
	  false, PP_INVALID },
	{ "TLV value past end", 0x21, 0x11, 12, 1, { { PP2_TYPE_NOOP, 3, 2, NULL } }, 0, false,
	  false, PP_INVALID },
	{ "second TLV past end", 0x21, 0x11, 12, 2,
	  { T(PP2_TYPE_NOOP, 2), { PP2_TYPE_ALPN, 10, 0, NULL } }, 0, false, false,
	  PP_INVALID },
	{ "SSL TLV past end", 0x21, 0x11, 12, 1,
	  { { PP2_TYPE_SSL, sizeof(SSL_VALUE), sizeof(SSL_VALUE) - 1, SSL_VALUE } }, 0, false,
	  false, PP_INVALID },
	{ "UNIQUE_ID 129", 0x21, 0x11, 12, 1, { T(PP2_TYPE_UNIQUE_ID, 129) }, 0, false, false,
	  PP_INVALID },
	{ "UNIQUE_ID 1000", 0x21, 0x21, 36, 1, { T(PP2_TYPE_UNIQUE_ID, 1000) }, 0, false, false,
	  PP_INVALID },
	{ "CRC32C mismatch", 0x21, 0x11, 12, 1, { CRC }, 0, true, false, PP_INVALID },
	{ "CRC32C mismatch after SSL", 0x21, 0x21, 36, 2, { TV(PP2_TYPE_SSL, SSL_VALUE), CRC },
	  0, true, false, PP_INVALID },
	{ "CRC32C length 0", 0x21, 0x11, 12, 1, { T(PP2_TYPE_CRC32C, 0) }, 0, false, false,
	  PP_INVALID },
	{ "CRC32C length 3", 0x21, 0x11, 12, 1, { T(PP2_TYPE_CRC32C, 3) }, 0, false, false,
	  PP_INVALID },
	{ "CRC32C length 5", 0x21, 0x11, 12, 1, { T(PP2_TYPE_CRC32C, 5) }, 0, false, false,
	  PP_INVALID },
	{ "LOCAL TCP4 block, CRC32C mismatch", 0x20, 0x11, 12, 1, { CRC }, 0, true, false,
	  PP_INVALID },
	{ "LOCAL UNSPEC, CRC32C mismatch", 0x20, 0x00, 0, 1, { CRC }, 0, true, false,
	  PP_INVALID },
	{ "LOCAL UNIX block, NOOP then CRC32C mismatch", 0x20, 0x32, 216, 2,
	  { T(PP2_TYPE_NOOP, 3), CRC }, 0, true, false, PP_INVALID },
};

START_TEST(test_v2_generated)
{
	const struct v2_case *c = &v2_cases[_i];
	size_t n = gen_v2(c);

	if (c->want == PP_DONE) {
		struct expect e = v2_expect(c, n);

		check_valid(c->name, gbuf, n, &e);
	} else {
		check_invalid(c->name, gbuf, n);
	}
}
END_TEST

/* Byte 12: only 20 and 21 exist (version 2, command LOCAL or PROXY). */
static const uint8_t bad_b12[] = {
	0x00, 0x01, 0x02, 0x10, 0x11, 0x12, 0x30, 0x31, 0x40, 0x41, 0xF0, 0xF1,
	0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F,
};

START_TEST(test_v2_bad_version_command)
{
	struct v2_case c = { "byte 12", bad_b12[_i], 0x11, 12, 0, {{0}}, 0, false, false,
			     PP_INVALID };
	char name[32];

	snprintf(name, sizeof name, "byte 12 = %02x", bad_b12[_i]);
	check_invalid(name, gbuf, gen_v2(&c));
}
END_TEST

/* With PROXY, byte 13 outside the listed combinations is rejected, whatever len. */
static const uint8_t bad_b13[] = {
	0x41, 0x13, 0x01, 0x10, 0x02, 0x03, 0x04, 0x0F, 0x14, 0x20, 0x23, 0x24,
	0x30, 0x33, 0x40, 0x42, 0x50, 0x51, 0x80, 0xF1, 0xFF,
};

START_TEST(test_v2_bad_family)
{
	struct v2_case c = { "byte 13", 0x21, bad_b13[_i], 216, 0, {{0}}, 0, false, false,
			     PP_INVALID };
	char name[32];

	snprintf(name, sizeof name, "PROXY byte 13 = %02x", bad_b13[_i]);
	check_invalid(name, gbuf, gen_v2(&c));
}
END_TEST

/* A wrong byte in either signature: invalid as soon as that byte has arrived, and in
 * the complete header. */
START_TEST(test_bad_signature)
{
	static const struct bytes_case base[] = {
		{ "v1", LIT(EX_V1_TCP4) }, { "v2", LIT(EX_V2_TCP4) },
	};
	const struct bytes_case *b = &base[_i < 5 ? 0 : 1];
	size_t pos = _i < 5 ? (size_t)_i : (size_t)_i - 5;
	uint8_t buf[64];
	char name[48];

	memcpy(buf, b->bytes, b->len);
	buf[pos] ^= 0x20;
	snprintf(name, sizeof name, "%s signature byte %zu", b->name, pos);
	check_invalid(name, buf, pos + 1);
	check_invalid(name, buf, b->len);
}
END_TEST

START_TEST(test_empty_buffer)
{
	struct pp_header h;

	ck_assert_int_eq(parse((const uint8_t *)"", 0, &h), PP_NEED_MORE);
	ck_assert_uint_eq(h.need, 1);
}
END_TEST

/* ---- pp_signature ------------------------------------------------------------- */

static const struct {
	const char *bytes;
	size_t len;
	int want;
} sig_cases[] = {
	{ LIT(""), -1 },
	{ LIT("P"), -1 },
	{ LIT("PROX"), -1 },
	{ LIT("PROXY"), 1 },
	{ LIT(EX_V1_TCP4), 1 },
	{ LIT("PROXX"), 0 },
	{ LIT("PRX"), 0 },
	{ LIT("p"), 0 },
	{ LIT("G"), 0 },
	{ LIT("GET / HTTP/1.1\r\n"), 0 },
	{ LIT("\x16\x03\x01"), 0 },
	{ LIT("\r"), -1 },
	{ LIT("\r\n\r\n\0"), -1 },
	{ LIT("\r\n\r\n\0\r\nQUIT"), -1 },
	{ LIT(SIG), 1 },
	{ LIT(EX_V2_TCP4), 1 },
	{ LIT("\r\n\r\n\x01"), 0 },
	{ LIT("\r\r"), 0 },
	{ LIT("\r\n\r\n\0\r\nQUIT\r"), 0 },
};

START_TEST(test_signature)
{
	uint8_t *b = dup_exact(sig_cases[_i].bytes, sig_cases[_i].len);
	int got = pp_signature(b, sig_cases[_i].len);

	free(b);
	ck_assert_msg(got == sig_cases[_i].want, "case %d (%zu bytes): got %d, want %d", _i,
		      sig_cases[_i].len, got, sig_cases[_i].want);
}
END_TEST

/* ---- CRC32C ------------------------------------------------------------------- */

START_TEST(test_crc32c_check_value)
{
	const uint8_t *s = (const uint8_t *)"123456789";

	ck_assert_uint_eq(crc32c_update(0, s, 9), 0xE3069283u);
	ck_assert_uint_eq(crc32c_update(0, s, 0), 0);
	/* Chaining: any split gives the one-shot value. */
	for (size_t k = 0; k <= 9; k++)
		ck_assert_uint_eq(crc32c_update(crc32c_update(0, s, k), s + k, 9 - k),
				  0xE3069283u);
}
END_TEST

START_TEST(test_crc32c_example_header)
{
	uint8_t b[] = EX_V2_TCP4_CRC;

	memset(b + 31, 0, 4);
	ck_assert_uint_eq(crc32c_update(0, b, 35), 0x737ee919u);
}
END_TEST

/* Every length and alignment against the bitwise reference (catches table/slice bugs). */
START_TEST(test_crc32c_vs_reference)
{
	static uint8_t data[520];
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof data; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = x >> 16;
	}
	for (size_t off = 0; off < 8; off++)
		for (size_t n = 0; n + off <= 512; n++)
			ck_assert_msg(crc32c_update(0, data + off, n) == ref_crc32c(data + off, n),
				      "offset %zu length %zu", off, n);
}
END_TEST

/* ---- builders ----------------------------------------------------------------- */

struct build_case {
	const char *name;
	int version;
	const char *src, *dst;     /* NULL: v1 UNKNOWN / v2 LOCAL */
	uint16_t sport, dport;
	const char *tlv;
	size_t tlv_len;
	bool crc;
	const char *want;          /* exact bytes, or NULL for a round trip only */
	size_t want_len;
	const char *psrc, *pdst;   /* what the parser reports, when not src/dst */
};

#define MAPPED_SRC "::ffff:192.0.2.1"
#define MAPPED_DST "::ffff:198.51.100.1"

static const struct build_case build_cases[] = {
	{ "v1 TCP4", 1, "192.0.2.1", "198.51.100.1", 56324, 443, NULL, 0, false,
	  LIT(EX_V1_TCP4), NULL, NULL },
	{ "v1 TCP6", 1, "2001:db8::1", "2001:db8::2", 51000, 443, NULL, 0, false,
	  LIT(EX_V1_TCP6), NULL, NULL },
	{ "v1 v4-mapped as TCP4", 1, MAPPED_SRC, MAPPED_DST, 56324, 443, NULL, 0, false,
	  LIT(EX_V1_TCP4), "192.0.2.1", "198.51.100.1" },
	{ "v1 UNKNOWN", 1, NULL, NULL, 0, 0, NULL, 0, false, LIT(EX_V1_UNKNOWN), NULL, NULL },
	{ "v1 long TCP6", 1, V6_MAX_A, V6_MAX_B, 65535, 65535, NULL, 0, false,
	  LIT("PROXY TCP6 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff "
	      "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n"), NULL, NULL },
	{ "v1 ports 0 and 65535", 1, "192.0.2.1", "198.51.100.1", 0, 65535, NULL, 0, false,
	  LIT("PROXY TCP4 192.0.2.1 198.51.100.1 0 65535\r\n"), NULL, NULL },
	{ "v2 TCP4", 2, "192.0.2.1", "198.51.100.1", 56324, 443, NULL, 0, false,
	  LIT(EX_V2_TCP4), NULL, NULL },
	{ "v2 v4-mapped as TCP4", 2, MAPPED_SRC, MAPPED_DST, 56324, 443, NULL, 0, false,
	  LIT(EX_V2_TCP4), "192.0.2.1", "198.51.100.1" },
	{ "v2 TCP4 + CRC32C", 2, "192.0.2.1", "198.51.100.1", 56324, 443, NULL, 0, true,
	  LIT(EX_V2_TCP4_CRC), NULL, NULL },
	{ "v2 TCP6 + NOOP", 2, "2001:db8::1", "2001:db8::2", 51000, 443,
	  LIT("\x04\x00\x02\x00\x00"), false, LIT(EX_V2_TCP6_NOOP), NULL, NULL },
	{ "v2 LOCAL", 2, NULL, NULL, 0, 0, NULL, 0, false, LIT(EX_V2_LOCAL), NULL, NULL },
	{ "v2 TCP6 + CRC32C", 2, "2001:db8::1", "2001:db8::2", 0, 65535, NULL, 0, true,
	  NULL, 0, NULL, NULL },
	{ "v2 TCP6 + SSL + CRC32C", 2, "2001:db8::1", "2001:db8::2", 51000, 443,
	  LIT(SSL_TLV), true, NULL, 0, NULL, NULL },
	{ "v2 v4-mapped + ALPN + CRC32C", 2, MAPPED_SRC, MAPPED_DST, 1, 2,
	  LIT("\x01\x00\x02h2"), true, NULL, 0, "192.0.2.1", "198.51.100.1" },
};

#define CANARY 0xA5
#define SLACK 64

static size_t build(const struct build_case *c, uint8_t *buf, size_t cap)
{
	struct ps_addr s, d;

	if (c->src) {
		s = mkaddr(c->src, c->sport);
		d = mkaddr(c->dst, c->dport);
	}
	if (c->version == 1)
		return pp_build_v1(buf, cap, c->src ? &s : NULL, c->src ? &d : NULL);
	return pp_build_v2(buf, cap, c->src ? &s : NULL, c->src ? &d : NULL,
			   (const uint8_t *)c->tlv, c->tlv_len, c->crc);
}

static void assert_untouched(const char *name, const uint8_t *b, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		ck_assert_msg(b[i] == CANARY, "%s: byte %zu written past the capacity", name, i);
}

START_TEST(test_build_roundtrip)
{
	const struct build_case *c = &build_cases[_i];
	static uint8_t buf[1024];
	struct pp_header h;
	size_t n;

	n = build(c, buf, sizeof buf - SLACK);
	ck_assert_msg(n > 0, "%s: build failed", c->name);
	if (c->want)
		ck_assert_msg(n == c->want_len && memcmp(buf, c->want, n) == 0,
			      "%s: %zu bytes, not the expected %zu", c->name, n, c->want_len);
	ck_assert_msg(parse(buf, n, &h) == PP_DONE, "%s: parse: %s", c->name,
		      h.reason ? h.reason : "");
	ck_assert_uint_eq(h.len, n);
	ck_assert_uint_eq(h.version, c->version);
	ck_assert_uint_eq(h.command, c->src ? PP_CMD_PROXY : PP_CMD_LOCAL);
	ck_assert_int_eq(h.has_addrs, c->src != NULL);
	ck_assert_int_eq(h.has_crc, c->crc);
	if (c->src) {
		assert_addr(c->name, "src", &h.src, c->psrc ? c->psrc : c->src, c->sport);
		assert_addr(c->name, "dst", &h.dst, c->pdst ? c->pdst : c->dst, c->dport);
	}
	/* Exactly enough room: written, and nothing lands past the capacity. */
	memset(buf, CANARY, sizeof buf);
	ck_assert_msg(build(c, buf, n) == n, "%s: %zu bytes do not fit in cap %zu", c->name,
		      n, n);
	assert_untouched(c->name, buf, n, sizeof buf);
	/* Any capacity short of the header: 0, and nothing written past the capacity. */
	for (size_t cap = 0; cap < n; cap++) {
		memset(buf, CANARY, sizeof buf);
		ck_assert_msg(build(c, buf, cap) == 0, "%s: cap %zu of %zu accepted", c->name,
			      cap, n);
		assert_untouched(c->name, buf, cap, sizeof buf);
	}
}
END_TEST

/* ---- the datagram fast path ------------------------------------------------------ */

/* pp_parse_dgram_plain against pp_parse: whatever it accepts, pp_parse reads the same
 * way; every TLV-free v2 PROXY UDP header pp_parse accepts, it accepts too. */
static void agree(const uint8_t *b, size_t len)
{
	struct pp_header h;
	struct ps_addr src;
	size_t hlen = 0;
	bool fast = pp_parse_dgram_plain(b, len, &src, &hlen);
	bool full = pp_parse(b, len, &h) == PP_DONE && h.version == 2 &&
		    h.command == PP_CMD_PROXY && h.has_dgram_addrs;
	ck_assert_msg(fast == (full && h.tlv_len == 0), "len %zu: fast %d, full %d (tlv %zu)",
		      len, fast, full, full ? h.tlv_len : 0);
	if (fast)
		ck_assert(hlen == h.len && !memcmp(&src, &h.src, sizeof src));
}

START_TEST(test_dgram_plain_agrees)
{
	static const char *const ips[][2] = {{"192.0.2.1", "198.51.100.1"},
					     {"2001:db8::1", "2001:db8::2"}};
	struct ps_addr s = mkaddr(ips[_i][0], 53124), d = mkaddr(ips[_i][1], 53);
	uint8_t base[128], b[128];
	size_t n = pp_build_v2_dgram(base, sizeof base, &s, &d);
	ck_assert(n == (_i ? 52u : 28u));
	memcpy(base + n, "payload", 7);
	for (size_t len = 0; len <= n + 7; len++)  /* every cut, whole header or not */
		agree(base, len);
	for (size_t k = 0; k < n; k++)  /* every byte of the header, every value */
		for (unsigned v = 0; v < 256; v++) {
			memcpy(b, base, n + 7);
			b[k] = (uint8_t)v;
			agree(b, n + 7);
			agree(b, n);
		}
	/* A TLV after the block (a NOOP): pp_parse's, not the fast path's. */
	memcpy(b, base, n);
	b[15] = (uint8_t)(b[15] + 3);
	memcpy(b + n, "\x04\x00\x00", 3);
	agree(b, n + 3);
	ck_assert(!pp_parse_dgram_plain(b, n + 3, &s, &n));
}
END_TEST

/* ---- suite -------------------------------------------------------------------- */

int main(void)
{
	Suite *s = suite_create("pp");

	add_loop(s, "valid literal", test_valid_literal, N(valid_lit));
	add_loop(s, "v1 invalid", test_v1_invalid, N(v1_invalid));
	add_loop(s, "v1 too long", test_v1_too_long, 1);
	add_loop(s, "v1 UNKNOWN waits", test_v1_unknown_waits, 1);
	add_loop(s, "v2 generated", test_v2_generated, N(v2_cases));
	add_loop(s, "v2 byte 12", test_v2_bad_version_command, N(bad_b12));
	add_loop(s, "v2 byte 13", test_v2_bad_family, N(bad_b13));
	add_loop(s, "bad signature", test_bad_signature, 5 + 12);
	add_loop(s, "empty buffer", test_empty_buffer, 1);
	add_loop(s, "pp_signature", test_signature, N(sig_cases));
	add_loop(s, "crc32c check value", test_crc32c_check_value, 1);
	add_loop(s, "crc32c example", test_crc32c_example_header, 1);
	add_loop(s, "crc32c reference", test_crc32c_vs_reference, 1);
	add_loop(s, "builders", test_build_roundtrip, N(build_cases));
	add_loop(s, "datagram fast path", test_dgram_plain_agrees, 2);
	return run_suite(s);
}
