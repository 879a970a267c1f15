/* PROXY protocol header builder: writes into the caller's buffer, returns the length. */
#include "pp.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Both endpoints in one family: IPv4 when both are IPv4 or v4-mapped, else IPv6.
 * Returns the address size (4 or 16) written to sip/dip. */
static size_t pair(const struct ps_addr *s, const struct ps_addr *d, uint8_t sip[16],
		   uint8_t dip[16])
{
	uint8_t s6[16], d6[16];
	ps_addr_to_v6(s, s6);
	ps_addr_to_v6(d, d6);
	if (ps_ip_is_v4mapped(s6) && ps_ip_is_v4mapped(d6)) {
		memcpy(sip, s6 + 12, 4);
		memcpy(dip, d6 + 12, 4);
		return 4;
	}
	memcpy(sip, s6, 16);
	memcpy(dip, d6, 16);
	return 16;
}

size_t pp_build_v1(uint8_t *buf, size_t cap, const struct ps_addr *src,
		   const struct ps_addr *dst)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], line[PP_V1_MAX + 1];
	uint8_t sip[16], dip[16];
	int n;
	if (!src || !dst) {
		n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	} else {
		int fam = pair(src, dst, sip, dip) == 4 ? AF_INET : AF_INET6;
		inet_ntop(fam, sip, s, sizeof(s));
		inet_ntop(fam, dip, d, sizeof(d));
		n = snprintf(line, sizeof(line), "PROXY TCP%c %s %s %u %u\r\n",
			     fam == AF_INET ? '4' : '6', s, d, src->port, dst->port);
	}
	/* The line has no NUL: a buffer of exactly its length is enough. */
	if (n <= 0 || (size_t)n > cap)
		return 0;
	memcpy(buf, line, (size_t)n);
	return (size_t)n;
}

static uint8_t *put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

/* transport: 1 STREAM (TCP), 2 DGRAM (UDP). */
static size_t build_v2(uint8_t *buf, size_t cap, const struct ps_addr *src,
		       const struct ps_addr *dst, const uint8_t *tlv, size_t tlv_len,
		       bool with_crc, unsigned transport)
{
	uint8_t sip[16], dip[16];
	size_t alen = src && dst ? pair(src, dst, sip, dip) : 0;
	size_t block = alen * 2 + (alen ? 4 : 0);
	size_t crc_len = with_crc ? 7 : 0;
	size_t len = block + tlv_len + crc_len;
	if (len > 65535 || PP_V2_FIXED + len > cap)
		return 0;
	uint8_t *p = buf;
	memcpy(p, v2_sig, sizeof(v2_sig));
	p += sizeof(v2_sig);
	*p++ = alen ? 0x21 : 0x20;
	*p++ = (uint8_t)(alen == 4 ? 0x10 | transport : alen == 16 ? 0x20 | transport : 0x00);
	p = put16(p, (unsigned)len);
	if (alen) {
		memcpy(p, sip, alen);
		memcpy(p + alen, dip, alen);
		p = put16(put16(p + 2 * alen, src->port), dst->port);
	}
	if (tlv_len)
		memcpy(p, tlv, tlv_len);
	p += tlv_len;
	if (with_crc) {
		*p++ = PP2_TYPE_CRC32C;
		p = put16(p, 4);
		memset(p, 0, 4);
		uint32_t crc = crc32c_update(0, buf, (size_t)(p + 4 - buf));
		p = put16(put16(p, crc >> 16), crc & 0xffff);
	}
	return (size_t)(p - buf);
}

size_t pp_build_v2(uint8_t *buf, size_t cap, const struct ps_addr *src,
		   const struct ps_addr *dst, const uint8_t *tlv, size_t tlv_len,
		   bool with_crc)
{
	return build_v2(buf, cap, src, dst, tlv, tlv_len, with_crc, 1);
}

size_t pp_build_v2_dgram(uint8_t *buf, size_t cap, const struct ps_addr *src,
			 const struct ps_addr *dst)
{
	return build_v2(buf, cap, src, dst, NULL, 0, false, 2);
}
