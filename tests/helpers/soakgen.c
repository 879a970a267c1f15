/* soakgen: the load of scripts/soak. COUNT connections, at most PARALLEL at once, one
 * thread, poll. Each connection goes to one of the targets and is of one kind, both
 * chosen from its number and the seed (so a run can be repeated exactly). Every
 * connection's application data ends with a token naming it and the address the server
 * must report for it:
 *     SOAK <i> <expected-peer> <kind>/<variant>\n
 * after which the write side is shut; the server (build/testserver) prints the token in
 * its data= field and replies "OK <peer>\n".
 *
 * Targets: -D NAME:PORT (a server under the shim, connections made directly) and
 * -H NAME:PORT (an HAProxy frontend with send-proxy or send-proxy-v2 in front of one),
 * all on 127.0.0.1. Half the connections go direct, half through HAProxy (when both
 * kinds are given), spread evenly over the targets of the kind.
 *
 * Source addresses (all loopback; the servers must trust 127.0.0.0/24 and nothing in
 * 127.0.2.0/24):
 *   trusted proxy (direct)   127.0.0.(100 + i % 100)
 *   untrusted (direct)       127.0.2.(1 + i % 250)
 *   HAProxy's clients        127.(16 + (i >> 16) % 64).((i >> 8) & 255).(i & 255), one per i
 * Client addresses inside the headers of direct connections, one per i:
 *   127.(80 + (i >> 16) % 64).((i >> 8) & 255).(i & 255):(1024 + i % 64000)
 *
 * Kinds, direct (per mille): v1 170, v2 170 (plain, TCP6 ::ffff:127.x, CRC32C, TLVs,
 * TLVs + CRC32C), local 80 (v2 LOCAL, LOCAL with addresses, v1 UNKNOWN with and without
 * addresses, v2 UDP4: real address kept), untr 80 (untrusted, no header), untrhdr 80
 * (untrusted, a valid header that is plain data), bad 160 (16 malformation classes from
 * the trusted proxy, a third of them split in two writes), slow 255 (a valid header in
 * 2 or 3 writes 5-60 ms apart, split anywhere), late 5 (part of a header, then nothing:
 * closed at the shim's timeout). bad classes 12 and 13 (a truncated header, then the
 * write side shut) and late carry no token. Through HAProxy: via 900 (the token), viainj 100 (the
 * client sends its own PROXY header, which must stay plain data).
 * bad and late are expected to be closed with no reply; every other kind to be served
 * with its expected address.
 *
 * Output: with -o FILE one line per connection,
 *     i target kind/variant s|r expected-address outcome
 * (s: must be served, r: must be refused; outcome one of ok, wrong, served, refused,
 * timeout, connfail); on stdout one "target NAME ..." and one "kind NAME ..." line per
 * target and kind, then
 *     total sent=N served=N refused=N wrong=N unexp_served=N unexp_refused=N timeout=N connfail=N
 * and up to 20 "violation ..." lines. Exit status: 0 no violation, 2 violations,
 * 1 usage or set-up error. Run with -h. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netaddr.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_TARGETS 16
#define OUT_MAX 512
#define REPLY_KEEP 96
#define MAX_CUTS 3

enum kind { K_V1, K_V2, K_LOCAL, K_UNTR, K_UNTRHDR, K_BAD, K_SLOW, K_LATE, K_VIA, K_VIAINJ,
	    K_COUNT };
static const char *const kind_name[K_COUNT] = {"v1", "v2", "local", "untr", "untrhdr",
					       "bad", "slow", "late", "via", "viainj"};
enum outcome { O_OK, O_WRONG, O_SERVED, O_REFUSED, O_TIMEOUT, O_CONNFAIL, O_COUNT };
static const char *const outcome_name[O_COUNT] = {"ok", "wrong", "served", "refused",
						  "timeout", "connfail"};
enum phase { CONNECTING, SENDING, WAITING };

struct target {
	char name[32];
	unsigned port;
	bool haproxy;
	long sent, served, refused, bad;
};

static struct {
	long count, parallel, base, timeout_ms;
	uint64_t seed;
	const char *records;
} opt = {1, 64, 0, 10000, 1, NULL};

static struct target targets[MAX_TARGETS];
static int ntargets, ndirect, nhap;
static long kind_sent[K_COUNT], kind_bad[K_COUNT];
static long outcomes[O_COUNT];
static long expect_served_ok, expect_refused_ok;
static int violations_shown;
static FILE *rec;

struct conn {
	int fd;
	long idx;
	int target;
	enum kind kind;
	int variant;
	enum phase phase;
	bool expect_served, shut, no_token;
	struct sockaddr_in src;
	char expect[64];
	unsigned char out[OUT_MAX];
	size_t outlen, sent;
	size_t cuts[MAX_CUTS];   /* write boundaries inside out[], ascending */
	int ncuts, delay_ms[MAX_CUTS];
	long long t0, next;
	char reply[REPLY_KEEP];
	size_t got;
	int hdr_end;             /* for kinds whose header is built before connect */
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *f)
{
	fputs("usage: soakgen [-n COUNT] [-j PARALLEL] [-b BASE] [-s SEED] [-t MS] [-o FILE]\n"
	      "               (-D NAME:PORT | -H NAME:PORT)...\n"
	      "  -n COUNT   connections (default 1), numbered BASE .. BASE+COUNT-1\n"
	      "  -j N       at most N open at once (default 64)\n"
	      "  -b BASE    first connection number (default 0)\n"
	      "  -s SEED    seed of the kind and target choices (default 1)\n"
	      "  -t MS      bound on each connection, from its start (default 10000)\n"
	      "  -o FILE    one line per connection (see the header comment)\n"
	      "  -D N:P     a target reached directly: a server under the shim on 127.0.0.1:P\n"
	      "  -H N:P     a target through HAProxy: its frontend on 127.0.0.1:P\n", f);
}

