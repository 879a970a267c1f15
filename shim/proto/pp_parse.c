/* PROXY protocol header parser (v1 text, v2 binary), to the PROXY protocol
 * specification. Strict, prefix-aware: a valid prefix of a header is always "need
 * more", so the caller can wait for the rest. */
#include "pp.h"

#include <arpa/inet.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static enum pp_status need(struct pp_header *h, size_t n)
{
	h->need = n;
	return PP_NEED_MORE;
}

static enum pp_status bad(struct pp_header *h, const char *reason)
{
	h->reason = reason;
	return PP_INVALID;
}

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

int pp_signature(const uint8_t *buf, size_t len)
{
	static const uint8_t v1_sig[5] = {'P', 'R', 'O', 'X', 'Y'};
	const uint8_t *sig = len && buf[0] == 'P' ? v1_sig : v2_sig;
	size_t sig_len = sig == v1_sig ? sizeof(v1_sig) : sizeof(v2_sig);
	if (len == 0)
		return -1;
	if (memcmp(buf, sig, min_sz(len, sig_len)))
		return 0;
	return len >= sig_len ? 1 : -1;
}

/* ---- v1 ---------------------------------------------------------------------- */

/* Validators take one space-free field; 'partial' means more bytes of it may follow,
 * so only a prefix has to be valid. They return 0 if (the prefix of) the field is valid. */

static int v1_port(const uint8_t *s, size_t n, int partial, uint16_t *out)
{
	unsigned v = 0;
	if (n == 0)
		return partial ? 0 : -1;
	if (n > 5 || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static int v1_ipv4(const uint8_t *s, size_t n, int partial, uint8_t ip[4])
{
	int octet = 0;
	unsigned v = 0, digits = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (!digits || octet == 3)
				return -1;
			ip[octet++] = (uint8_t)v;
			v = digits = 0;
		} else if (s[i] >= '0' && s[i] <= '9') {
			if (digits == 1 && v == 0)  /* leading zero: could be read as octal */
				return -1;
			v = v * 10 + (unsigned)(s[i] - '0');
			if (++digits > 3 || v > 255)
				return -1;
		} else {
			return -1;
		}
	}
	if (partial)
		return 0;
	if (octet != 3 || !digits)
		return -1;
	ip[3] = (uint8_t)v;
	return 0;
}

static int v1_ipv6(const uint8_t *s, size_t n, int partial, uint8_t ip[16])
{
	char text[46];
	if (n >= sizeof(text))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdefABCDEF:.", s[i]) || s[i] == 0)
			return -1;
	if (partial)
		return 0;
	memcpy(text, s, n);
	text[n] = 0;
	return inet_pton(AF_INET6, text, ip) == 1 ? 0 : -1;
}

/* Validates the text after "PROXY TCP4 " / "PROXY TCP6 ": four fields separated by
 * single spaces. With partial set the text may stop anywhere. */
static const char *v1_tcp_fields(const uint8_t *s, size_t n, int v6, int partial,
				 struct pp_header *h)
{
	size_t start = 0;
	for (int field = 0; field < 4; field++) {
		size_t end = start;
		while (end < n && s[end] != ' ')
			end++;
		int last = end == n;
		if (last && field < 3 && !partial)
			return "v1: missing fields";
		int part = partial && last;
		const uint8_t *f = s + start;
		size_t len = end - start;
		struct ps_addr *a = field == 0 || field == 2 ? &h->src : &h->dst;
		int err;
		if (field < 2)
			err = v6 ? v1_ipv6(f, len, part, a->ip)
				 : v1_ipv4(f, len, part, a->ip);
		else
			err = v1_port(f, len, part, &a->port);
		if (err || (!part && len == 0))
			return field < 2 ? "v1: bad address" : "v1: bad port";
		if (last)
			return NULL;
		start = end + 1;
	}
	return "v1: too many fields";
}

/* Validates a v1 line without its CRLF (complete) or the bytes so far (partial). */
static const char *v1_content(const uint8_t *s, size_t n, int partial, struct pp_header *h)
{
	static const char *const words[] = {"PROXY TCP4 ", "PROXY TCP6 ", "PROXY UNKNOWN"};
	for (int w = 0; w < 3; w++) {
		size_t wl = strlen(words[w]);
		if (memcmp(s, words[w], min_sz(n, wl)))
			continue;
		if (n < wl)
			return partial ? NULL : "v1: truncated line";
		if (w == 2) {  /* UNKNOWN [SP anything-but-CR-LF] */
			if (n > wl && s[wl] != ' ')
				return "v1: bad UNKNOWN line";
			return memchr(s, '\r', n) ? "v1: stray CR" : NULL;
		}
		h->fam = w == 0 ? 0x11 : 0x21;
		h->src.family = h->dst.family = w == 0 ? AF_INET : AF_INET6;
		return v1_tcp_fields(s + wl, n - wl, w == 1, partial, h);
	}
	return "v1: bad protocol keyword";
}

