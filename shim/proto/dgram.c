/* The datagram decision. Only v2 can describe UDP: a v1 line is refused, a v2 header
 * with a UDP address block names the client, any other v2 header (LOCAL, UNSPEC, a
 * stream family) is stripped and the real sender kept. */
#include "dgram.h"
#include "pp.h"

static enum ps_dgram_verdict deliver(struct ps_dgram *out, size_t off,
				     const struct ps_addr *from)
{
	out->off = off;
	out->from = *from;
	return PS_DGRAM_DELIVER;
}

static enum ps_dgram_verdict refuse(struct ps_dgram *out, const char *why)
{
	out->why = why;
	return PS_DGRAM_DROP;
}

/* A trusted datagram without a header: its flow's client (`first`), the real sender
 * (`optional`), or refused. */
static enum ps_dgram_verdict headerless(const struct ps_config *c, struct ps_udpmap *m,
					const struct ps_addr *real, uint64_t now_ms,
					bool commit, struct ps_dgram *out)
{
	struct ps_addr client;
	if (c->udp_first && m &&
	    (commit ? ps_udpmap_client(m, real, now_ms, c->udp_idle_ms, &client)
		    : ps_udpmap_peek_client(m, real, now_ms, c->udp_idle_ms, &client)))
		return deliver(out, 0, &client);
	if (c->policy == PS_POLICY_OPTIONAL)
		return deliver(out, 0, real);
	return refuse(out, c->udp_first ? "no PROXY header and no open flow"
					: "no PROXY header");
}

/* A header pp_parse accepts, as the decision needs it: its length, and whether it names
 * a datagram flow (then *src is its client). NULL, or why it is refused. */
static const char *parsed(const uint8_t *buf, size_t len, size_t *hlen, bool *flow,
			  struct ps_addr *src)
{
	struct pp_header h;
	switch (pp_parse(buf, len, &h)) {
	case PP_NEED_MORE:
		return "truncated PROXY header";
	case PP_INVALID:
		return h.reason;
	case PP_DONE:
		break;
	}
	if (h.version == 1)
		return "v1 header on a datagram (only v2 describes UDP)";
	*hlen = h.len;
	*flow = h.has_dgram_addrs;
	*src = h.src;
	return NULL;
}

enum ps_dgram_verdict ps_dgram_judge(const struct ps_config *c, struct ps_udpmap *m,
				     int sock_family, const struct ps_addr *real,
				     const uint8_t *buf, size_t len, uint64_t now_ms,
				     bool commit, struct ps_dgram *out)
{
	/* Only the fields every verdict defines: the rest is written where it is meant. */
	out->learned = out->evicted = false;
	out->off = 0;
	out->why = NULL;
	/* A datagram is whole: a signature prefix cut short is payload, not a header. */
	if (!ps_netlist_match(&c->trusted, real)) {
		if (c->untrusted == PS_UNTRUSTED_REJECT && pp_signature(buf, len) == 1)
			return refuse(out, "PROXY header from an untrusted source");
		return deliver(out, 0, real);
	}
	struct ps_addr from;
	size_t hlen;
	bool flow = true;
	/* The header nearly every proxy sends is read in place; the rest goes to pp_parse. */
	if (!pp_parse_dgram_plain(buf, len, &from, &hlen)) {
		if (pp_signature(buf, len) != 1)
			return headerless(c, m, real, now_ms, commit, out);
		const char *why = parsed(buf, len, &hlen, &flow, &from);
		if (why)
			return refuse(out, why);
		if (!flow)
			from = *real;
	}
	if (flow) {
		ps_addr_unmap(&from);
		if (sock_family == AF_INET && from.family == AF_INET6)
			return refuse(out, "IPv6 client on an IPv4 socket");
		if (commit && m) {
			out->from = from;  /* the learned client, also for a header alone */
			out->evicted = ps_udpmap_learn(m, real, &from, c->udp_first, now_ms,
						       c->udp_idle_ms, &out->gone);
			out->learned = true;
		}
	}
	if (c->udp_first && hlen == len)
		return PS_DGRAM_ABSORB;
	return deliver(out, hlen, &from);
}
