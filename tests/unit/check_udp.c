/* Unit tests for datagrams: the flow table (shim/proto/udp_map.h), the per-datagram decision
 * (shim/proto/dgram.h) and the v2 DGRAM builder. Addresses are documentation ranges: nothing
 * here touches a network. */
#include "config.h"
#include "dgram.h"
#include "pp.h"
#include "udp_map.h"
#include "unit.h"

/* A table of cap flows, the header and its storage in one block (freed with free()).
 * The storage is filled with garbage: init must not rely on zeroed memory. */
static struct ps_udpmap *map_of(uint32_t cap)
{
	size_t head = (sizeof(struct ps_udpmap) + 15) & ~(size_t)15;
	struct ps_udpmap *m = malloc(head + ps_udpmap_size(cap));
	ck_assert_ptr_nonnull(m);
	memset((char *)m + head, 0xa5, ps_udpmap_size(cap));
	ps_udpmap_init(m, cap, (char *)m + head);
	return m;
}

static struct ps_udpmap *new_map(void)
{
	return map_of(4096);
}

static bool same_addr(const struct ps_addr *a, const struct ps_addr *b)
{
	return a->family == b->family && a->port == b->port && !memcmp(a->ip, b->ip, 16);
}

/* Client i of a simulated proxy: distinct address and port for every i. */
static struct ps_addr client(unsigned i)
{
	struct ps_addr a = mkaddr("198.51.100.0", (uint16_t)(10000 + i % 50000));
	a.ip[2] = (uint8_t)(i >> 8);
	a.ip[3] = (uint8_t)i;
	return a;
}

START_TEST(test_map_learn_lookup)
{
	struct ps_udpmap *m = new_map();
	struct ps_addr px = mkaddr("192.0.2.1", 5000), px2 = mkaddr("192.0.2.2", 5000);
	struct ps_addr c1 = mkaddr("198.51.100.7", 1234), c2 = mkaddr("2001:db8::7", 1234);
	struct ps_addr got;
	ck_assert(!ps_udpmap_learn(m, &px, &c1, false, 0, 1000, NULL));
	ck_assert(!ps_udpmap_learn(m, &px, &c2, false, 0, 1000, NULL));
	ck_assert(ps_udpmap_find_proxy(m, &c1, 10, 1000, &got) && same_addr(&got, &px));
	ck_assert(ps_udpmap_find_proxy(m, &c2, 10, 1000, &got) && same_addr(&got, &px));
	/* `every`: one proxy port serves many clients; the latest introduction wins */
	ck_assert(!ps_udpmap_learn(m, &px2, &c1, false, 20, 1000, NULL));
	ck_assert(ps_udpmap_find_proxy(m, &c1, 30, 1000, &got) && same_addr(&got, &px2));
	ck_assert_uint_eq(m->count, 2);
	struct ps_addr other = mkaddr("198.51.100.7", 1235);
	ck_assert(!ps_udpmap_find_proxy(m, &other, 30, 1000, &got));
	free(m);
}
END_TEST

START_TEST(test_map_first_mode)
{
	struct ps_udpmap *m = new_map();
	struct ps_addr px = mkaddr("192.0.2.1", 6000);
	struct ps_addr c1 = mkaddr("198.51.100.1", 1), c2 = mkaddr("198.51.100.2", 2);
	struct ps_addr got;
	ps_udpmap_learn(m, &px, &c1, true, 0, 1000, NULL);
	ck_assert(ps_udpmap_client(m, &px, 1, 1000, &got) && same_addr(&got, &c1));
	/* A new header on the same proxy port: the port's flow now belongs to c2 */
	ps_udpmap_learn(m, &px, &c2, true, 2, 1000, NULL);
	ck_assert(ps_udpmap_client(m, &px, 3, 1000, &got) && same_addr(&got, &c2));
	ck_assert(!ps_udpmap_find_proxy(m, &c1, 3, 1000, &got));
	ck_assert_uint_eq(m->count, 1);
	free(m);
}
END_TEST

