/* Unit tests for the trusted-network list and the port set (shim/proto/cidr.h). */
#include <stdio.h>

#include "cidr.h"
#include "unit.h"

/* ---- netlist ------------------------------------------------------------------ */

static const struct {
	const char *list, *peer;
	bool match;
} match_cases[] = {
	{ "192.0.2.1", "192.0.2.1", true },
	{ "192.0.2.1", "192.0.2.2", false },
	{ "192.0.2.1/32", "192.0.2.1", true },
	{ "192.0.2.1/32", "192.0.2.0", false },
	{ "192.0.2.128/25", "192.0.2.200", true },
	{ "192.0.2.128/25", "192.0.2.127", false },
	{ "10.0.0.0/8", "10.255.255.255", true },
	{ "10.0.0.0/8", "11.0.0.0", false },
	{ "10.0.0.0/8", "9.255.255.255", false },
	{ "0.0.0.0/0", "198.51.100.7", true },
	{ "0.0.0.0/0", "2001:db8::1", false },
	{ "127.0.0.1", "127.0.0.1", true },
	/* An IPv4 client on a dual-stack socket is seen as ::ffff:a.b.c.d. */
	{ "10.0.0.0/8", "::ffff:10.1.2.3", true },
	{ "10.1.2.3", "::ffff:10.1.2.3", true },
	{ "10.1.2.3", "::ffff:10.1.2.4", false },
	{ "192.0.2.0/24", "::ffff:198.51.100.1", false },
	{ "0.0.0.0/0", "::ffff:198.51.100.1", true },
	{ "2001:db8::/32", "2001:db8:ffff::1", true },
	{ "2001:db8::/32", "2001:db9::1", false },
	{ "2001:db8::/32", "192.0.2.1", false },
	{ "2001:db8::/32", "32.1.13.184", false },  /* 20 01 0d b8 as IPv4 */
	{ "2001:db8::/33", "2001:db8:7fff::1", true },
	{ "2001:db8::/33", "2001:db8:8000::1", false },
	{ "2001:db8::1/128", "2001:db8::1", true },
	{ "2001:db8::1/128", "2001:db8::2", false },
	{ "2001:db8::1", "2001:db8::1", true },
	{ "::/0", "2001:db8::1", true },
	/* An IPv6 network never covers IPv4 peers; a v4-mapped one is an IPv4 network. */
	{ "::/0", "192.0.2.1", false },
	{ "::/0", "::ffff:192.0.2.1", false },
	{ "::/64", "127.0.0.1", false },
	{ "::ffff:192.0.2.0/120", "192.0.2.7", true },
	{ "::ffff:192.0.2.0/120", "::ffff:192.0.2.7", true },
	{ "::ffff:192.0.2.0/120", "2001:db8::7", false },
	{ "::1", "::1", true },
	{ "::1", "127.0.0.1", false },
	{ "*", "192.0.2.1", true },
	{ "*", "2001:db8::1", true },
	{ "*", "::ffff:192.0.2.1", true },
	/* prefixes ending inside a byte and at the 64-bit word boundary */
	{ "128.0.0.0/1", "255.0.0.1", true },
	{ "128.0.0.0/1", "127.255.255.255", false },
	{ "192.0.2.2/31", "192.0.2.3", true },
	{ "192.0.2.2/31", "192.0.2.4", false },
	{ "2001:db8:0:1::/63", "2001:db8:0:1:ffff::1", true },
	{ "2001:db8:0:2::/63", "2001:db8:0:3::1", true },
	{ "2001:db8:0:2::/63", "2001:db8:0:4::1", false },
	{ "2001:db8:0:1::/64", "2001:db8:0:1:ffff:ffff:ffff:ffff", true },
	{ "2001:db8:0:1::/64", "2001:db8:0:0:ffff:ffff:ffff:ffff", false },
	{ "2001:db8:0:1::/65", "2001:db8:0:1:7fff::1", true },
	{ "2001:db8:0:1::/65", "2001:db8:0:1:8000::1", false },
	{ "2001:db8::/127", "2001:db8::1", true },
	{ "2001:db8::/127", "2001:db8::2", false },
	{ "198.51.100.0/24,2001:db8::/32", "198.51.100.9", true },
	{ "198.51.100.0/24,2001:db8::/32", "2001:db8::9", true },
	{ "198.51.100.0/24,2001:db8::/32", "192.0.2.9", false },
	{ "192.0.2.1,192.0.2.3", "192.0.2.3", true },
	{ "192.0.2.1,192.0.2.3", "192.0.2.2", false },
};

static void parse_ok(struct ps_netlist *l, const char *s)
{
	char err[256] = "";

	ck_assert_msg(ps_netlist_parse(l, s, err, sizeof err) == 0, "\"%s\" rejected: %s", s,
		      err);
}

