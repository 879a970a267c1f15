/* libFuzzer: the datagram decision (shim/proto/dgram.h) on arbitrary datagrams, with the flow
 * tables of an IPv4 and an IPv6 socket kept across inputs so that their states are
 * explored too. The first bytes choose the configuration, the real sender, the socket's
 * family and the clock; the rest is the datagram. */
#include "dgram.h"
#include "pp.h"

#include <stdlib.h>
#include <string.h>

#define MAP_CAP 40u

static const char *policy, *untrusted, *mode;

static const char *get(const char *name)
{
	if (!strcmp(name, "PROXYSHIM_TRUSTED"))
		return "192.0.2.0/24,2001:db8::/32";
	if (!strcmp(name, "PROXYSHIM_UDP_PORTS"))
		return "53";
	if (!strcmp(name, "PROXYSHIM_UDP_IDLE_MS"))
		return "1000";
	if (!strcmp(name, "PROXYSHIM_POLICY"))
		return policy;
	if (!strcmp(name, "PROXYSHIM_UNTRUSTED"))
		return untrusted;
	if (!strcmp(name, "PROXYSHIM_UDP_MODE"))
		return mode;
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* One per socket, an IPv4 one and an IPv6 one, small so that inputs reach their
	 * capacity (eviction) and their growth (bucket splits). */
	static struct ps_udpmap map4, map6;
	if (!map4.cap) {
		ps_udpmap_init(&map4, MAP_CAP, malloc(ps_udpmap_size(MAP_CAP)));
		ps_udpmap_init(&map6, MAP_CAP, malloc(ps_udpmap_size(MAP_CAP)));
	}
	static struct ps_config c;
	static uint64_t now;
	struct ps_dgram d;
	char err[200];
	if (size < 4)
		return 0;
	uint8_t ctl = data[0];
	policy = ctl & 1 ? "optional" : "require";
	untrusted = ctl & 2 ? "reject" : "pass";
	mode = ctl & 4 ? "first" : "every";
	if (ps_config_parse(&c, get, err, sizeof(err)) < 0)
		abort();
	/* The sender: trusted (192.0.2.x) or not (198.51.100.x), IPv4 or IPv6, few ports so
	 * that flows meet again. */
	struct ps_addr real = {.family = ctl & 8 ? AF_INET6 : AF_INET, .port = data[1] & 7};
	if (real.family == AF_INET)
		memcpy(real.ip, ctl & 16 ? "\xc0\x00\x02\x01" : "\xc6\x33\x64\x01", 4);
	else
		memcpy(real.ip, ctl & 16 ? "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\1"
					 : "\xfe\x80\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16);
	bool trusted = ctl & 16;
	now += data[2] * 10u;
	bool commit = !(ctl & 32);
	const uint8_t *buf = data + 3;
	size_t len = size - 3;
	/* The socket's family: an IPv6 sender only ever reaches an IPv6 socket. */
	int family = real.family == AF_INET && (ctl & 64) ? AF_INET : AF_INET6;
	struct ps_udpmap *m = family == AF_INET ? &map4 : &map6;
	enum ps_dgram_verdict v =
		ps_dgram_judge(&c, m, family, &real, buf, len, now, commit, &d);
	switch (v) {
	case PS_DGRAM_DELIVER:
		if (d.off > len || (!trusted && (d.off || memcmp(&d.from, &real, sizeof(real)))))
			abort();
		if (family == AF_INET && d.from.family != AF_INET)
			abort();  /* an IPv4 socket cannot report an IPv6 sender */
		if (d.off) {  /* a header was removed: exactly one valid v2 header */
			struct pp_header h;
			if (pp_parse(buf, len, &h) != PP_DONE || h.version != 2 || h.len != d.off)
				abort();
		}
		break;
	case PS_DGRAM_DROP:
		if (!d.why || !*d.why)
			abort();
		break;
	case PS_DGRAM_ABSORB:
		if (!(ctl & 4) || !trusted)
			abort();  /* only `first` mode absorbs, only a trusted header */
		break;
	}
	if (m->count > MAP_CAP || m->used > MAP_CAP || m->base + m->split > m->max_buckets ||
	    (m->base + m->split < 2 * m->count && m->base + m->split < m->max_buckets))
		abort();
	return 0;
}
