/* Conversions between kernel sockaddrs and the compact ps_addr. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int ps_ip_is_v4mapped(const uint8_t ip[16])
{
	return !memcmp(ip, v4mapped_prefix, sizeof(v4mapped_prefix));
}

int ps_addr_from_sockaddr(struct ps_addr *a, const struct sockaddr *sa, socklen_t len)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		a->family = AF_INET;
		a->port = ntohs(in->sin_port);
		memcpy(a->ip, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		a->family = AF_INET6;
		a->port = ntohs(in6->sin6_port);
		memcpy(a->ip, &in6->sin6_addr, 16);
		return 0;
	}
	return -1;
}

void ps_addr_unmap(struct ps_addr *a)
{
	if (a->family == AF_INET6 && ps_ip_is_v4mapped(a->ip)) {
		a->family = AF_INET;
		memmove(a->ip, a->ip + 12, 4);
		memset(a->ip + 4, 0, 12);
	}
}

void ps_addr_to_v6(const struct ps_addr *a, uint8_t out[16])
{
	if (a->family == AF_INET) {
		memcpy(out, v4mapped_prefix, 12);
		memcpy(out + 12, a->ip, 4);
	} else {
		memcpy(out, a->ip, 16);
	}
}

socklen_t ps_addr_to_sockaddr(const struct ps_addr *a, int sock_family,
			      struct sockaddr_storage *out)
{
	int mapped = a->family == AF_INET6 && ps_ip_is_v4mapped(a->ip);
	if (sock_family == AF_INET && (a->family == AF_INET || mapped)) {
		struct sockaddr_in *in = (struct sockaddr_in *)out;
		memset(in, 0, sizeof(*in));
		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, mapped ? a->ip + 12 : a->ip, 4);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
	memset(in6, 0, sizeof(*in6));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(a->port);
	ps_addr_to_v6(a, in6->sin6_addr.s6_addr);
	return sizeof(*in6);
}

void ps_addr_format(const struct ps_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (a->family == AF_INET || a->family == AF_INET6)
		inet_ntop(a->family, a->ip, ip, sizeof(ip));
	snprintf(buf, len, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, a->port);
}
