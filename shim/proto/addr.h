/* Compact socket addresses shared by the parser, the fd table and the hooks. */
#ifndef PS_ADDR_H
#define PS_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

/* family is AF_INET or AF_INET6 (ip[0..3] for IPv4), 0 when unset; port in host order. */
struct ps_addr {
	uint16_t family;
	uint16_t port;
	uint8_t ip[16];
};

/* Same family, port and address (constant-size compares: no call on the data path). */
static inline bool ps_addr_same(const struct ps_addr *a, const struct ps_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       (a->family == AF_INET ? !memcmp(a->ip, b->ip, 4) : !memcmp(a->ip, b->ip, 16));
}

/* Longest text ps_addr_format() writes: "[v6]:port" plus NUL. */
#define PS_ADDR_STRLEN 56

/* Fills *a from a kernel sockaddr; returns 0, or -1 for families other than INET/INET6. */
int ps_addr_from_sockaddr(struct ps_addr *a, const struct sockaddr *sa, socklen_t len);

/* Writes a as a sockaddr for a socket of family sock_family (AF_INET or AF_INET6):
 * IPv4 on an IPv6 socket becomes ::ffff:a.b.c.d, a v4-mapped IPv6 address on an IPv4
 * socket becomes IPv4, a true IPv6 address stays AF_INET6. Returns its length; *out
 * past it is not written (a data path pays for 16 or 28 bytes, not 128). */
socklen_t ps_addr_to_sockaddr(const struct ps_addr *a, int sock_family,
			      struct sockaddr_storage *out);

/* The 16-byte IPv6 form used for matching: IPv4 as ::ffff:a.b.c.d. */
void ps_addr_to_v6(const struct ps_addr *a, uint8_t out[16]);

/* Is a 16-byte IPv6 address of the form ::ffff:a.b.c.d? */
int ps_ip_is_v4mapped(const uint8_t ip[16]);

/* A v4-mapped IPv6 address becomes plain IPv4 (one key per endpoint). */
void ps_addr_unmap(struct ps_addr *a);

/* "1.2.3.4:80" or "[::1]:80"; never fails, truncates to len. */
void ps_addr_format(const struct ps_addr *a, char *buf, size_t len);

#endif