static long num(const char *s, long min, long max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "soakgen: bad %s: \"%s\"\n", what, s);
		exit(1);
	}
	return v;
}

static void add_target(const char *spec, bool haproxy)
{
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof targets[0].name ||
	    ntargets == MAX_TARGETS) {
		fprintf(stderr, "soakgen: bad target \"%s\"\n", spec);
		exit(1);
	}
	struct target *t = &targets[ntargets++];
	memcpy(t->name, spec, (size_t)(colon - spec));
	t->port = (unsigned)num(colon + 1, 1, 65535, "port");
	t->haproxy = haproxy;
	if (haproxy)
		nhap++;
	else
		ndirect++;
}

static void parse_args(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "n:j:b:s:t:o:D:H:h")) != -1) {
		switch (c) {
		case 'n': opt.count = num(optarg, 1, 100000000, "count"); break;
		case 'j': opt.parallel = num(optarg, 1, 4096, "parallel"); break;
		case 'b': opt.base = num(optarg, 0, 1000000000, "base"); break;
		case 's': opt.seed = (uint64_t)num(optarg, 0, 1L << 62, "seed"); break;
		case 't': opt.timeout_ms = num(optarg, 100, 3600000, "timeout"); break;
		case 'o': opt.records = optarg; break;
		case 'D': add_target(optarg, false); break;
		case 'H': add_target(optarg, true); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (optind != argc || ntargets == 0) {
		usage(stderr);
		exit(1);
	}
}

/* ---- choices ---- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* A stream of numbers for connection i. */
struct rng { uint64_t s; };
static uint32_t rnd(struct rng *r, uint32_t n)
{
	r->s = mix(r->s);
	return (uint32_t)((r->s >> 32) % n);
}

/* ---- bytes ---- */

static uint32_t crc32c(const unsigned char *p, size_t n)
{
	uint32_t crc = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return crc ^ 0xFFFFFFFFu;
}

struct buf {
	unsigned char *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		fprintf(stderr, "soakgen: payload too large\n");
		exit(1);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct buf *b, const char *fmt, ...)
{
	char tmp[OUT_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof tmp) {
		fprintf(stderr, "soakgen: line too long\n");
		exit(1);
	}
	put(b, tmp, (size_t)n);
}

static void put8(struct buf *b, unsigned v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void put16(struct buf *b, unsigned v) { put8(b, v >> 8); put8(b, v & 255); }

static const unsigned char v2sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A client address inside a header: a, b, c of 127.a.b.c and a port. */
struct claddr { unsigned a, b, c, port; };

static struct claddr header_client(long i)
{
	return (struct claddr){80 + (unsigned)((i >> 16) % 64), (unsigned)((i >> 8) & 255),
			       (unsigned)(i & 255), 1024 + (unsigned)(i % 64000)};
}

static void fmt_claddr(const struct claddr *a, char *buf, size_t n)
{
	snprintf(buf, n, "127.%u.%u.%u:%u", a->a, a->b, a->c, a->port);
}

/* The v2 address block: TCP4 (12 bytes) or TCP6 with ::ffff:127.a.b.c (36 bytes). */
static void v2_block(struct buf *b, const struct claddr *a, unsigned dport, bool six)
{
	unsigned char s4[4] = {127, (unsigned char)a->a, (unsigned char)a->b, (unsigned char)a->c};
	unsigned char d4[4] = {127, 0, 0, 1};
	if (six) {
		static const unsigned char pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		put(b, pre, 12), put(b, s4, 4), put(b, pre, 12), put(b, d4, 4);
	} else {
		put(b, s4, 4), put(b, d4, 4);
	}
	put16(b, a->port), put16(b, dport);
}

static void tlv(struct buf *b, unsigned type, const void *v, size_t n)
{
	put8(b, type), put16(b, (unsigned)n), put(b, v, n);
}

/* A v2 header: VERCMD, FAM, then the body as built by the caller from body_start; the
 * length field is filled in by v2_end, which also sets a CRC32C TLV if crc_at != 0. */
static size_t v2_begin(struct buf *b, unsigned vercmd, unsigned fam)
{
	put(b, v2sig, 12), put8(b, vercmd), put8(b, fam), put16(b, 0);
	return b->n;
}

static void v2_end(struct buf *b, size_t start, size_t crc_at)
{
	size_t len = b->n - start;
	b->p[start - 2] = (unsigned char)(len >> 8);
	b->p[start - 1] = (unsigned char)(len & 255);
	if (crc_at) {
		uint32_t crc = crc32c(b->p + start - 16, len + 16);
		b->p[crc_at] = (unsigned char)(crc >> 24), b->p[crc_at + 1] = (unsigned char)(crc >> 16);
		b->p[crc_at + 2] = (unsigned char)(crc >> 8), b->p[crc_at + 3] = (unsigned char)crc;
	}
}

/* Variants of a valid v2 PROXY header: 0 TCP4, 1 TCP6 ::ffff:, 2 TCP4 + CRC32C,
 * 3 TCP4 + ALPN, AUTHORITY, NOOP, UNIQUE_ID, 4 the same + CRC32C. */
#define V2_VARIANTS 5
static void v2_valid(struct buf *b, const struct claddr *a, unsigned dport, int variant)
{
	size_t start = v2_begin(b, 0x21, variant == 1 ? 0x21 : 0x11), crc_at = 0;
	v2_block(b, a, dport, variant == 1);
	if (variant >= 3) {
		char uid[24];
		int n = snprintf(uid, sizeof uid, "soak-%u.%u.%u", a->a, a->b, a->c);
		tlv(b, 0x01, "h2", 2);
		tlv(b, 0x02, "soak.example", 12);
		tlv(b, 0x04, "\0\0\0", 3);
		tlv(b, 0x05, uid, (size_t)n);
	}
	if (variant == 2 || variant == 4) {
		tlv(b, 0x03, "\0\0\0\0", 4);
		crc_at = b->n - 4;
	}
	v2_end(b, start, crc_at);
}

/* Variants of a valid v1 line: 0 TCP4, 1 TCP6 ::ffff:127.a.b.c. */
#define V1_VARIANTS 2
static void v1_valid(struct buf *b, const struct claddr *a, unsigned dport, int variant)
{
	if (variant == 1)
		putf(b, "PROXY TCP6 ::ffff:127.%u.%u.%u ::ffff:127.0.0.1 %u %u\r\n", a->a, a->b,
		     a->c, a->port, dport);
	else
		putf(b, "PROXY TCP4 127.%u.%u.%u 127.0.0.1 %u %u\r\n", a->a, a->b, a->c, a->port,
		     dport);
}

/* Headers whose addresses are never used (real address kept): 0 v2 LOCAL, 1 v2 LOCAL
 * with a TCP4 block, 2 v1 UNKNOWN, 3 v1 UNKNOWN with addresses, 4 v2 PROXY UDP4. */
#define LOCAL_VARIANTS 5
static void local_hdr(struct buf *b, const struct claddr *a, unsigned dport, int variant)
{
	size_t start;
	switch (variant) {
	case 0:
		start = v2_begin(b, 0x20, 0x00);
		v2_end(b, start, 0);
		break;
	case 1:
		start = v2_begin(b, 0x20, 0x11);
		v2_block(b, a, dport, false);
		v2_end(b, start, 0);
		break;
	case 2:
		putf(b, "PROXY UNKNOWN\r\n");
		break;
	case 3:
		putf(b, "PROXY UNKNOWN 127.%u.%u.%u 127.0.0.1 %u %u\r\n", a->a, a->b, a->c,
		     a->port, dport);
		break;
	default:
		start = v2_begin(b, 0x21, 0x12);
		v2_block(b, a, dport, false);
		v2_end(b, start, 0);
		break;
	}
}

/* Malformed headers (the class is the variant); from the trusted proxy, each must get
 * the connection closed before the application sees it. 12 and 13 half-close after a
 * truncated header. */
#define BAD_VARIANTS 16
static void bad_hdr(struct buf *b, const struct claddr *a, unsigned dport, int variant)
{
	size_t start;
	switch (variant) {
	case 0: putf(b, "PROXY TCP4 127.%u.%u.256 127.0.0.1 %u %u\r\n", a->a, a->b, a->port, dport); break;
	case 1: putf(b, "PROXY TCP5 127.%u.%u.%u 127.0.0.1 %u %u\r\n", a->a, a->b, a->c, a->port, dport); break;
	case 2: putf(b, "PROXY TCP4 127.%u.%u.%u 127.0.0.1 65536 %u\r\n", a->a, a->b, a->c, dport); break;
	case 3: putf(b, "PROXY TCP4 127.%u.%u.%u 127.0.0.1 %u %u\n", a->a, a->b, a->c, a->port, dport); break;
	case 4: putf(b, "PROXY TCP4  127.%u.%u.%u 127.0.0.1 %u %u\r\n", a->a, a->b, a->c, a->port, dport); break;
	case 5: putf(b, "proxy TCP4 127.%u.%u.%u 127.0.0.1 %u %u\r\n", a->a, a->b, a->c, a->port, dport); break;
	case 6:
		putf(b, "PROXY UNKNOWN ");
		for (int k = 0; k < 110; k++)
			put8(b, 'a');
		putf(b, "\r\n");
		break;
	case 7:   /* version nibble 3 */
		start = v2_begin(b, 0x31, 0x11);
		v2_block(b, a, dport, false);
		v2_end(b, start, 0);
		break;
	case 8:   /* command 2 */
		start = v2_begin(b, 0x22, 0x11);
		v2_block(b, a, dport, false);
		v2_end(b, start, 0);
		break;
	case 9: { /* length 11: shorter than the TCP4 block */
		start = v2_begin(b, 0x21, 0x11);
		v2_block(b, a, dport, false);
		b->n--;
		v2_end(b, start, 0);
		break;
	}
	case 10: { /* CRC32C off by one bit */
		start = v2_begin(b, 0x21, 0x11);
		v2_block(b, a, dport, false);
		tlv(b, 0x03, "\0\0\0\0", 4);
		size_t at = b->n - 4;
		v2_end(b, start, at);
		b->p[at + 3] ^= 1;
		break;
	}
	case 11: putf(b, "GET / HTTP/1.0\r\n"); break;   /* no header under require */
	case 12:  /* truncated v2, then EOF */
		start = v2_begin(b, 0x21, 0x11);
		v2_block(b, a, dport, false);
		v2_end(b, start, 0);
		b->n -= 5;
		break;
	case 13: putf(b, "PROXY TCP4 127.%u.%u.%u 127.0.0.1 %u", a->a, a->b, a->c, a->port); break;
	case 14: { /* bad signature byte 11 */
		start = v2_begin(b, 0x21, 0x11);
		v2_block(b, a, dport, false);
		v2_end(b, start, 0);
		b->p[start - 16 + 11] = 0x0b;
		break;
	}
	default: { /* a TLV past the end of the header */
		start = v2_begin(b, 0x21, 0x11);
		v2_block(b, a, dport, false);
		put8(b, 0x04), put16(b, 5), put8(b, 0);
		v2_end(b, start, 0);
		break;
	}
	}
}

/* A header claimed by an untrusted client or injected by HAProxy's client: valid, but
 * it must stay application data. */
static void fake_hdr(struct buf *b, long i, unsigned dport, int variant)
{
	struct claddr a = {0, 0, 66 + (unsigned)(i % 3), 6666};
	switch (variant % 4) {
	case 0: v1_valid(b, &a, dport, 0); break;
	case 1: v2_valid(b, &a, dport, 0); break;
	case 2: local_hdr(b, &a, dport, 0); break;
	default: v2_valid(b, &a, dport, 4); break;
	}
}

/* ---- plan of one connection ---- */

static void source_of(struct conn *c)
{
	unsigned a = 0, b = 0, d;
	long i = c->idx;
	switch (c->kind) {
	case K_UNTR:
	case K_UNTRHDR:
		b = 2, d = 1 + (unsigned)(i % 250);
		break;
	case K_VIA:
	case K_VIAINJ:
		a = 16 + (unsigned)((i >> 16) % 64), b = (unsigned)((i >> 8) & 255);
		d = (unsigned)(i & 255);
		break;
	default:
		d = 100 + (unsigned)(i % 100);
	}
	memset(&c->src, 0, sizeof c->src);
	c->src.sin_family = AF_INET;
	c->src.sin_addr.s_addr = htonl(0x7f000000u | a << 16 | b << 8 | d);
}

/* Chooses target, kind, variant and cuts; builds the header part of out[]. The token
 * is appended once connected (its address may be the connection's own). */
static void plan(struct conn *c)
{
	struct rng r = {mix(opt.seed * 0x100000001b3ULL ^ (uint64_t)c->idx)};
	bool via = ndirect == 0 || (nhap > 0 && rnd(&r, 2));
	int pick = (int)rnd(&r, (uint32_t)(via ? nhap : ndirect));
	for (int t = 0; t < ntargets; t++)
		if (targets[t].haproxy == via && pick-- == 0)
			c->target = t;
	unsigned w = rnd(&r, 1000), dport = targets[c->target].port;
	if (via)
		c->kind = w < 900 ? K_VIA : K_VIAINJ;
	else if (w < 170)
		c->kind = K_V1;
	else if (w < 340)
		c->kind = K_V2;
	else if (w < 420)
		c->kind = K_LOCAL;
	else if (w < 500)
		c->kind = K_UNTR;
	else if (w < 580)
		c->kind = K_UNTRHDR;
	else if (w < 740)
		c->kind = K_BAD;
	else if (w < 995)
		c->kind = K_SLOW;
	else
		c->kind = K_LATE;

	struct buf b = {c->out, 0, OUT_MAX};
	struct claddr a = header_client(c->idx);
	c->expect_served = true;
	c->shut = true;
	c->ncuts = 0;
	c->expect[0] = '\0';   /* empty: the connection's own address, known once connected */
	switch (c->kind) {
	case K_V1:
		c->variant = (int)rnd(&r, V1_VARIANTS);
		v1_valid(&b, &a, dport, c->variant);
		fmt_claddr(&a, c->expect, sizeof c->expect);
		break;
	case K_V2:
		c->variant = (int)rnd(&r, V2_VARIANTS);
		v2_valid(&b, &a, dport, c->variant);
		fmt_claddr(&a, c->expect, sizeof c->expect);
		break;
	case K_LOCAL:
		c->variant = (int)rnd(&r, LOCAL_VARIANTS);
		local_hdr(&b, &a, dport, c->variant);
		break;
	case K_UNTR:
		c->variant = 0;
		break;
	case K_UNTRHDR:
	case K_VIAINJ:
		c->variant = (int)rnd(&r, 4);
		fake_hdr(&b, c->idx, dport, c->variant);
		break;
	case K_VIA:
		c->variant = 0;
		break;
	case K_BAD:
		c->variant = (int)rnd(&r, BAD_VARIANTS);
		bad_hdr(&b, &a, dport, c->variant);
		c->expect_served = false;
		c->no_token = c->variant == 12 || c->variant == 13;   /* the header, then EOF */
		snprintf(c->expect, sizeof c->expect, "-");
		if (b.n > 1 && rnd(&r, 3) == 0) {
			c->cuts[0] = 1 + rnd(&r, (uint32_t)b.n - 1);
			c->delay_ms[0] = 5 + (int)rnd(&r, 25);
			c->ncuts = 1;
		}
		break;
	case K_SLOW:
	case K_LATE: {
		/* variant: 0-1 v1, 2-6 v2 */
		c->variant = (int)rnd(&r, V1_VARIANTS + V2_VARIANTS);
		if (c->variant < V1_VARIANTS)
			v1_valid(&b, &a, dport, c->variant);
		else
			v2_valid(&b, &a, dport, c->variant - V1_VARIANTS);
		if (c->kind == K_LATE) {
			b.n = 1 + rnd(&r, (uint32_t)b.n - 1);   /* never completed */
			c->expect_served = false;
			c->shut = false;
			snprintf(c->expect, sizeof c->expect, "-");
			break;
		}
		fmt_claddr(&a, c->expect, sizeof c->expect);
		int n = 1 + (int)rnd(&r, 2);
		size_t lo = 0;
		for (int k = 0; k < n; k++) {
			size_t room = b.n - lo;   /* a cut in (lo, b.n]: b.n is "with the token" */
			if (room < 1)
				break;
			c->cuts[c->ncuts] = lo + 1 + rnd(&r, (uint32_t)room);
			if (c->cuts[c->ncuts] >= b.n)
				c->cuts[c->ncuts] = b.n;   /* the header whole, the token later */
			c->delay_ms[c->ncuts] = 5 + (int)rnd(&r, 56);
			lo = c->cuts[c->ncuts++];
			if (lo >= b.n)
				break;
		}
		break;
	}
	default:
		break;
	}
	c->outlen = b.n;
}

/* Connected: the expected address if it is the connection's own, and the token. */
static void add_token(struct conn *c)
{
	if (!c->expect[0]) {
		na_format_name(c->fd, 0, c->expect, sizeof c->expect);
	}
	if (c->kind == K_LATE || c->no_token)
		return;
	struct buf b = {c->out, c->outlen, OUT_MAX};
	putf(&b, "SOAK %ld %s %s/%d\n", c->idx, c->expect, kind_name[c->kind], c->variant);
	c->outlen = b.n;
}

/* ---- connections ---- */

static void violation(const struct conn *c, enum outcome o)
{
	if (violations_shown++ >= 20)
		return;
	char rep[REPLY_KEEP * 4 + 1];
	size_t o2 = 0;
	for (size_t k = 0; k < c->got && k < REPLY_KEEP && o2 + 5 < sizeof rep; k++) {
		unsigned char ch = (unsigned char)c->reply[k];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			rep[o2++] = (char)ch;
		else
			o2 += (size_t)snprintf(rep + o2, sizeof rep - o2, "\\x%02x", ch);
	}
	rep[o2] = '\0';
	printf("violation conn=%ld target=%s kind=%s/%d outcome=%s expected=%s reply=\"%s\"\n",
	       c->idx, targets[c->target].name, kind_name[c->kind], c->variant,
	       outcome_name[o], c->expect_served ? c->expect : "refused", rep);
}

static void finish(struct conn *c, enum outcome o)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (o == O_OK && c->got) {        /* ended with a reply: served */
		char want[80];
		int n = snprintf(want, sizeof want, "OK %s\n", c->expect);
		if (!c->expect_served)
			o = O_SERVED;
		else if ((size_t)n != c->got || memcmp(want, c->reply, c->got) != 0)
			o = O_WRONG;
	} else if (o == O_OK) {           /* ended without a reply: refused */
		if (c->expect_served)
			o = O_REFUSED;
	}
	struct target *t = &targets[c->target];
	t->sent++;
	kind_sent[c->kind]++;
	outcomes[o]++;
	if (o == O_OK) {
		if (c->expect_served)
			t->served++, expect_served_ok++;
		else
			t->refused++, expect_refused_ok++;
	} else {
		t->bad++;
		kind_bad[c->kind]++;
		violation(c, o);
	}
	if (rec)
		fprintf(rec, "%ld %s %s/%d %c %s %s\n", c->idx, t->name, kind_name[c->kind],
			c->variant, c->expect_served ? 's' : 'r', c->expect[0] ? c->expect : "-",
			outcome_name[o]);
}

static void start(struct conn *c, long idx)
{
	memset(c, 0, sizeof *c);
	c->idx = idx;
	c->t0 = now_ms();
	plan(c);
	source_of(c);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		perror("soakgen: socket");
		exit(1);
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	if (bind(c->fd, (struct sockaddr *)&c->src, sizeof c->src) < 0) {
		finish(c, O_CONNFAIL);
		return;
	}
	struct sockaddr_in dst = {.sin_family = AF_INET,
				  .sin_port = htons((uint16_t)targets[c->target].port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	c->phase = CONNECTING;
	if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)
		finish(c, O_CONNFAIL);
}

static void connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof err;
	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		finish(c, O_CONNFAIL);
		return;
	}
	add_token(c);
	c->phase = SENDING;
	c->next = now_ms();
}