START_TEST(test_netlist_match)
{
	static struct ps_netlist l;
	struct ps_addr a = mkaddr(match_cases[_i].peer, 4321);

	parse_ok(&l, match_cases[_i].list);
	ck_assert_msg(ps_netlist_match(&l, &a) == match_cases[_i].match,
		      "\"%s\" vs %s: want %s", match_cases[_i].list, match_cases[_i].peer,
		      match_cases[_i].match ? "match" : "no match");
}
END_TEST

/* Destinations (PROXYSHIM_SEND_TO): an address with a port is that address exactly. */
static const struct {
	const char *list, *dest;
	uint16_t port;
	bool match;
} dest_cases[] = {
	{ "192.0.2.1:80", "192.0.2.1", 80, true },
	{ "192.0.2.1:80", "192.0.2.1", 81, false },
	{ "192.0.2.1:80", "192.0.2.2", 80, false },
	{ "192.0.2.1:80", "192.0.3.1", 80, false },
	{ "192.0.2.1:80", "::ffff:192.0.2.1", 80, true },
	{ "[2001:db8::1]:443", "2001:db8::1", 443, true },
	{ "[2001:db8::1]:443", "2001:db8::2", 443, false },
	{ "[2001:db8::1]:443", "2001:db9::1", 443, false },
	{ "[2001:db8::1]:443", "192.0.2.1", 443, false },
	{ "192.0.2.0/24", "192.0.2.77", 9, true },
	{ "192.0.2.0/24", "192.0.3.77", 9, false },
	{ "192.0.2.0/24,[2001:db8::1]:443", "2001:db8::1", 443, true },
};

START_TEST(test_destlist_match)
{
	static struct ps_netlist l;
	char err[256] = "";
	struct ps_addr a = mkaddr(dest_cases[_i].dest, dest_cases[_i].port);

	ck_assert_msg(ps_destlist_parse(&l, dest_cases[_i].list, err, sizeof err) == 0,
		      "\"%s\" rejected: %s", dest_cases[_i].list, err);
	ck_assert_msg(ps_netlist_match(&l, &a) == dest_cases[_i].match,
		      "\"%s\" vs %s port %u: want %s", dest_cases[_i].list, dest_cases[_i].dest,
		      dest_cases[_i].port, dest_cases[_i].match ? "match" : "no match");
}
END_TEST

START_TEST(test_netlist_shape)
{
	static struct ps_netlist l;

	parse_ok(&l, "*");
	ck_assert(l.any);
	parse_ok(&l, "192.0.2.0/24,2001:db8::/32,::1");
	ck_assert(!l.any);
	ck_assert_uint_eq(l.n, 3);
}
END_TEST

/* What the reason must mention (NULL: only that there is one). Prefix lengths with a
 * leading zero are refused like the v1 header's numbers: "08" is not a length. */
static const struct {
	const char *list, *mention;
} bad_lists[] = {
	{ "", NULL },
	{ ",", NULL },
	{ ",,", NULL },
	{ "192.0.2.1,,198.51.100.1", NULL },
	{ "192.0.2.1,", NULL },
	{ ",192.0.2.1", NULL },
	{ "10.0.0.0/33", "32" },
	{ "10.0.0.0/99", "32" },
	{ "2001:db8::/129", "128" },
	{ "garbage", NULL },
	{ "10.0.0.0/", NULL },
	{ "/8", NULL },
	{ "10.0.0.0/8/8", NULL },
	{ "10.0.0.0/-1", NULL },
	{ "10.0.0.0/+8", NULL },
	{ "10.0.0.0/x", NULL },
	{ "10.0.0.0/08", NULL },
	{ "10.0.0.0/4294967304", NULL },  /* 2^32 + 8 */
	{ "10.0.0.256", NULL },
	{ "10.0.0", NULL },
	{ "10.0.0.1.2", NULL },
	{ "010.0.0.1", NULL },
	{ "2001:db8::1::2", NULL },
	{ "2001:db8::1%eth0", NULL },
	{ "[2001:db8::1]", NULL },
	{ "192.0.2.1;198.51.100.1", NULL },
};

START_TEST(test_netlist_bad)
{
	static struct ps_netlist l;
	char err[256];
	const char *s = bad_lists[_i].list;

	memset(err, 0, sizeof err);
	ck_assert_msg(ps_netlist_parse(&l, s, err, sizeof err) == -1, "\"%s\" accepted", s);
	ck_assert_msg(err[0] != '\0', "\"%s\": empty reason", s);
	ck_assert_msg(strstr(err, "PROXYSHIM") == NULL, "\"%s\": reason names a variable: %s",
		      s, err);
	if (bad_lists[_i].mention)
		ck_assert_msg(strstr(err, bad_lists[_i].mention) != NULL,
			      "\"%s\": reason \"%s\" does not mention %s", s, err,
			      bad_lists[_i].mention);
}
END_TEST

