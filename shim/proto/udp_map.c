/* Flow table of a selected UDP socket: slots in an array, two hash indexes (client,
 * proxy) as chains of slot numbers, and a recency list whose tail is both the next to
 * expire and the one to evict. The indexes grow by linear hashing: bucket 'split' of
 * the first 'base' is divided between itself and bucket split + base, so the buckets
 * in use stay at least twice the flows at the cost of one short chain walk at a time. */
#include "udp_map.h"

#include <string.h>

/* The first buckets: a table of a few flows touches one page of each index. */
#define MIN_BUCKETS 16u

static uint32_t hash(const struct ps_addr *a)
{
	uint32_t w[4];
	uint64_t h = 0x9E3779B97F4A7C15ull ^ a->port ^ (uint64_t)a->family << 16;
	memcpy(w, a->ip, sizeof(w));
	h = (h ^ w[0]) * 0xFF51AFD7ED558CCDull;
	if (a->family != AF_INET)  /* unrolled: IPv4 is one word */
		for (int i = 1; i < 4; i++)
			h = (h ^ w[i]) * 0xFF51AFD7ED558CCDull;
	return (uint32_t)(h >> 32);
}

/* Buckets below 'split' have been divided already: they take one more bit. */
static uint32_t bucket(const struct ps_udpmap *m, const struct ps_addr *a)
{
	uint32_t h = hash(a), b = h & (m->base - 1);
	return b < m->split ? h & (2 * m->base - 1) : b;
}

static uint32_t buckets_for(uint32_t cap)
{
	uint32_t b = MIN_BUCKETS;
	while (b < 2 * (uint64_t)cap)
		b <<= 1;
	return b;
}

size_t ps_udpmap_size(uint32_t cap)
{
	return 2 * (size_t)buckets_for(cap) * sizeof(uint32_t) +
	       ((size_t)cap + 1) * sizeof(struct ps_udpflow);
}

void ps_udpmap_init(struct ps_udpmap *m, uint32_t cap, void *storage)
{
	uint32_t nb = buckets_for(cap);
	*m = (struct ps_udpmap){.cap = cap, .max_buckets = nb, .base = MIN_BUCKETS};
	m->by_client = storage;
	m->by_proxy = m->by_client + nb;
	m->f = (struct ps_udpflow *)(m->by_proxy + nb);  /* 2 * nb words: 8-byte aligned */
	memset(m->by_client, 0, MIN_BUCKETS * sizeof(uint32_t));
	memset(m->by_proxy, 0, MIN_BUCKETS * sizeof(uint32_t));
}

/* Divides the chain of bucket 'split' of one index between it and split + base. */
static void split_chain(struct ps_udpmap *m, uint32_t *heads, bool by_client)
{
	uint32_t lo = 0, hi = 0, i = heads[m->split];
	while (i) {
		struct ps_udpflow *f = &m->f[i];
		uint32_t *next = by_client ? &f->next_c : &f->next_p;
		uint32_t after = *next;
		uint32_t h = hash(by_client ? &f->client : &f->proxy);
		uint32_t *head = h & m->base ? &hi : &lo;
		*next = *head;
		*head = i;
		i = after;
	}
	heads[m->split] = lo;
	heads[m->split + m->base] = hi;
}

/* Buckets in use: at least twice the flows, up to max_buckets. */
static void grow(struct ps_udpmap *m)
{
	while (m->base + m->split < 2 * (uint64_t)m->count &&
	       m->base + m->split < m->max_buckets) {
		split_chain(m, m->by_client, true);
		split_chain(m, m->by_proxy, false);
		if (++m->split == m->base) {
			m->base *= 2;
			m->split = 0;
		}
	}
}

/* Unhooks slot i from the chain starting at *head, linked through field off. */
static void unchain(struct ps_udpmap *m, uint32_t *head, uint32_t i, bool by_client)
{
	while (*head && *head != i)
		head = by_client ? &m->f[*head].next_c : &m->f[*head].next_p;
	if (*head)
		*head = by_client ? m->f[i].next_c : m->f[i].next_p;
}

static void unlist(struct ps_udpmap *m, uint32_t i)
{
	struct ps_udpflow *f = &m->f[i];
	if (f->newer)
		m->f[f->newer].older = f->older;
	else
		m->newest = f->older;
	if (f->older)
		m->f[f->older].newer = f->newer;
	else
		m->oldest = f->newer;
	f->newer = f->older = 0;
}

static void push_newest(struct ps_udpmap *m, uint32_t i, uint64_t now_ms)
{
	struct ps_udpflow *f = &m->f[i];
	f->last_ms = now_ms;
	f->older = m->newest;
	f->newer = 0;
	if (m->newest)
		m->f[m->newest].newer = i;
	m->newest = i;
	if (!m->oldest)
		m->oldest = i;
}