START_TEST(test_map_idle)
{
	struct ps_udpmap *m = new_map();
	struct ps_addr px = mkaddr("192.0.2.1", 6000), c = mkaddr("198.51.100.1", 1), got;
	ps_udpmap_learn(m, &px, &c, true, 100, 300, NULL);
	/* received datagrams refresh: 100 -> 350 -> 600 stays alive, then 300 ms of
	 * silence ends it */
	ck_assert(ps_udpmap_client(m, &px, 350, 300, &got));
	ck_assert(!ps_udpmap_learn(m, &px, &c, true, 600, 300, NULL));
	ck_assert(ps_udpmap_peek_client(m, &px, 899, 300, &got));
	ck_assert(!ps_udpmap_peek_client(m, &px, 900, 300, &got));
	ck_assert(!ps_udpmap_client(m, &px, 900, 300, &got));
	ck_assert_uint_eq(m->count, 0);
	free(m);
}
END_TEST

/* Replies never keep a flow alive (only datagrams received through
 * the proxy do): lookups for sends, however frequent, leave the flow to expire at
 * learn + idle, and a lookup after that fails even before anything expires it. */
START_TEST(test_map_send_never_refreshes)
{
	struct ps_udpmap *m = new_map();
	struct ps_addr px = mkaddr("192.0.2.1", 5000), c = mkaddr("198.51.100.1", 1), got;
	ck_assert(!ps_udpmap_learn(m, &px, &c, false, 1000, 300, NULL));
	for (uint64_t t = 1000; t < 1300; t += 10)  /* a heartbeat every 10 ms */
		ck_assert(ps_udpmap_find_proxy(m, &c, t, 300, &got) && same_addr(&got, &px));
	ck_assert(ps_udpmap_find_proxy(m, &c, 1299, 300, &got));
	ck_assert(!ps_udpmap_find_proxy(m, &c, 1300, 300, &got));
	ck_assert(!ps_udpmap_find_proxy(m, &c, 5000, 300, &got));
	ck_assert_uint_eq(m->newest, m->oldest);   /* the recency list was never touched */
	ck_assert_uint_eq(m->f[m->newest].last_ms, 1000);
	/* a received datagram brings it back with a new life */
	ck_assert(!ps_udpmap_learn(m, &px, &c, false, 5000, 300, NULL));
	ck_assert(ps_udpmap_find_proxy(m, &c, 5299, 300, &got));
	ck_assert(!ps_udpmap_find_proxy(m, &c, 5300, 300, &got));
	ck_assert_uint_eq(m->count, 1);
	free(m);
}
END_TEST

/* A full table evicts its least recently used flow, reports it, and never grows:
 * at the configured capacity (PROXYSHIM_UDP_FLOWS' bounds and default) and past it. */
static const uint32_t caps[] = {16, 100, 4096, 70000};

START_TEST(test_map_capacity)
{
	uint32_t cap = caps[_i];
	struct ps_udpmap *m = map_of(cap);
	struct ps_addr px = mkaddr("192.0.2.1", 7000), got;
	struct ps_udpflow gone;
	for (unsigned i = 0; i < cap; i++) {
		struct ps_addr c = client(i);
		ck_assert(!ps_udpmap_learn(m, &px, &c, false, i, 1u << 30, NULL));
	}
	ck_assert_uint_eq(m->count, cap);
	for (unsigned i = 0; i < cap; i++) {
		struct ps_addr c = client(i);
		ck_assert_msg(ps_udpmap_find_proxy(m, &c, cap, 1u << 30, &got), "flow %u", i);
	}
	struct ps_addr c0 = client(0), c1 = client(1), extra = client(cap);
	ck_assert(!ps_udpmap_learn(m, &px, &c0, false, cap, 1u << 30, NULL));  /* c0 recent */
	ck_assert(ps_udpmap_learn(m, &px, &extra, false, cap + 1, 1u << 30, &gone));
	ck_assert(same_addr(&gone.client, &c1));
	ck_assert(ps_udpmap_find_proxy(m, &c0, cap + 2, 1u << 30, &got));
	ck_assert(!ps_udpmap_find_proxy(m, &c1, cap + 2, 1u << 30, &got));
	ck_assert(ps_udpmap_find_proxy(m, &extra, cap + 2, 1u << 30, &got));
	ck_assert_uint_eq(m->count, cap);
	ck_assert_uint_eq(m->evicted, 1);
	/* far past it: every new flow evicts the oldest, the newest cap all found */
	for (unsigned i = cap + 1; i < 3 * cap; i++) {
		struct ps_addr c = client(i);
		ck_assert(ps_udpmap_learn(m, &px, &c, false, cap + 2 + i, 1u << 30, &gone));
	}
	for (unsigned i = 0; i < 3 * cap; i++) {
		struct ps_addr c = client(i);
		ck_assert_msg(ps_udpmap_find_proxy(m, &c, 4 * cap + 2, 1u << 30, &got) ==
			      (i >= 2 * cap), "flow %u", i);
	}
	ck_assert_uint_eq(m->count, cap);
	ck_assert_uint_eq(m->evicted, 2 * cap);
	ck_assert_uint_le(m->used, cap);
	ck_assert_uint_le(m->base + m->split, m->max_buckets);
	free(m);
}
END_TEST