/* End of the next write: the next cut, or everything. */
static size_t write_end(const struct conn *c)
{
	for (int k = 0; k < c->ncuts; k++)
		if (c->cuts[k] > c->sent)
			return c->cuts[k];
	return c->outlen;
}

static void send_due(struct conn *c, long long now)
{
	while (c->fd >= 0 && c->phase == SENDING && now >= c->next) {
		size_t upto = write_end(c);
		if (c->sent >= c->outlen) {
			c->phase = WAITING;
			if (c->shut)
				shutdown(c->fd, SHUT_WR);
			return;
		}
		ssize_t w = send(c->fd, c->out + c->sent, upto - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (w < 0) {   /* closed by the server: see how it ended */
			c->phase = WAITING;
			return;
		}
		c->sent += (size_t)w;
		for (int k = 0; k < c->ncuts; k++)
			if (c->cuts[k] == c->sent && c->sent < c->outlen)
				c->next = now + c->delay_ms[k];
	}
}

static void read_some(struct conn *c)
{
	char buf[512];
	for (;;) {
		ssize_t r = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r > 0) {
			for (ssize_t k = 0; k < r && c->got < REPLY_KEEP; k++)
				c->reply[c->got++] = buf[k];
			continue;
		}
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			finish(c, O_OK);   /* EOF or reset: finish() classifies */
		return;
	}
}