static enum pp_status parse_v1(const uint8_t *buf, size_t len, struct pp_header *h)
{
	size_t window = min_sz(len, PP_V1_MAX);
	const uint8_t *lf = memchr(buf, '\n', window);
	const char *err;
	h->version = 1;
	if (!lf) {
		if (len >= PP_V1_MAX)
			return bad(h, "v1: no CRLF within 107 bytes");
		/* A CR may only be the last byte so far, right before the LF to come. */
		if (buf[len - 1] == '\r')
			err = v1_content(buf, len - 1, 0, h);
		else
			err = v1_content(buf, len, 1, h);
		return err ? bad(h, err) : need(h, len + 1);
	}
	size_t eol = (size_t)(lf - buf);
	if (eol == 0 || buf[eol - 1] != '\r')
		return bad(h, "v1: line not ended by CRLF");
	err = v1_content(buf, eol - 1, 0, h);
	if (err)
		return bad(h, err);
	h->len = eol + 1;
	h->command = h->fam ? PP_CMD_PROXY : PP_CMD_LOCAL;
	h->has_addrs = h->fam != 0;
	if (!h->has_addrs)
		memset(&h->src, 0, sizeof(h->src)), memset(&h->dst, 0, sizeof(h->dst));
	return PP_DONE;
}

/* ---- v2 ---------------------------------------------------------------------- */

static unsigned be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* Address block size of a listed family/transport byte, -1 for unlisted ones. */
static int v2_block_size(uint8_t fam)
{
	switch (fam) {
	case 0x00: return 0;
	case 0x11: case 0x12: return 12;
	case 0x21: case 0x22: return 36;
	case 0x31: case 0x32: return 216;
	default: return -1;
	}
}

static int v2_crc_ok(const uint8_t *hdr, size_t end, size_t val)
{
	static const uint8_t zero[4];
	uint32_t want = (uint32_t)be16(hdr + val) << 16 | be16(hdr + val + 2);
	uint32_t crc = crc32c_update(0, hdr, val);
	crc = crc32c_update(crc, zero, 4);
	crc = crc32c_update(crc, hdr + val + 4, end - val - 4);
	return crc == want;
}

/* How a TLV list is walked: every top-level check (PROXY), bounds only (an SSL TLV's
 * sub-TLVs, and LOCAL's first pass), or only CRC32C values (LOCAL's second pass). */
enum tlv_walk { TLV_CHECK, TLV_BOUNDS, TLV_CRC };

static const char *v2_tlvs(const uint8_t *hdr, size_t off, size_t end, enum tlv_walk how,
			   struct pp_header *h);

/* Checks one top-level TLV's value at hdr[val, val + vlen). */
static const char *v2_tlv_check(const uint8_t *hdr, size_t end, uint8_t type, size_t val,
				size_t vlen, struct pp_header *h)
{
	switch (type) {
	case PP2_TYPE_CRC32C:
		if (vlen != 4)
			return "v2: CRC32C TLV length is not 4";
		if (h->has_crc)
			return "v2: duplicate CRC32C TLV";
		if (!v2_crc_ok(hdr, end, val))
			return "v2: CRC32C mismatch";
		h->has_crc = 1;
		return NULL;
	case PP2_TYPE_UNIQUE_ID:
		return vlen > 128 ? "v2: UNIQUE_ID longer than 128 bytes" : NULL;
	case PP2_TYPE_SSL:  /* client (1) + verify (4) + sub-TLVs */
		return vlen < 5 ? "v2: SSL TLV too short"
				: v2_tlvs(hdr, val + 5, val + vlen, TLV_BOUNDS, h);
	default:
		return NULL;
	}
}

/* LOCAL: only a checksum that is there and wrong counts; any other value is accepted. */
static const char *v2_tlv_crc(const uint8_t *hdr, size_t end, uint8_t type, size_t val,
			      size_t vlen, struct pp_header *h)
{
	if (type != PP2_TYPE_CRC32C || vlen != 4)
		return NULL;
	if (!v2_crc_ok(hdr, end, val))
		return "v2: CRC32C mismatch";
	h->has_crc = 1;
	return NULL;
}

/* Walks TLVs in hdr[off, end) as 'how' says. */
static const char *v2_tlvs(const uint8_t *hdr, size_t off, size_t end, enum tlv_walk how,
			   struct pp_header *h)
{
	while (off < end) {
		if (end - off < 3)
			return "v2: truncated TLV";
		size_t vlen = be16(hdr + off + 1), val = off + 3;
		if (vlen > end - val)
			return "v2: TLV exceeds header";
		const char *err = how == TLV_CHECK ? v2_tlv_check(hdr, end, hdr[off], val, vlen, h)
				: how == TLV_CRC ? v2_tlv_crc(hdr, end, hdr[off], val, vlen, h)
						 : NULL;
		if (err)
			return err;
		off = val + vlen;
	}
	return NULL;
}