/* The indexes grow with the flows in use, not with the capacity: a table for 1,000,000
 * flows holding 1,000 uses about 2,000 buckets of each index and the first 1,000 flow
 * slots (the pages a lazily mapped storage pays for); every flow is found through both
 * indexes while they grow, and after the table is refilled. */
START_TEST(test_map_grows_with_use)
{
	struct ps_udpmap *m = map_of(1000000);
	struct ps_addr got;
	ck_assert_uint_eq(m->base + m->split, 16);
	for (unsigned i = 0; i < 1000; i++) {
		struct ps_addr c = client(i), px = client(50000 + i);
		ck_assert(!ps_udpmap_learn(m, &px, &c, true, 0, 1u << 30, NULL));
		ck_assert_uint_ge(m->base + m->split, 2 * m->count);
		ck_assert_uint_le(m->base + m->split, 2 * m->count + 16);
	}
	ck_assert_uint_eq(m->used, 1000);
	for (unsigned i = 0; i < 1000; i++) {
		struct ps_addr c = client(i), px = client(50000 + i);
		ck_assert(ps_udpmap_find_proxy(m, &c, 1, 1u << 30, &got) && same_addr(&got, &px));
		ck_assert(ps_udpmap_peek_client(m, &px, 1, 1u << 30, &got) && same_addr(&got, &c));
	}
	/* all expire; a new generation reuses the same slots and buckets */
	for (unsigned i = 0; i < 1000; i++) {
		struct ps_addr c = client(1000 + i), px = client(50000 + i);
		ck_assert(!ps_udpmap_learn(m, &px, &c, true, 1u << 30, 1u << 29, NULL));
	}
	ck_assert_uint_eq(m->count, 1000);
	ck_assert_uint_eq(m->used, 1000);
	ck_assert_uint_le(m->base + m->split, 2016);
	for (unsigned i = 0; i < 1000; i++) {
		struct ps_addr c = client(1000 + i), px = client(50000 + i), old = client(i);
		ck_assert(ps_udpmap_find_proxy(m, &c, 1u << 30, 1u << 29, &got) && same_addr(&got, &px));
		ck_assert(!ps_udpmap_find_proxy(m, &old, 1u << 30, 1u << 29, &got));
	}
	free(m);
}
END_TEST

/* Expired slots are reused: ten generations of 3000 flows never exceed the capacity
 * and never evict. */
START_TEST(test_map_reuse)
{
	struct ps_udpmap *m = new_map();
	struct ps_addr px = mkaddr("192.0.2.1", 7000), got;
	for (unsigned gen = 0; gen < 10; gen++) {
		uint64_t t = gen * 1000;
		for (unsigned i = 0; i < 3000; i++) {
			struct ps_addr c = client(gen * 3000 + i);
			ck_assert(!ps_udpmap_learn(m, &px, &c, false, t, 500, NULL));
		}
		struct ps_addr last = client(gen * 3000 + 2999);
		ck_assert(ps_udpmap_find_proxy(m, &last, t, 500, &got));
		ck_assert_uint_eq(m->count, 3000);
	}
	ck_assert_uint_le(m->used, m->cap);
	ck_assert_uint_eq(m->evicted, 0);
	free(m);
}
END_TEST

/* gen moves exactly when what a reader learned may no longer hold: a client's proxy
 * changed, or a flow went (idled out, evicted, or replaced in `first` mode); refreshing
 * a flow, or learning a new one, leaves it. */