static void raise_nofile(long need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need + 16) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)need + 16 ? rl.rlim_max : (rlim_t)need + 16;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	raise_nofile(opt.parallel);
	if (opt.records && !(rec = fopen(opt.records, "w"))) {
		perror("soakgen: records file");
		return 1;
	}
	struct conn *conns = calloc((size_t)opt.parallel, sizeof *conns);
	struct pollfd *pfd = calloc((size_t)opt.parallel, sizeof *pfd);
	if (!conns || !pfd)
		return 1;
	for (long i = 0; i < opt.parallel; i++)
		conns[i].fd = -1;
	long next = 0, done = 0;
	while (done < opt.count) {
		long long now = now_ms();
		int wait = 100;
		for (long i = 0; i < opt.parallel; i++) {
			struct conn *c = &conns[i];
			while (c->fd < 0 && next < opt.count) {   /* a connect may fail at once */
				start(c, opt.base + next++);
				if (c->fd < 0)
					done++;
			}
			if (c->fd >= 0 && now - c->t0 >= opt.timeout_ms)
				finish(c, c->phase == CONNECTING ? O_CONNFAIL : O_TIMEOUT), done++;
			if (c->fd >= 0 && c->phase == SENDING)
				send_due(c, now);
			pfd[i] = (struct pollfd){.fd = c->fd};
			if (c->fd < 0)
				continue;
			pfd[i].events = c->phase == CONNECTING ? POLLOUT : POLLIN;
			if (c->phase == SENDING && c->next > now && c->next - now < wait)
				wait = (int)(c->next - now);
			if (c->phase == SENDING && c->next <= now)
				pfd[i].events |= POLLOUT;
		}
		if (poll(pfd, (nfds_t)opt.parallel, wait) < 0 && errno != EINTR) {
			perror("soakgen: poll");
			return 1;
		}
		for (long i = 0; i < opt.parallel; i++) {
			struct conn *c = &conns[i];
			if (c->fd < 0 || !pfd[i].revents)
				continue;
			if (c->phase == CONNECTING) {
				connected(c);
				if (c->fd < 0)
					done++;
			} else if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				read_some(c);
				if (c->fd < 0)
					done++;
			}
		}
	}
	if (rec && fclose(rec) != 0) {
		perror("soakgen: records file");
		return 1;
	}
	for (int t = 0; t < ntargets; t++)
		printf("target %s via=%s sent=%ld served=%ld refused=%ld violations=%ld\n",
		       targets[t].name, targets[t].haproxy ? "haproxy" : "direct", targets[t].sent,
		       targets[t].served, targets[t].refused, targets[t].bad);
	for (int k = 0; k < K_COUNT; k++)
		if (kind_sent[k])
			printf("kind %s sent=%ld violations=%ld\n", kind_name[k], kind_sent[k],
			       kind_bad[k]);
	long sent = 0;
	for (int o = 0; o < O_COUNT; o++)
		sent += outcomes[o];
	printf("total sent=%ld served=%ld refused=%ld wrong=%ld unexp_served=%ld "
	       "unexp_refused=%ld timeout=%ld connfail=%ld\n",
	       sent, expect_served_ok, expect_refused_ok, outcomes[O_WRONG], outcomes[O_SERVED],
	       outcomes[O_REFUSED], outcomes[O_TIMEOUT], outcomes[O_CONNFAIL]);
	return sent == outcomes[O_OK] && sent == opt.count ? 0 : 2;
}
