/* Lists of IPv4/IPv6 networks (PROXYSHIM_TRUSTED) and port ranges (PROXYSHIM_PORTS). */
#ifndef PS_CIDR_H
#define PS_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "addr.h"

/* One network in IPv6 form: IPv4 entries are stored as ::ffff:0:0/96 + prefix. */
struct ps_net {
	uint8_t ip[16];
	uint64_t mask[2];  /* plen leading one bits, in ip's byte order: two word compares */
	uint8_t plen;   /* 0..128 */
	bool v4;        /* an IPv4 network: matches IPv4 and v4-mapped peers, and only them */
	uint16_t port;  /* destinations only: 0 = any port */
};

#define PS_NETS_MAX 256

struct ps_netlist {
	bool any;                 /* "*" */
	unsigned n;
	struct ps_net net[PS_NETS_MAX];
};

/* Parses "a,b/len,…" or "*". Returns 0, or -1 with a reason in err (no variable name;
 * the caller adds it). */
int ps_netlist_parse(struct ps_netlist *l, const char *s, char *err, size_t errlen);

/* Parses destinations (PROXYSHIM_SEND_TO): ADDR, CIDR, IPv4:PORT, [IPv6]:PORT, "*". */
int ps_destlist_parse(struct ps_netlist *l, const char *s, char *err, size_t errlen);

/* Parses "IPv4:PORT" or "[IPv6]:PORT" (port 1..65535). Returns 0, or -1 with a reason. */
int ps_addrport_parse(struct ps_addr *a, const char *s, char *err, size_t errlen);

/* Does a (IPv4 or IPv6; a v4-mapped IPv6 address counts as IPv4) fall in the list? */
bool ps_netlist_match(const struct ps_netlist *l, const struct ps_addr *a);

/* A set of TCP/UDP ports as a bitmap; all ports when 'all' is set. */
struct ps_portset {
	bool all;
	uint64_t bits[65536 / 64];
};

/* Parses "80,8000-8010". Returns 0, or -1 with a reason in err. */
int ps_portset_parse(struct ps_portset *p, const char *s, char *err, size_t errlen);

static inline bool ps_portset_has(const struct ps_portset *p, uint16_t port)
{
	return p->all || (p->bits[port >> 6] >> (port & 63) & 1);
}

#endif