START_TEST(test_map_gen)
{
	struct ps_udpmap *m = map_of(2);
	struct ps_addr px = mkaddr("192.0.2.1", 7000), px2 = mkaddr("192.0.2.2", 7000);
	struct ps_addr c1 = client(1), c2 = client(2), c3 = client(3);
	uint64_t g = m->gen;
	ps_udpmap_learn(m, &px, &c1, false, 0, 500, NULL);
	ps_udpmap_learn(m, &px, &c2, false, 0, 500, NULL);
	ps_udpmap_learn(m, &px, &c1, false, 10, 500, NULL);
	ck_assert_uint_eq(m->gen, g);
	ps_udpmap_learn(m, &px2, &c1, false, 20, 500, NULL);  /* c1 moved */
	ck_assert_uint_gt(m->gen, g);
	g = m->gen;
	ps_udpmap_learn(m, &px, &c3, false, 30, 500, NULL);  /* full: c2 evicted */
	ck_assert_uint_gt(m->gen, g);
	g = m->gen;
	ps_udpmap_learn(m, &px, &c3, false, 600, 500, NULL);  /* c1 idled out */
	ck_assert_uint_gt(m->gen, g);
	g = m->gen;
	ps_udpmap_learn(m, &px, &c1, true, 610, 500, NULL);   /* `first`: px now carries c1 */
	ck_assert_uint_gt(m->gen, g);
	free(m);
}
END_TEST

/* ---- the decision ---- */

static struct ps_config cfg;
static const char *env_policy, *env_untrusted, *env_mode;

static const char *fake_getenv(const char *name)
{
	if (!strcmp(name, "PROXYSHIM_TRUSTED"))
		return "192.0.2.1/32,2001:db8::1";
	if (!strcmp(name, "PROXYSHIM_UDP_PORTS"))
		return "53";
	if (!strcmp(name, "PROXYSHIM_UDP_IDLE_MS"))
		return "300";
	if (!strcmp(name, "PROXYSHIM_POLICY"))
		return env_policy;
	if (!strcmp(name, "PROXYSHIM_UNTRUSTED"))
		return env_untrusted;
	if (!strcmp(name, "PROXYSHIM_UDP_MODE"))
		return env_mode;
	return NULL;
}

static void configure(const char *policy, const char *untrusted, const char *mode)
{
	char err[256];
	env_policy = policy;
	env_untrusted = untrusted;
	env_mode = mode;
	ck_assert_msg(ps_config_parse(&cfg, fake_getenv, err, sizeof(err)) == 0, "%s", err);
}

enum kind { K_NONE, K_UDP4, K_UDP6, K_MAPPED, K_LOCAL, K_TCP4, K_V1, K_TRUNC, K_BADCRC,
	    K_SIGPREFIX, K_UNSPEC, K_LOCAL_BLOCK, K_LOCAL_BADCRC };

/* A datagram of the given kind followed by "payload" (kinds without a payload noted). */
static size_t datagram(enum kind k, uint8_t *buf)
{
	struct ps_addr s4 = mkaddr("198.51.100.9", 4000), d4 = mkaddr("203.0.113.1", 53);
	struct ps_addr s6 = mkaddr("2001:db8::9", 4000), d6 = mkaddr("2001:db8::53", 53);
	struct ps_addr sm = mkaddr("::ffff:198.51.100.9", 4000), dm = mkaddr("::1", 53);
	size_t n = 0;
	switch (k) {
	case K_NONE: break;
	case K_UDP4: n = pp_build_v2_dgram(buf, 256, &s4, &d4); break;
	case K_UDP6: n = pp_build_v2_dgram(buf, 256, &s6, &d6); break;
	case K_MAPPED: n = pp_build_v2_dgram(buf, 256, &sm, &dm); break;
	case K_LOCAL: n = pp_build_v2_dgram(buf, 256, NULL, NULL); break;
	case K_TCP4: n = pp_build_v2(buf, 256, &s4, &d4, NULL, 0, false); break;
	case K_V1: n = pp_build_v1(buf, 256, &s4, &d4); break;
	case K_TRUNC: n = pp_build_v2_dgram(buf, 256, &s4, &d4) - 3; break;
	case K_BADCRC:
		n = pp_build_v2(buf, 256, &s4, &d4, NULL, 0, true);
		buf[13] = 0x12;  /* a UDP family under a CRC computed for TCP */
		break;
	case K_SIGPREFIX: memcpy(buf, "\r\n\r\n", 4); return 4;
	case K_UNSPEC:
		n = pp_build_v2_dgram(buf, 256, NULL, NULL);
		buf[12] = 0x21;  /* PROXY with family UNSPEC: no addresses */
		break;
	case K_LOCAL_BLOCK:  /* as Netty: LOCAL, family 00, an IPv4 block that is no TLV list */
		n = pp_build_v2_dgram(buf, 256, &s4, &d4);
		buf[12] = 0x20;
		buf[13] = 0x00;
		break;
	case K_LOCAL_BADCRC:
		n = pp_build_v2(buf, 256, NULL, NULL, NULL, 0, true);
		buf[n - 1] ^= 1;
		break;
	}
	if (k == K_TRUNC)
		return n;
	memcpy(buf + n, "payload", 7);
	return n + 7;
}

