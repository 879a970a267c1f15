/* What to do with one datagram received on a selected UDP socket: the decision of
 * the UDP contract (README, proxyshim(7)) as a pure function of the configuration, the real
 * sender, the bytes and the socket's flow table. */
#ifndef PS_DGRAM_H
#define PS_DGRAM_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "udp_map.h"

enum ps_dgram_verdict {
	PS_DGRAM_DELIVER,  /* payload at off, sender 'from' */
	PS_DGRAM_DROP,     /* refused: 'why' says why */
	PS_DGRAM_ABSORB,   /* `first` mode: a header alone opened a flow; nothing to deliver */
};

struct ps_dgram {
	size_t off;             /* DELIVER: where the payload starts */
	struct ps_addr from;    /* DELIVER, and when learned: the sender to report */
	const char *why;        /* DROP */
	bool learned;           /* m now maps 'from' to the real sender (DELIVER or ABSORB) */
	bool evicted;           /* a full flow table forgot 'gone' to learn this flow */
	struct ps_udpflow gone; /* only when evicted */
};

/* Judges buf[0, len) from real sender 'real' (v4-mapped already unmapped) on a socket
 * of family sock_family (an IPv4 socket cannot report an IPv6 client). m may be NULL
 * (no flow table: nothing learned or found). commit: learn flows (a real receive);
 * false for a peek, which changes nothing. */
enum ps_dgram_verdict ps_dgram_judge(const struct ps_config *c, struct ps_udpmap *m,
				     int sock_family, const struct ps_addr *real,
				     const uint8_t *buf, size_t len, uint64_t now_ms,
				     bool commit, struct ps_dgram *out);

#endif
