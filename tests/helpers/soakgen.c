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
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELPER_NAME "soakgen"
#include "clientloop.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_TARGETS 16
#define OUT_MAX 512
#define MAX_CUTS 3

enum kind { K_V1, K_V2, K_LOCAL, K_UNTR, K_UNTRHDR, K_BAD, K_SLOW, K_LATE, K_VIA, K_VIAINJ,
	    K_COUNT };
static const char *const kind_name[K_COUNT] = {"v1", "v2", "local", "untr", "untrhdr",
					       "bad", "slow", "late", "via", "viainj"};
enum outcome { O_OK, O_WRONG, O_SERVED, O_REFUSED, O_TIMEOUT, O_CONNFAIL, O_COUNT };
static const char *const outcome_name[O_COUNT] = {"ok", "wrong", "served", "refused",
						  "timeout", "connfail"};

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
	struct cl_conn cl;       /* out: the bytes below; t0: the start */
	int target;
	enum kind kind;
	int variant;
	bool expect_served, shut, no_token;
	struct sockaddr_in src;
	char expect[64];
	unsigned char out[OUT_MAX];
	size_t cuts[MAX_CUTS];   /* write boundaries inside out[], ascending */
	int ncuts, delay_ms[MAX_CUTS];
};

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

static void add_target(const char *spec, bool haproxy)
{
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof targets[0].name ||
	    ntargets == MAX_TARGETS) {
		die("bad target \"%s\"", spec);
	}
	struct target *t = &targets[ntargets++];
	memcpy(t->name, spec, (size_t)(colon - spec));
	t->port = (unsigned)parse_num(colon + 1, 1, 65535, "port");
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
		case 'n': opt.count = parse_num(optarg, 1, 100000000, "count"); break;
		case 'j': opt.parallel = parse_num(optarg, 1, 4096, "parallel"); break;
		case 'b': opt.base = parse_num(optarg, 0, 1000000000, "base"); break;
		case 's': opt.seed = (uint64_t)parse_num(optarg, 0, 1L << 62, "seed"); break;
		case 't': opt.timeout_ms = parse_num(optarg, 100, 3600000, "timeout"); break;
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

struct buf {
	unsigned char *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		die("payload too large");
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
		die("line too long");
	}
	put(b, tmp, (size_t)n);
}

static void put8(struct buf *b, unsigned v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void put16(struct buf *b, unsigned v) { put8(b, v >> 8); put8(b, v & 255); }

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
	put(b, pp_v2_sig, 12), put8(b, vercmd), put8(b, fam), put16(b, 0);
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
	long i = c->cl.idx;
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
	struct rng r = {mix(opt.seed * 0x100000001b3ULL ^ (uint64_t)c->cl.idx)};
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
	struct claddr a = header_client(c->cl.idx);
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
		fake_hdr(&b, c->cl.idx, dport, c->variant);
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
	c->cl.outlen = b.n;
}

/* Connected: the expected address if it is the connection's own, and the token. */
static void add_token(struct cl_conn *cl)
{
	struct conn *c = (struct conn *)cl;
	if (!c->expect[0]) {
		na_format_name(cl->fd, 0, c->expect, sizeof c->expect);
	}
	if (c->kind == K_LATE || c->no_token)
		return;
	struct buf b = {c->out, cl->outlen, OUT_MAX};
	putf(&b, "SOAK %ld %s %s/%d\n", cl->idx, c->expect, kind_name[c->kind], c->variant);
	cl->outlen = b.n;
}

/* ---- connections (the hooks of the client engine) ---- */

static socklen_t start(struct cl_conn *cl, struct sockaddr_storage *dst)
{
	struct conn *c = (struct conn *)cl;
	plan(c);
	source_of(c);
	cl->out = c->out;
	struct sockaddr_in *d = (struct sockaddr_in *)dst;
	*d = (struct sockaddr_in){.sin_family = AF_INET,
				  .sin_port = htons((uint16_t)targets[c->target].port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	return sizeof *d;
}

static int bind_source(struct cl_conn *cl)
{
	struct conn *c = (struct conn *)cl;
	int one = 1;
	setsockopt(cl->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	return bind(cl->fd, (struct sockaddr *)&c->src, sizeof c->src);
}

/* End of the next write: the next cut, or everything. */
static size_t write_end(const struct cl_conn *cl)
{
	const struct conn *c = (const struct conn *)cl;
	for (int k = 0; k < c->ncuts; k++)
		if (c->cuts[k] > cl->sent)
			return c->cuts[k];
	return cl->outlen;
}

/* After a write that ended at a cut: that cut's pause. */
static long pause_ms(const struct cl_conn *cl)
{
	const struct conn *c = (const struct conn *)cl;
	for (int k = 0; k < c->ncuts; k++)
		if (c->cuts[k] == cl->sent)
			return c->delay_ms[k];
	return 0;
}

static void sent_all(struct cl_conn *cl)
{
	if (((struct conn *)cl)->shut)
		shutdown(cl->fd, SHUT_WR);
}

static void violation(const struct conn *c, enum outcome o)
{
	if (violations_shown++ >= 20)
		return;
	char rep[CL_REPLY_KEEP * 4 + 1];
	escape_bytes(c->cl.reply, c->cl.got < CL_REPLY_KEEP ? c->cl.got : CL_REPLY_KEEP, rep,
		     sizeof rep, 0);
	printf("violation conn=%ld target=%s kind=%s/%d outcome=%s expected=%s reply=\"%s\"\n",
	       c->cl.idx, targets[c->target].name, kind_name[c->kind], c->variant,
	       outcome_name[o], c->expect_served ? c->expect : "refused", rep);
}

/* Ended by the server (EOF or reset: served or refused, by the reply), by the timeout or
 * at the connect. */
static void finish(struct cl_conn *cl, int how)
{
	struct conn *c = (struct conn *)cl;
	enum outcome o = how == CL_TIMEOUT ? O_TIMEOUT : how == CL_CONNFAIL ? O_CONNFAIL : O_OK;
	if (o == O_OK && cl->got) {        /* ended with a reply: served */
		char want[80];
		int n = snprintf(want, sizeof want, "OK %s\n", c->expect);
		if (!c->expect_served)
			o = O_SERVED;
		else if ((size_t)n != cl->got || memcmp(want, cl->reply, cl->got) != 0)
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
		fprintf(rec, "%ld %s %s/%d %c %s %s\n", cl->idx, t->name, kind_name[c->kind],
			c->variant, c->expect_served ? 's' : 'r', c->expect[0] ? c->expect : "-",
			outcome_name[o]);
}

static const struct cl_ops ops = {start, bind_source, add_token, write_end, pause_ms,
				  sent_all, finish};

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (opt.records && !(rec = fopen(opt.records, "w")))
		die_errno("records file");
	cl_run(&ops, sizeof(struct conn), opt.parallel, opt.count, opt.base, opt.timeout_ms);
	if (rec && fclose(rec) != 0)
		die_errno("records file");
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