static const struct {
	const char *policy, *untrusted, *mode;
	bool trusted;
	enum kind kind;
	enum ps_dgram_verdict want;
	const char *from;    /* DELIVER: the reported sender (NULL: the real one) */
} judge_cases[] = {
	{ NULL, NULL, NULL, true, K_UDP4, PS_DGRAM_DELIVER, "198.51.100.9" },
	{ NULL, NULL, NULL, true, K_UDP6, PS_DGRAM_DELIVER, "2001:db8::9" },
	{ NULL, NULL, NULL, true, K_MAPPED, PS_DGRAM_DELIVER, "198.51.100.9" },
	{ NULL, NULL, NULL, true, K_LOCAL, PS_DGRAM_DELIVER, NULL },
	{ NULL, NULL, NULL, true, K_TCP4, PS_DGRAM_DELIVER, NULL },
	{ NULL, NULL, NULL, true, K_UNSPEC, PS_DGRAM_DELIVER, NULL },
	/* LOCAL is accepted whatever its block holds; only a wrong CRC32C refuses it */
	{ NULL, NULL, NULL, true, K_LOCAL_BLOCK, PS_DGRAM_DELIVER, NULL },
	{ NULL, NULL, "first", true, K_LOCAL_BLOCK, PS_DGRAM_DELIVER, NULL },
	{ NULL, NULL, NULL, true, K_LOCAL_BADCRC, PS_DGRAM_DROP, NULL },
	{ NULL, NULL, NULL, true, K_NONE, PS_DGRAM_DROP, NULL },
	{ NULL, NULL, NULL, true, K_SIGPREFIX, PS_DGRAM_DROP, NULL },
	{ NULL, NULL, NULL, true, K_V1, PS_DGRAM_DROP, NULL },
	{ NULL, NULL, NULL, true, K_TRUNC, PS_DGRAM_DROP, NULL },
	{ NULL, NULL, NULL, true, K_BADCRC, PS_DGRAM_DROP, NULL },
	{ "optional", NULL, NULL, true, K_NONE, PS_DGRAM_DELIVER, NULL },
	{ "optional", NULL, NULL, true, K_SIGPREFIX, PS_DGRAM_DELIVER, NULL },
	{ "optional", NULL, NULL, true, K_V1, PS_DGRAM_DROP, NULL },
	{ "optional", NULL, NULL, true, K_UDP4, PS_DGRAM_DELIVER, "198.51.100.9" },
	/* untrusted: never honoured; under pass the header is the application's data */
	{ NULL, NULL, NULL, false, K_UDP4, PS_DGRAM_DELIVER, NULL },
	{ NULL, NULL, NULL, false, K_V1, PS_DGRAM_DELIVER, NULL },
	{ NULL, NULL, NULL, false, K_NONE, PS_DGRAM_DELIVER, NULL },
	{ NULL, "reject", NULL, false, K_UDP4, PS_DGRAM_DROP, NULL },
	{ NULL, "reject", NULL, false, K_LOCAL, PS_DGRAM_DROP, NULL },
	{ NULL, "reject", NULL, false, K_V1, PS_DGRAM_DROP, NULL },
	{ NULL, "reject", NULL, false, K_NONE, PS_DGRAM_DELIVER, NULL },
	{ NULL, "reject", NULL, false, K_SIGPREFIX, PS_DGRAM_DELIVER, NULL },
	{ "optional", "reject", "first", false, K_UDP6, PS_DGRAM_DROP, NULL },
	{ NULL, NULL, "first", true, K_UDP4, PS_DGRAM_DELIVER, "198.51.100.9" },
	{ NULL, NULL, "first", true, K_NONE, PS_DGRAM_DROP, NULL },
	{ "optional", NULL, "first", true, K_NONE, PS_DGRAM_DELIVER, NULL },
};

