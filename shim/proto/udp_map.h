/* A selected UDP socket's flows: which trusted proxy (address and port) introduced
 * which original client. Replies to a client go to its proxy; in `first` mode a
 * headerless datagram from a proxy port belongs to that port's client. A capacity set
 * at init (oldest evicted past it), entries forgotten after the idle time; only
 * received datagrams (learn, client) refresh a flow. Pure: the caller passes the
 * storage and the clock and serialises access.
 *
 * The storage is touched in proportion to the flows in use, never to the capacity:
 * flows fill their array from the front, and the hash indexes grow by linear hashing
 * (one bucket split at a time, at most two per new flow, so no datagram pays for a
 * whole rehash). Storage mapped lazily costs memory only where flows have been. */
#ifndef PS_UDP_MAP_H
#define PS_UDP_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "addr.h"

struct ps_udpflow {
	struct ps_addr client, proxy;
	uint64_t last_ms;
	uint32_t newer, older;        /* recency list, 0 = none */
	uint32_t next_c, next_p;      /* hash chains by client, by proxy */
};

struct ps_udpmap {
	uint32_t cap;                 /* most flows held */
	uint32_t max_buckets;         /* a power of two, at least 2 * cap */
	uint32_t base, split;         /* buckets in use: base + split (base a power of 2) */
	uint32_t used;                /* slots 1..used have been handed out */
	uint32_t count;               /* flows in the table */
	uint32_t newest, oldest, free;
	uint64_t evicted;             /* flows pushed out by a full table */
	uint64_t gen;                 /* bumped when a client's proxy changes or a flow goes
				       * (written under the caller's lock, read without it) */
	uint32_t *by_client, *by_proxy;  /* max_buckets each, base + split in use */
	struct ps_udpflow *f;         /* cap + 1; f[0] unused: index 0 means none */
};

/* Bytes of storage a table of cap flows needs (cap >= 1). */
size_t ps_udpmap_size(uint32_t cap);

/* An empty table of cap flows in storage (ps_udpmap_size(cap) bytes, aligned for
 * 8-byte words, any contents: only what is handed out is written first). */
void ps_udpmap_init(struct ps_udpmap *m, uint32_t cap, void *storage);

/* Records that proxy introduced client, now. unique_proxy (`first` mode): a proxy port
 * carries one flow, so an older client of that port is forgotten. Returns true when a
 * full table evicted its oldest flow to make room (*gone tells which). */
bool ps_udpmap_learn(struct ps_udpmap *m, const struct ps_addr *proxy,
		     const struct ps_addr *client, bool unique_proxy, uint64_t now_ms,
		     unsigned idle_ms, struct ps_udpflow *gone);

/* The client behind a proxy port (the flow's latest), refreshing it; false if none. */
bool ps_udpmap_client(struct ps_udpmap *m, const struct ps_addr *proxy, uint64_t now_ms,
		      unsigned idle_ms, struct ps_addr *client);

/* The proxy that introduced client, if that flow has not idled out; false if none. For
 * replies: it changes nothing, so the application's own sends never keep a flow alive
 * (only datagrams received through the proxy do). */
bool ps_udpmap_find_proxy(const struct ps_udpmap *m, const struct ps_addr *client,
			  uint64_t now_ms, unsigned idle_ms, struct ps_addr *proxy);

/* Same, without refreshing or expiring anything (a peek). */
bool ps_udpmap_peek_client(const struct ps_udpmap *m, const struct ps_addr *proxy,
			   uint64_t now_ms, unsigned idle_ms, struct ps_addr *client);

#endif
