/* libFuzzer: the PROXY header parser on arbitrary bytes, then a differential check:
 * every accepted header with addresses, rebuilt by the builder, parses back to the
 * same endpoints, command and (for v2) a length the TLVs explain; a UDP one, rebuilt
 * as a datagram header, to the same endpoints (a v4-mapped pair becomes UDP4). And a
 * whole v2 LOCAL header is only ever refused for a wrong CRC32C. */
#include "pp.h"

#include <stdlib.h>
#include <string.h>

static void same(const struct ps_addr *a, const struct ps_addr *b)
{
	uint8_t x[16], y[16];
	ps_addr_to_v6(a, x);
	ps_addr_to_v6(b, y);
	if (memcmp(x, y, 16) || a->port != b->port)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pp_header h, r;
	uint8_t out[PP_V2_MAX];
	enum pp_status st = pp_parse(data, size, &h);
	if (st == PP_NEED_MORE && (h.need <= size || h.need > PP_V2_MAX))
		abort();  /* "need more" must ask for more, and never beyond a legal header */
	if (st == PP_INVALID && !h.reason)
		abort();
	/* A whole v2 LOCAL header is accepted whatever it holds, unless a CRC32C is wrong. */
	if (size >= PP_V2_FIXED && pp_signature(data, size) == 1 && data[0] == 0x0D &&
	    data[12] == 0x20 && size >= PP_V2_FIXED + ((size_t)data[14] << 8 | data[15]) &&
	    st != PP_DONE && strcmp(h.reason, "v2: CRC32C mismatch"))
		abort();
	if (st != PP_DONE)
		return 0;
	if (h.len == 0 || h.len > size)
		abort();
	/* Any prefix of an accepted header is a valid prefix: never invalid. */
	if (pp_parse(data, h.len - 1, &r) != PP_NEED_MORE)
		abort();
	if (h.has_addrs && h.has_dgram_addrs)
		abort();  /* one transport */
	if (h.has_dgram_addrs) {  /* UDP: the DGRAM builder round trip */
		size_t n = pp_build_v2_dgram(out, sizeof(out), &h.src, &h.dst);
		if (!n || pp_parse(out, n, &r) != PP_DONE || r.len != n || !r.has_dgram_addrs ||
		    (r.fam & 0x0F) != 2)
			abort();
		same(&h.src, &r.src);
		same(&h.dst, &r.dst);
		return 0;
	}
	if (!h.has_addrs)
		return 0;
	size_t n = h.version == 1 ? pp_build_v1(out, sizeof(out), &h.src, &h.dst)
				  : pp_build_v2(out, sizeof(out), &h.src, &h.dst,
						h.has_crc ? NULL : h.tlv, h.has_crc ? 0 : h.tlv_len,
						false);
	if (!n || pp_parse(out, n, &r) != PP_DONE || r.len != n || !r.has_addrs ||
	    r.command != h.command)
		abort();
	same(&h.src, &r.src);
	same(&h.dst, &r.dst);
	return 0;
}