/* LOCAL: the spec says the receiver must accept it and use the real endpoints, whatever
 * the family byte and the len bytes hold; only a CRC32C TLV that is found and wrong
 * rejects it. "Found" means: the family is a listed one, len covers its block, and the
 * bytes after the block walk as a TLV list that ends exactly at the header's end; then
 * each CRC32C TLV with a 4-byte value is verified. Bytes that do not walk (an address
 * block under family 00, as Netty and AWS NLB send, or any junk) are skipped unparsed,
 * and TLV values PROXY would refuse (a 5-byte CRC32C, a long UNIQUE_ID) are ignored. */
static enum pp_status v2_local(const uint8_t *buf, int block, size_t total,
			       struct pp_header *h)
{
	size_t tlv = PP_V2_FIXED + (size_t)block;
	if (block < 0 || tlv > total || v2_tlvs(buf, tlv, total, TLV_BOUNDS, h))
		return PP_DONE;
	const char *err = v2_tlvs(buf, tlv, total, TLV_CRC, h);
	if (err)
		return bad(h, err);
	h->tlv = buf + tlv;
	h->tlv_len = total - tlv;
	return PP_DONE;
}

/* Endpoint i (0 source, 1 destination) of an inet address block of family fam (0x1X
 * IPv4, 0x2X IPv6): both addresses, then both ports. */
static void v2_endpoint(const uint8_t *blk, uint8_t fam, size_t i, struct ps_addr *a)
{
	size_t alen = fam >> 4 == 1 ? 4 : 16;
	memset(a, 0, sizeof(*a));
	a->family = alen == 4 ? AF_INET : AF_INET6;
	memcpy(a->ip, blk + i * alen, alen);
	a->port = (uint16_t)be16(blk + 2 * alen + 2 * i);
}

/* fam is 0x11/0x12 (IPv4) or 0x21/0x22 (IPv6); the transport decides which flag. */
static void v2_addrs(const uint8_t *blk, uint8_t fam, struct pp_header *h)
{
	v2_endpoint(blk, fam, 0, &h->src);
	v2_endpoint(blk, fam, 1, &h->dst);
	h->has_addrs = (fam & 0x0F) == 1;
	h->has_dgram_addrs = (fam & 0x0F) == 2;
}

static enum pp_status parse_v2(const uint8_t *buf, size_t len, struct pp_header *h)
{
	h->version = 2;
	if (memcmp(buf, v2_sig, min_sz(len, sizeof(v2_sig))))
		return bad(h, "v2: bad signature");
	if (len < 13)
		return need(h, PP_V2_FIXED);
	if (buf[12] >> 4 != 2)
		return bad(h, "v2: version is not 2");
	if ((buf[12] & 0x0F) > PP_CMD_PROXY)
		return bad(h, "v2: unknown command");
	h->command = buf[12] & 0x0F;
	if (len < 14)
		return need(h, PP_V2_FIXED);
	h->fam = buf[13];
	int block = v2_block_size(h->fam);
	if (h->command == PP_CMD_PROXY && block < 0)
		return bad(h, "v2: unknown address family or transport");
	if (len < PP_V2_FIXED)
		return need(h, PP_V2_FIXED);
	size_t dlen = be16(buf + 14), total = PP_V2_FIXED + dlen;
	if (h->command == PP_CMD_PROXY && dlen < (size_t)block)
		return bad(h, "v2: length shorter than the address block");
	if (len < total)
		return need(h, total);
	h->len = total;
	if (h->command == PP_CMD_LOCAL)
		return v2_local(buf, block, total, h);
	if (h->fam >> 4 == 1 || h->fam >> 4 == 2)  /* 11 12 21 22: the listed inet ones */
		v2_addrs(buf + PP_V2_FIXED, h->fam, h);
	size_t tlv = PP_V2_FIXED + (size_t)block;
	const char *err = v2_tlvs(buf, tlv, total, TLV_CHECK, h);
	if (err)
		return bad(h, err);
	h->tlv = buf + tlv;
	h->tlv_len = total - tlv;
	return PP_DONE;
}

bool pp_parse_dgram_plain(const uint8_t *buf, size_t len, struct ps_addr *src, size_t *hlen)
{
	/* Bytes 12-15: PROXY command, UDP over IPv4 or IPv6, a length that is the block alone. */
	if (len < PP_V2_FIXED || memcmp(buf, v2_sig, sizeof(v2_sig)) || buf[12] != 0x21 ||
	    (buf[13] != 0x12 && buf[13] != 0x22))
		return false;
	size_t block = (size_t)v2_block_size(buf[13]);
	if (be16(buf + 14) != block || len < PP_V2_FIXED + block)
		return false;
	v2_endpoint(buf + PP_V2_FIXED, buf[13], 0, src);
	*hlen = PP_V2_FIXED + block;
	return true;
}

enum pp_status pp_parse(const uint8_t *buf, size_t len, struct pp_header *h)
{
	memset(h, 0, sizeof(*h));
	if (len == 0)
		return need(h, 1);
	if (buf[0] == 'P')
		return parse_v1(buf, len, h);
	if (buf[0] == 0x0D)
		return parse_v2(buf, len, h);
	return bad(h, "no PROXY signature");
}