START_TEST(test_judge)
{
	uint8_t buf[512];
	struct ps_dgram d;
	struct ps_udpmap *m = new_map();
	struct ps_addr real = judge_cases[_i].trusted ? mkaddr("192.0.2.1", 9999)
						      : mkaddr("192.0.2.66", 9999);
	configure(judge_cases[_i].policy, judge_cases[_i].untrusted, judge_cases[_i].mode);
	size_t n = datagram(judge_cases[_i].kind, buf);
	enum ps_dgram_verdict v = ps_dgram_judge(&cfg, m, AF_INET6, &real, buf, n, 0, true, &d);
	ck_assert_msg(v == judge_cases[_i].want, "verdict %d, want %d (%s)", v,
		      judge_cases[_i].want, v == PS_DGRAM_DROP ? d.why : "");
	if (v == PS_DGRAM_DROP)
		ck_assert(d.why && *d.why);
	if (v != PS_DGRAM_DELIVER)
		goto out;
	struct ps_addr want = judge_cases[_i].from ? mkaddr(judge_cases[_i].from, 4000) : real;
	ck_assert_msg(same_addr(&d.from, &want), "wrong sender");
	bool kept_bytes = !judge_cases[_i].trusted ||
			  judge_cases[_i].kind == K_NONE || judge_cases[_i].kind == K_SIGPREFIX;
	ck_assert_uint_eq(d.off, kept_bytes ? 0 : n - 7);
	/* only a UDP address block teaches a flow */
	ck_assert_uint_eq(m->count, judge_cases[_i].from ? 1 : 0);
out:
	free(m);
}
END_TEST

/* `first`: a header alone opens a flow the application never sees; headerless
 * datagrams from that proxy port are the client's until it idles out; a peek learns
 * nothing. */
START_TEST(test_judge_first_flow)
{
	uint8_t buf[512];
	struct ps_dgram d;
	struct ps_udpmap *m = new_map();
	struct ps_addr px = mkaddr("192.0.2.1", 7777), px2 = mkaddr("192.0.2.1", 7778);
	struct ps_addr c = mkaddr("198.51.100.9", 4000);
	configure(NULL, NULL, "first");
	size_t hl = datagram(K_UDP4, buf) - 7;
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET6, &px, buf, hl, 0, false, &d), PS_DGRAM_ABSORB);
	ck_assert_uint_eq(m->count, 0);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET6, &px, buf, hl, 0, true, &d), PS_DGRAM_ABSORB);
	ck_assert_uint_eq(m->count, 1);
	/* the learned flow names its client (the reply cache is filled from it) */
	ck_assert(d.learned && same_addr(&d.from, &c));
	memcpy(buf, "query", 5);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET6, &px, buf, 5, 200, true, &d), PS_DGRAM_DELIVER);
	ck_assert(same_addr(&d.from, &c) && d.off == 0);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET6, &px2, buf, 5, 200, true, &d), PS_DGRAM_DROP);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET6, &px, buf, 5, 499, false, &d), PS_DGRAM_DELIVER);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET6, &px, buf, 5, 500, true, &d), PS_DGRAM_DROP);
	/* `every`: the same header alone is an empty datagram for the application */
	configure(NULL, NULL, "every");
	datagram(K_UDP4, buf);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET6, &px, buf, hl, 0, true, &d), PS_DGRAM_DELIVER);
	ck_assert_uint_eq(d.off, hl);
	free(m);
}
END_TEST

/* An IPv4 socket cannot report an IPv6 client: refused, and a `first` flow already
 * open on that proxy port is not disturbed. */