/* Flow i (0: none) was used now: it becomes the newest. */
static bool refresh(struct ps_udpmap *m, uint32_t i, uint64_t now_ms)
{
	if (i) {
		unlist(m, i);
		push_newest(m, i, now_ms);
	}
	return i != 0;
}

/* A mapping changed or went: what a reader learned before no longer holds. */
static void changed(struct ps_udpmap *m)
{
	__atomic_store_n(&m->gen, m->gen + 1, __ATOMIC_RELEASE);
}

static void drop(struct ps_udpmap *m, uint32_t i)
{
	changed(m);
	unchain(m, &m->by_client[bucket(m, &m->f[i].client)], i, true);
	unchain(m, &m->by_proxy[bucket(m, &m->f[i].proxy)], i, false);
	unlist(m, i);
	m->f[i].next_c = m->free;
	m->free = i;
	m->count--;
}

static void expire(struct ps_udpmap *m, uint64_t now_ms, unsigned idle_ms)
{
	while (m->oldest && now_ms - m->f[m->oldest].last_ms >= idle_ms)
		drop(m, m->oldest);
}

static uint32_t find_client(const struct ps_udpmap *m, const struct ps_addr *a)
{
	uint32_t i = m->by_client[bucket(m, a)];
	while (i && !ps_addr_same(&m->f[i].client, a))
		i = m->f[i].next_c;
	return i;
}

static uint32_t find_proxy(const struct ps_udpmap *m, const struct ps_addr *a)
{
	uint32_t i = m->by_proxy[bucket(m, a)];
	while (i && !ps_addr_same(&m->f[i].proxy, a))
		i = m->f[i].next_p;
	return i;
}

static void chain_proxy(struct ps_udpmap *m, uint32_t i)
{
	uint32_t *head = &m->by_proxy[bucket(m, &m->f[i].proxy)];
	m->f[i].next_p = *head;
	*head = i;
}

bool ps_udpmap_learn(struct ps_udpmap *m, const struct ps_addr *proxy,
		     const struct ps_addr *client, bool unique_proxy, uint64_t now_ms,
		     unsigned idle_ms, struct ps_udpflow *gone)
{
	bool evicted = false;
	expire(m, now_ms, idle_ms);
	uint32_t i = find_client(m, client);
	if (unique_proxy) {
		uint32_t j = find_proxy(m, proxy);
		if (j && j != i)
			drop(m, j);
	}
	if (i) {
		if (!ps_addr_same(&m->f[i].proxy, proxy)) {
			changed(m);
			unchain(m, &m->by_proxy[bucket(m, &m->f[i].proxy)], i, false);
			m->f[i].proxy = *proxy;
			chain_proxy(m, i);
		}
		refresh(m, i, now_ms);
		return false;
	}
	if (m->free) {
		i = m->free;
		m->free = m->f[i].next_c;
	} else if (m->used < m->cap) {
		i = ++m->used;
	} else {
		i = m->oldest;
		if (gone)
			*gone = m->f[i];
		drop(m, i);
		m->free = m->f[i].next_c;
		m->evicted++;
		evicted = true;
	}
	m->f[i] = (struct ps_udpflow){.client = *client, .proxy = *proxy};
	uint32_t *head = &m->by_client[bucket(m, client)];
	m->f[i].next_c = *head;
	*head = i;
	chain_proxy(m, i);
	push_newest(m, i, now_ms);
	m->count++;
	grow(m);
	return evicted;
}

bool ps_udpmap_client(struct ps_udpmap *m, const struct ps_addr *proxy, uint64_t now_ms,
		      unsigned idle_ms, struct ps_addr *client)
{
	expire(m, now_ms, idle_ms);
	uint32_t i = find_proxy(m, proxy);
	if (i)
		*client = m->f[i].client;
	return refresh(m, i, now_ms);
}

bool ps_udpmap_find_proxy(const struct ps_udpmap *m, const struct ps_addr *client,
			  uint64_t now_ms, unsigned idle_ms, struct ps_addr *proxy)
{
	uint32_t i = find_client(m, client);
	if (!i || now_ms - m->f[i].last_ms >= idle_ms)
		return false;
	*proxy = m->f[i].proxy;
	return true;
}

bool ps_udpmap_peek_client(const struct ps_udpmap *m, const struct ps_addr *proxy,
			   uint64_t now_ms, unsigned idle_ms, struct ps_addr *client)
{
	uint32_t i = find_proxy(m, proxy);
	if (!i || now_ms - m->f[i].last_ms >= idle_ms)
		return false;
	*client = m->f[i].client;
	return true;
}
