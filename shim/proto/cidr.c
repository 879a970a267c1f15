/* Trusted-network lists and port sets, parsed from comma-separated text. */
#include "cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In a list of several entries, says which one a reason is about. */
static void name_entry(const char *item, const char *list, char *err, size_t errlen)
{
	char reason[160];
	if (!strchr(list, ','))
		return;
	snprintf(reason, sizeof(reason), "%s", err);
	snprintf(err, errlen, "entry \"%s\": %s", item, reason);
}

/* Calls fn on each comma-separated element of s (spaces around it trimmed); an empty
 * element is an error. Stops at the first element fn rejects. */
static int each_item(const char *s, int (*fn)(void *ctx, const char *item, char *err,
					      size_t errlen),
		     void *ctx, char *err, size_t errlen)
{
	char item[64];
	const char *list = s;
	do {
		const char *end = strchr(s, ',');
		size_t n = end ? (size_t)(end - s) : strlen(s);
		const char *p = s;
		while (n && *p == ' ')
			p++, n--;
		while (n && p[n - 1] == ' ')
			n--;
		if (n == 0) {
			snprintf(err, errlen, "empty list entry");
			return -1;
		}
		if (n >= sizeof(item)) {
			snprintf(err, errlen, "entry too long");
			return -1;
		}
		memcpy(item, p, n);
		item[n] = 0;
		if (fn(ctx, item, err, errlen)) {
			name_entry(item, list, err, errlen);
			return -1;
		}
		s = end ? end + 1 : NULL;
	} while (s);
	return 0;
}

/* Strict decimal 0..max with no sign, no leading zero; -1 if not. */
static long decimal(const char *s, long max)
{
	long v = 0;
	if (!*s || (s[0] == '0' && s[1]))
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || (v = v * 10 + (*s - '0')) > max)
			return -1;
	}
	return v;
}

static void set_prefix(struct ps_net *net, unsigned plen)
{
	uint8_t mask[16] = {0};
	for (unsigned i = 0; i < plen; i++)
		mask[i / 8] |= (uint8_t)(0x80 >> i % 8);
	memcpy(net->mask, mask, sizeof(mask));
	net->plen = (uint8_t)plen;
}

static int add_net(void *ctx, const char *item, char *err, size_t errlen)
{
	struct ps_netlist *l = ctx;
	char text[64];
	if (!strcmp(item, "*")) {
		l->any = true;
		return 0;
	}
	if (l->n == PS_NETS_MAX) {
		snprintf(err, errlen, "more than %d entries", PS_NETS_MAX);
		return -1;
	}
	struct ps_net *net = &l->net[l->n];
	snprintf(text, sizeof(text), "%s", item);
	char *slash = strchr(text, '/');
	if (slash)
		*slash = 0;
	int v6 = strchr(text, ':') != NULL;
	struct ps_addr a = {.family = v6 ? AF_INET6 : AF_INET};
	if (inet_pton(a.family, text, a.ip) != 1) {
		snprintf(err, errlen, "not an IPv4 or IPv6 address or network");
		return -1;
	}
	long max = v6 ? 128 : 32, plen = slash ? decimal(slash + 1, max) : max;
	if (plen < 0) {
		snprintf(err, errlen, "prefix length must be 0..%ld", max);
		return -1;
	}
	ps_addr_to_v6(&a, net->ip);
	set_prefix(net, (unsigned)(v6 ? plen : plen + 96));
	/* ::/0 means every IPv6 peer, not every IPv4 one too; ::ffff:a.b.c.d/104 is IPv4. */
	net->v4 = !v6 || (net->plen >= 96 && ps_ip_is_v4mapped(net->ip));
	l->n++;
	return 0;
}

int ps_netlist_parse(struct ps_netlist *l, const char *s, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	return each_item(s, add_net, l, err, errlen);
}

/* Every datagram of a UDP listener is checked: two masked word compares. */
static bool in_net(const struct ps_net *net, const uint8_t ip[16])
{
	uint64_t a[2], n[2];
	memcpy(a, ip, sizeof(a));
	memcpy(n, net->ip, sizeof(n));
	return (((a[0] ^ n[0]) & net->mask[0]) | ((a[1] ^ n[1]) & net->mask[1])) == 0;
}

bool ps_netlist_match(const struct ps_netlist *l, const struct ps_addr *a)
{
	uint8_t ip[16];
	if (l->any)
		return true;
	ps_addr_to_v6(a, ip);
	bool v4 = ps_ip_is_v4mapped(ip);
	for (unsigned i = 0; i < l->n; i++)
		if (l->net[i].v4 == v4 && in_net(&l->net[i], ip) &&
		    (!l->net[i].port || l->net[i].port == a->port))
			return true;
	return false;
}

int ps_addrport_parse(struct ps_addr *a, const char *s, char *err, size_t errlen)
{
	char text[64];
	const char *colon = strrchr(s, ':');
	int v6 = s[0] == '[';
	size_t n = colon ? (size_t)(colon - s) : 0;
	memset(a, 0, sizeof(*a));
	if (!colon || n >= sizeof(text) || (v6 && (n < 2 || s[n - 1] != ']'))) {
		snprintf(err, errlen, "expected IPv4:PORT or [IPv6]:PORT");
		return -1;
	}
	memcpy(text, s + v6, n - 2 * v6);
	text[n - 2 * v6] = 0;
	a->family = v6 ? AF_INET6 : AF_INET;
	if (inet_pton(a->family, text, a->ip) != 1) {
		snprintf(err, errlen, "not an IPv4 or IPv6 address");
		return -1;
	}
	long port = decimal(colon + 1, 65535);
	if (port < 1) {
		snprintf(err, errlen, "port must be 1..65535");
		return -1;
	}
	a->port = (uint16_t)port;
	return 0;
}

static int add_dest(void *ctx, const char *item, char *err, size_t errlen)
{
	struct ps_netlist *l = ctx;
	struct ps_addr a;
	/* With a port: "a.b.c.d:p" or "[v6]:p"; without: an address or network. */
	int has_port = item[0] == '[' || (strchr(item, ':') && !strchr(strchr(item, ':') + 1, ':'));
	if (!has_port)
		return add_net(ctx, item, err, errlen);
	if (l->n == PS_NETS_MAX) {
		snprintf(err, errlen, "more than %d entries", PS_NETS_MAX);
		return -1;
	}
	if (ps_addrport_parse(&a, item, err, errlen))
		return -1;
	struct ps_net *net = &l->net[l->n++];
	ps_addr_to_v6(&a, net->ip);
	set_prefix(net, 128);
	net->v4 = ps_ip_is_v4mapped(net->ip);
	net->port = a.port;
	return 0;
}

int ps_destlist_parse(struct ps_netlist *l, const char *s, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	return each_item(s, add_dest, l, err, errlen);
}

static int add_ports(void *ctx, const char *item, char *err, size_t errlen)
{
	struct ps_portset *p = ctx;
	char text[64];
	snprintf(text, sizeof(text), "%s", item);
	char *dash = strchr(text, '-');
	if (dash)
		*dash = 0;
	long lo = decimal(text, 65535), hi = dash ? decimal(dash + 1, 65535) : lo;
	if (lo < 1 || hi < 1) {
		snprintf(err, errlen, "ports must be 1..65535");
		return -1;
	}
	if (hi < lo) {
		snprintf(err, errlen, "range is reversed");
		return -1;
	}
	for (long port = lo; port <= hi; port++)
		p->bits[port >> 6] |= 1ull << (port & 63);
	return 0;
}

int ps_portset_parse(struct ps_portset *p, const char *s, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	return each_item(s, add_ports, p, err, errlen);
}