/* n distinct documentation addresses, comma-separated. */
static char *many_entries(unsigned n)
{
	char *s = malloc(n * 16 + 1), *p = s;

	ck_assert(s != NULL);
	for (unsigned i = 0; i < n; i++)
		p += sprintf(p, "%s%s.%u", i ? "," : "", i < 256 ? "192.0.2" : "198.51.100",
			     i % 256);
	return s;
}

/* PS_NETS_MAX entries fit; one more is an error, never a silent truncation. */
START_TEST(test_netlist_capacity)
{
	static struct ps_netlist l;
	char err[256] = "";
	char *full = many_entries(PS_NETS_MAX), *over = many_entries(PS_NETS_MAX + 1);
	int rc_full = ps_netlist_parse(&l, full, err, sizeof err);
	unsigned n_full = l.n;
	int rc_over = ps_netlist_parse(&l, over, err, sizeof err);

	free(full);
	free(over);
	ck_assert_msg(rc_full == 0, "%d entries rejected: %s", PS_NETS_MAX, err);
	ck_assert_uint_eq(n_full, PS_NETS_MAX);
	ck_assert_msg(rc_over == -1, "%d entries accepted", PS_NETS_MAX + 1);
	ck_assert(err[0] != '\0');
}
END_TEST

/* ---- portset ------------------------------------------------------------------ */

static const struct {
	const char *spec;
	uint16_t in[4], out[4];  /* ports inside and outside the set */
	unsigned nin, nout;      /* how many of in[] and out[] are used */
} port_cases[] = {
	{ "3306", { 3306 }, { 3305, 3307, 0, 65535 }, 1, 4 },
	{ "8000-8010", { 8000, 8005, 8010 }, { 7999, 8011, 0 }, 3, 3 },
	{ "1", { 1 }, { 0, 2, 65535 }, 1, 3 },
	{ "65535", { 65535 }, { 65534, 0 }, 1, 2 },
	{ "1-65535", { 1, 2, 32768, 65535 }, { 0 }, 4, 1 },
	{ "80,443,8000-8010", { 80, 443, 8000, 8010 }, { 81, 442, 8011 }, 4, 3 },
	{ "8000-8000", { 8000 }, { 7999, 8001 }, 1, 2 },
	{ "65530-65535", { 65530, 65535 }, { 65529 }, 2, 1 },
};

START_TEST(test_portset_good)
{
	static struct ps_portset p;
	char err[256] = "";
	const char *s = port_cases[_i].spec;

	ck_assert_msg(ps_portset_parse(&p, s, err, sizeof err) == 0, "\"%s\" rejected: %s", s,
		      err);
	for (unsigned k = 0; k < port_cases[_i].nin; k++)
		ck_assert_msg(ps_portset_has(&p, port_cases[_i].in[k]), "\"%s\" lacks %u", s,
			      port_cases[_i].in[k]);
	for (unsigned k = 0; k < port_cases[_i].nout; k++)
		ck_assert_msg(!ps_portset_has(&p, port_cases[_i].out[k]), "\"%s\" has %u", s,
			      port_cases[_i].out[k]);
}
END_TEST

/* A listening socket never has local port 0, so 0 is out of range like 65536. */
static const char *const bad_ports[] = {
	"0", "0-80", "70000", "65536", "10-5", "", "a", "80,", ",80", "80,,443", ",", "-5", "5-", "1-2-3",
	"80-70000", "4294967376", /* 2^32 + 80 */ "80x", "0x50",
};

START_TEST(test_portset_bad)
{
	static struct ps_portset p;
	char err[256];

	memset(err, 0, sizeof err);
	ck_assert_msg(ps_portset_parse(&p, bad_ports[_i], err, sizeof err) == -1,
		      "\"%s\" accepted", bad_ports[_i]);
	ck_assert_msg(err[0] != '\0', "\"%s\": empty reason", bad_ports[_i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cidr");

	add_loop(s, "netlist match", test_netlist_match, N(match_cases));
	add_loop(s, "destlist match", test_destlist_match, N(dest_cases));
	add_loop(s, "netlist shape", test_netlist_shape, 1);
	add_loop(s, "netlist bad", test_netlist_bad, N(bad_lists));
	add_loop(s, "netlist capacity", test_netlist_capacity, 1);
	add_loop(s, "portset good", test_portset_good, N(port_cases));
	add_loop(s, "portset bad", test_portset_bad, N(bad_ports));
	return run_suite(s);
}
