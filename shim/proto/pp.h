/* PROXY protocol v1/v2 header parser and builder. Pure: no I/O, no allocation;
 * every byte read is bounds-checked against the length given. */
#ifndef PS_PP_H
#define PS_PP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "addr.h"

#define PP_V1_MAX 107               /* longest legal v1 line, CRLF included */
#define PP_V2_FIXED 16              /* signature, ver/cmd, fam, len */
#define PP_V2_MAX (16 + 65535)      /* longest legal v2 header */

enum pp_status {
	PP_NEED_MORE,  /* a valid prefix; h->need = total bytes needed at least */
	PP_DONE,       /* complete and valid; h describes it */
	PP_INVALID,    /* h->reason says why (short, constant string) */
};

enum pp_command { PP_CMD_LOCAL = 0, PP_CMD_PROXY = 1 };

/* v2 TLV types. The parser checks CRC32C (the checksum), UNIQUE_ID (at most 128 bytes)
 * and SSL (its fixed part); the others are only named. */
#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_CRC32C 0x03
#define PP2_TYPE_NOOP 0x04
#define PP2_TYPE_UNIQUE_ID 0x05
#define PP2_TYPE_SSL 0x20
#define PP2_TYPE_NETNS 0x30

struct pp_header {
	size_t len;             /* PP_DONE: bytes the header occupies in the stream */
	size_t need;            /* PP_NEED_MORE: total bytes needed before progress */
	const char *reason;     /* PP_INVALID */
	uint8_t version;        /* 1 or 2 */
	uint8_t command;        /* enum pp_command; v1 UNKNOWN is LOCAL */
	uint8_t fam;            /* v2 byte 13; v1: 0x11 TCP4, 0x21 TCP6, 0x00 UNKNOWN */
	bool has_addrs;         /* src/dst are the original endpoints (PROXY + 0x11/0x21) */
	bool has_dgram_addrs;   /* src/dst are a datagram flow's (PROXY + 0x12/0x22) */
	struct ps_addr src, dst;
	const uint8_t *tlv;     /* v2 TLVs after the address block, inside the input */
	size_t tlv_len;
	bool has_crc;           /* a CRC32C TLV was present and verified */
};

/* Parses the first len bytes of a stream. Never reads past buf[len-1], never reads
 * beyond the header's own end. A valid prefix of a header is PP_NEED_MORE, never
 * PP_INVALID; an empty buffer is PP_NEED_MORE with need 1. */
enum pp_status pp_parse(const uint8_t *buf, size_t len, struct pp_header *h);

/* The datagram header nearly every proxy sends, read in place: v2, PROXY, UDP over
 * IPv4 or IPv6, no TLVs. true when buf starts with one, with its source (the client) and
 * its length: what pp_parse would report for it. false for anything else, which is then
 * pp_parse's to judge. */
bool pp_parse_dgram_plain(const uint8_t *buf, size_t len, struct ps_addr *src, size_t *hlen);

/* 1 if the first len bytes (len may be short) are consistent with a signature and
 * at least sig_len bytes of it have arrived; 0 if the bytes cannot start a header;
 * -1 if too few bytes to tell. v1 signature "PROXY" (5), v2 the 12-byte one. */
int pp_signature(const uint8_t *buf, size_t len);

/* Builders write into buf (capacity cap) and return the header length, 0 if it does
 * not fit. src and dst must share a family (IPv4 or IPv6); a v4-mapped IPv6 pair is
 * written as IPv4. NULL src/dst: v1 "PROXY UNKNOWN", v2 LOCAL. */
size_t pp_build_v1(uint8_t *buf, size_t cap, const struct ps_addr *src,
		   const struct ps_addr *dst);

/* tlv/tlv_len: raw TLVs to append (may be NULL/0); with_crc adds a CRC32C TLV. */
size_t pp_build_v2(uint8_t *buf, size_t cap, const struct ps_addr *src,
		   const struct ps_addr *dst, const uint8_t *tlv, size_t tlv_len,
		   bool with_crc);

/* A v2 header for a datagram: families 0x12/0x22 (NULL src/dst: LOCAL). */
size_t pp_build_v2_dgram(uint8_t *buf, size_t cap, const struct ps_addr *src,
			 const struct ps_addr *dst);

/* CRC-32C (Castagnoli). crc32c_update(0, …) starts a new checksum. */
uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n);

#endif