START_TEST(test_judge_v6_on_v4)
{
	uint8_t buf[512];
	struct ps_dgram d;
	struct ps_udpmap *m = new_map();
	struct ps_addr px = mkaddr("192.0.2.1", 7777), c4 = mkaddr("198.51.100.9", 4000);
	struct ps_addr c6 = mkaddr("2001:db8::9", 4000), d6 = mkaddr("2001:db8::53", 53);
	struct ps_addr d4 = mkaddr("203.0.113.1", 53);
	configure(NULL, NULL, "first");
	size_t n = pp_build_v2_dgram(buf, sizeof(buf), &c4, &d4);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET, &px, buf, n, 0, true, &d),
			 PS_DGRAM_ABSORB);
	n = pp_build_v2_dgram(buf, sizeof(buf), &c6, &d6);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET, &px, buf, n, 1, true, &d),
			 PS_DGRAM_DROP);
	memcpy(buf, "query", 5);
	ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET, &px, buf, 5, 2, true, &d),
			 PS_DGRAM_DELIVER);
	ck_assert(same_addr(&d.from, &c4));
	free(m);
}
END_TEST

/* The decision learns into the table it is given, evicting at that table's capacity. */
START_TEST(test_judge_evicts)
{
	uint8_t buf[512];
	struct ps_dgram d;
	uint32_t cap = caps[_i];
	struct ps_udpmap *m = map_of(cap);
	struct ps_addr px = mkaddr("192.0.2.1", 7777), dst = mkaddr("203.0.113.1", 53);
	configure(NULL, NULL, NULL);
	for (unsigned i = 0; i <= cap; i++) {
		struct ps_addr c = client(i);
		size_t n = pp_build_v2_dgram(buf, sizeof(buf), &c, &dst);
		ck_assert_int_eq(ps_dgram_judge(&cfg, m, AF_INET6, &px, buf, n, 0, true, &d),
				 PS_DGRAM_DELIVER);
		ck_assert(d.evicted == (i == cap));
	}
	struct ps_addr first = client(0);
	ck_assert(same_addr(&d.gone.client, &first));
	free(m);
}
END_TEST

/* The DGRAM builder: families 0x12/0x22, parsed back to the same endpoints. */
START_TEST(test_build_dgram)
{
	static const char *const pairs[][2] = {
		{ "192.0.2.10", "203.0.113.20" }, { "2001:db8::10", "2001:db8::20" },
		{ "::ffff:192.0.2.10", "::ffff:203.0.113.20" },
	};
	uint8_t buf[128];
	struct pp_header h;
	struct ps_addr s = mkaddr(pairs[_i][0], 1111), d = mkaddr(pairs[_i][1], 2222);
	size_t n = pp_build_v2_dgram(buf, sizeof(buf), &s, &d);
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(pp_parse(buf, n, &h), PP_DONE);
	ck_assert_uint_eq(h.len, n);
	ck_assert_uint_eq(h.fam, _i == 1 ? 0x22 : 0x12);
	ck_assert(h.has_dgram_addrs && !h.has_addrs);
	ps_addr_unmap(&s);
	ps_addr_unmap(&d);
	ck_assert(same_addr(&h.src, &s) && same_addr(&h.dst, &d));
	ck_assert_uint_eq(pp_build_v2_dgram(buf, n - 1, &s, &d), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("udp");
	add_loop(s, "map learn and lookup", test_map_learn_lookup, 1);
	add_loop(s, "map first mode", test_map_first_mode, 1);
	add_loop(s, "map idle", test_map_idle, 1);
	add_loop(s, "map sends never refresh", test_map_send_never_refreshes, 1);
	add_loop(s, "map capacity", test_map_capacity, N(caps));
	add_loop(s, "map grows with use", test_map_grows_with_use, 1);
	add_loop(s, "map reuse", test_map_reuse, 1);
	add_loop(s, "map gen", test_map_gen, 1);
	add_loop(s, "judge", test_judge, N(judge_cases));
	add_loop(s, "judge first flow", test_judge_first_flow, 1);
	add_loop(s, "judge evicts", test_judge_evicts, N(caps));
	add_loop(s, "judge v6 client on v4 socket", test_judge_v6_on_v4, 1);
	add_loop(s, "build dgram", test_build_dgram, 3);
	return run_suite(s);
}
