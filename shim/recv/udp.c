/* UDP, receiving side. Each selected socket has a slot here (its flow table, its
 * local port and counters); its fd entries name the slot. Slots are as many as selected
 * sockets, each table as large as PROXYSHIM_UDP_FLOWS. A datagram is received whole
 * into a per-thread buffer, judged (shim/proto/dgram.c), and its payload copied to the
 * caller: one system call per datagram, nothing allocated. A reply looks its client up
 * in the sending socket's table, then in those of the other sockets of its port (the
 * SO_REUSEPORT worker and "connected UDP server" patterns reply from a socket that did
 * not receive the request). */
#include "udp.h"
#include "lock.h"
#include "dgram.h"
#include "log.h"
#include "real.h"
#include "recv.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

bool ps_udp_on;

/* Larger than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6). */
#define SCRATCH 65536

struct udp_sock {
	uint64_t cookie;          /* the socket's SO_COOKIE; 0: free */
	uint64_t dropped;
	struct ps_udpmap *map;    /* mapped on first use, never unmapped: readers hold it */
	size_t map_bytes;
	struct ps_lock lock;      /* guards map, and cookie and port while a slot is reset */
	uint16_t port;            /* its local port: replies search the slots of their port */
	uint32_t next;            /* the next slot of its port, a ring (socks_lock) */
	uint32_t free_next;       /* free list (socks_lock) */
	uint32_t seen;            /* sweep mark (socks_lock) */
};

/* Slots live in segments mapped on demand and never moved or unmapped, so an index
 * read from an fd entry stays a valid slot without a lock: segment k holds SEG0 << k
 * slots. A slot is held only by a socket some descriptor names (others are swept
 * before a segment is added), so SEGS segments cover every socket the fd table can
 * name. */
#define SEG0 64u
#define SEGS 19
_Static_assert((uint64_t)SEG0 * ((1u << SEGS) - 1) >= PS_FD_LIMIT, "a slot per fd");
static struct udp_sock *segs[SEGS];
static unsigned nslots;       /* slots 0..nslots-1 have been handed out at least once */

/* Sockets selected without a flow table of their own (no memory for one): headers are
 * still stripped and refused datagrams dropped, but nothing is learned, so `first`
 * flows and reply routing do not work for them. */
#define NO_SLOT UINT32_MAX
#define NONE UINT32_MAX       /* end of the free list */
static struct udp_sock no_slot;
static uint32_t free_head = NONE;
static uint32_t sweeps;
/* A slot of each port's ring, plus one (0: no slot has that port). Untouched ports
 * cost nothing (zero pages). */
static uint32_t port_ring[65536];
static struct ps_lock socks_lock;

/* A first segment starts at SEG0 * (2^k - 1). */
static inline uint32_t seg_of(uint32_t i)
{
	return 31u - (uint32_t)__builtin_clz(i / SEG0 + 1);
}

/* Slot i; no_slot for NO_SLOT (and anything not handed out). */
static inline struct udp_sock *slot(uint32_t i)
{
	if (i >= __atomic_load_n(&nslots, __ATOMIC_ACQUIRE))
		return &no_slot;
	uint32_t k = seg_of(i);
	return &__atomic_load_n(&segs[k], __ATOMIC_ACQUIRE)[i - SEG0 * ((1u << k) - 1)];
}
static pthread_key_t scratch_key;
static __thread __attribute__((tls_model("initial-exec"))) uint8_t *scratch;

/* Locks are shim/rt/lock.h's: a slot's held by this very thread (a signal handler
 * interrupted it) makes the caller go on without the flow table. */

/* Flow idle times are long (default 30 s): the coarse clock (a few ms) is enough and
 * the cheapest read. */
static uint64_t now_ms(void)
{
	return (uint64_t)ps_now_ms_coarse();
}

static void scratch_free(void *p)
{
	scratch = NULL;  /* a later destructor's recv maps a new one */
	munmap(p, SCRATCH);
}

static uint8_t *buffer(void)
{
	if (!scratch) {
		void *p = mmap(NULL, SCRATCH, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		scratch = p;
		pthread_setspecific(scratch_key, p);
	}
	return scratch;
}

void ps_udp_init(void)
{
	pthread_key_create(&scratch_key, scratch_free);
	ps_udp_on = true;
}

static struct ps_lock regs_lock;

void ps_udp_fork_child(void)
{
	ps_lock_reset(&socks_lock);
	ps_lock_reset(&regs_lock);
	ps_lock_reset(&no_slot.lock);
	for (uint32_t i = 0; i < nslots; i++)
		ps_lock_reset(&slot(i)->lock);
}

/* ---- selection ---- */

static void mark_used(int fd, const struct ps_fdinfo *e, void *ctx)
{
	(void)fd;
	(void)ctx;
	if (e->kind == PS_FD_UDP && e->slot != NO_SLOT)
		slot(e->slot)->seen = sweeps;
}

static void push_free(uint32_t i)
{
	slot(i)->free_next = free_head;
	free_head = i;
}

/* Takes slot i out of its port's ring. Its own 'next' is left as it was: a reply
 * walking the ring from it goes on around (walks are bounded, see ps_udp_reroute). */
static void unlink_port(uint32_t i)
{
	struct udp_sock *s = slot(i);
	uint32_t *head = &port_ring[s->port], p = i;
	for (uint32_t n = 0; slot(p)->next != i && n < nslots; n++)  /* bounded, as in find_slot */
		p = slot(p)->next;
	if (p == i || slot(p)->next != i) {
		*head = 0;
		return;
	}
	__atomic_store_n(&slot(p)->next, s->next, __ATOMIC_RELEASE);
	if (*head == i + 1)
		*head = p + 1;
}

/* Slots that no descriptor names any more are freed. With socks_lock held. */
static void sweep_slots(void)
{
	sweeps++;
	ps_fd_each(mark_used, NULL);
	for (uint32_t i = 0; i < nslots; i++) {
		struct udp_sock *s = slot(i);
		if (s->cookie && s->seen != sweeps) {
			__atomic_store_n(&s->cookie, 0, __ATOMIC_RELAXED);
			unlink_port(i);
			push_free(i);
		}
	}
}

/* A slot for a new socket: a free one; when there is none and the next slot would
 * start a segment, the slots no descriptor names are freed first; otherwise the next
 * slot, its segment mapped. NO_SLOT without memory. With socks_lock held. */
static uint32_t new_slot(void)
{
	uint32_t i = nslots, k = seg_of(i);
	bool first = i == SEG0 * ((1u << k) - 1);
	if (free_head == NONE && first && i)
		sweep_slots();
	if (free_head != NONE) {
		i = free_head;
		free_head = slot(i)->free_next;
		return i;
	}
	if (k >= SEGS)
		return NO_SLOT;
	if (first && !segs[k]) {
		void *p = mmap(NULL, (SEG0 << k) * sizeof(struct udp_sock), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return NO_SLOT;
		__atomic_store_n(&segs[k], p, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&nslots, i + 1, __ATOMIC_RELEASE);
	return i;
}

/* Gives slot i to a new socket: an empty table of PROXYSHIM_UDP_FLOWS flows, mapped on
 * first use and touched only as flows arrive; a table used before gives its pages back
 * (they read as zeros again). Under the slot's lock, as a reply on another socket of
 * the old port may be searching this table. */
static bool reset_slot(uint32_t i, uint64_t cookie, uint16_t port)
{
	struct udp_sock *s = slot(i);
	uint32_t cap = ps_active()->udp_flows;
	size_t head = (sizeof(struct ps_udpmap) + 15) & ~(size_t)15;
	if (!ps_lock(&s->lock))
		return false;
	if (s->map && s->map->cap != cap) {  /* never: the configuration is fixed at load */
		munmap(s->map, s->map_bytes);
		s->map = NULL;
	}
	if (!s->map) {
		size_t bytes = head + ps_udpmap_size(cap);
		/* No commit charge for the capacity: only the pages flows touch count. */
		void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		s->map = p == MAP_FAILED ? NULL : p;
		s->map_bytes = s->map ? bytes : 0;
	} else if (s->map->used) {
		madvise(s->map, s->map_bytes, MADV_DONTNEED);
	}
	if (s->map)
		ps_udpmap_init(s->map, cap, (char *)s->map + head);
	s->dropped = 0;
	__atomic_store_n(&s->port, port, __ATOMIC_RELAXED);
	s->cookie = s->map ? cookie : 0;
	ps_unlock(&s->lock);
	return s->map != NULL;
}

/* Slot i joins the ring of its port. With socks_lock held. */
static void link_port(uint32_t i, uint16_t port)
{
	struct udp_sock *s = slot(i);
	uint32_t h = port_ring[port];
	if (!h) {
		s->next = i;
		port_ring[port] = i + 1;
		return;
	}
	s->next = slot(h - 1)->next;
	__atomic_store_n(&slot(h - 1)->next, i, __ATOMIC_RELEASE);
}

/* The slot of socket cookie bound to port: the one it has (another descriptor of it
 * was selected), a free one, or a new one. NO_SLOT without memory. With socks_lock
 * held. */
static uint32_t find_slot(uint64_t cookie, uint16_t port)
{
	uint32_t h = port_ring[port];
	if (h) {
		uint32_t i = h - 1, n = 0;
		do {  /* bounded: a fork may have copied a ring half changed */
			if (slot(i)->cookie == cookie)
				return i;
			i = slot(i)->next;
		} while (i != h - 1 && ++n < nslots);
	}
	uint32_t i = new_slot();
	if (i == NO_SLOT)
		return NO_SLOT;
	if (!reset_slot(i, cookie, port)) {
		push_free(i);
		return NO_SLOT;
	}
	link_port(i, port);
	return i;
}

/* Records fd as a selected socket, with its socket's slot or NO_SLOT. The entry is
 * published under the registry lock so that no other thread frees the slot in
 * between. Returns false if fd could not be recorded at all. */
static bool record(int fd, int family, uint64_t cookie, uint16_t port)
{
	struct ps_fdinfo e = {.kind = PS_FD_UDP, .family = (uint16_t)family, .cookie = cookie,
			      .slot = NO_SLOT};
	bool locked = cookie && ps_lock(&socks_lock);
	if (locked)
		e.slot = find_slot(cookie, port);
	bool ok = ps_fd_set(fd, &e);
	if (locked)
		ps_unlock(&socks_lock);
	if (ok && e.slot == NO_SLOT)
		ps_log(PS_LOG_ERROR, "udp fd %d: no flow table for this socket (no memory for one): "
		       "headers are still removed, but replies are not routed to proxies "
		       "and `first` flows are not followed", fd);
	return ok;
}

bool ps_udp_select(int fd)
{
	const struct ps_config *c = ps_active();
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ps_addr local;
	int type = 0, proto = 0;
	socklen_t tl = sizeof(type), pl = sizeof(proto);
	if (!c || !ps_udp_on || real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) ||
	    type != SOCK_DGRAM || real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) ||
	    proto != IPPROTO_UDP)
		return false;
	if (real_getsockname(fd, (struct sockaddr *)&ss, &sl) ||
	    ps_addr_from_sockaddr(&local, (struct sockaddr *)&ss, sl) ||
	    !ps_portset_has(&c->udp_ports, local.port))
		return true;
	if (!record(fd, ss.ss_family, ps_fd_cookie(fd), local.port))
		ps_log(PS_LOG_ERROR, "udp fd %d: cannot track this socket: left untouched", fd);
	else
		ps_log(PS_LOG_INFO, "udp fd %d: port %u selected", fd, local.port);
	return true;
}

/* ---- receiving ---- */

/* Copies n bytes to the caller's iovecs; returns how many fitted. */
static size_t to_iov(const struct iovec *iov, size_t cnt, const uint8_t *p, size_t n)
{
	size_t done = 0;
	for (size_t i = 0; i < cnt && done < n; i++) {
		size_t k = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
		memcpy(iov[i].iov_base, p + done, k);
		done += k;
	}
	return done;
}

static void dropped(int fd, struct udp_sock *s, const struct ps_addr *real, const char *why)
{
	char a[PS_ADDR_STRLEN];
	uint64_t n = __atomic_add_fetch(&s->dropped, 1, __ATOMIC_RELAXED);
	ps_addr_format(real, a, sizeof(a));
	ps_log_limited("udp fd %d: datagram from %s dropped: %s (%llu dropped on this socket)",
		       fd, a, why, (unsigned long long)n);
}

static void evicted(int fd, uint32_t cap, const struct ps_udpflow *gone)
{
	char cl[PS_ADDR_STRLEN], px[PS_ADDR_STRLEN];
	ps_addr_format(&gone->client, cl, sizeof(cl));
	ps_addr_format(&gone->proxy, px, sizeof(px));
	ps_log_limited("udp fd %d: flow table full (%u flows): forgot the oldest, %s via %s",
		       fd, cap, cl, px);
}

/* The flow this thread learned last, for the reply that most servers send at once (an
 * echo, a DNS answer): it spares the reply the slot's lock and table lookup. It holds
 * while the slot still belongs to that socket (cookie), the table has changed no
 * mapping since (gen) and the flow has not idled out, which is what the lookup would
 * find. 'seq' is odd while it is written: a signal handler's receive on this thread
 * that interrupts a read makes the read a miss, and one that interrupts a write does
 * not write (the interrupted writer finishes its own record): never a mix of two flows. */
static __thread __attribute__((tls_model("initial-exec"))) struct {
	unsigned seq;
	uint32_t slot;
	uint64_t cookie, gen, at_ms;
	struct ps_addr client, proxy;
} last;

static void last_learned(uint32_t i, const struct udp_sock *s, uint64_t now,
			 const struct ps_addr *client, const struct ps_addr *proxy)
{
	if (last.seq & 1)
		return;
	last.seq++;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	last.slot = i;
	last.cookie = s->cookie;
	last.gen = s->map->gen;
	last.at_ms = now;
	last.client = *client;
	last.proxy = *proxy;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	last.seq++;
}

/* A proxy a socket of family can address (flows store addresses unmapped). */
static bool addressable(int family, const struct ps_addr *proxy)
{
	return family == AF_INET6 || proxy->family == AF_INET;
}

/* The proxy of client if this thread's last learned flow says it, on slot i. */
static bool last_says(uint32_t i, const struct ps_addr *client, uint64_t now,
		      unsigned idle_ms, struct ps_addr *proxy)
{
	unsigned seq = last.seq;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if ((seq & 1) || last.slot != i || !ps_addr_same(&last.client, client) ||
	    now - last.at_ms >= idle_ms)
		return false;
	struct udp_sock *s = slot(i);
	struct ps_udpmap *m = s->map;
	bool holds = __atomic_load_n(&s->cookie, __ATOMIC_RELAXED) == last.cookie && m &&
		     __atomic_load_n(&m->gen, __ATOMIC_ACQUIRE) == last.gen;
	*proxy = last.proxy;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	return holds && last.seq == seq;
}

/* Judges the datagram in buf under the slot's lock. */
static enum ps_dgram_verdict judge(int fd, const struct ps_fdinfo *e, const uint8_t *buf,
				   size_t n, const struct sockaddr_storage *from,
				   socklen_t fromlen, bool commit, struct ps_dgram *d)
{
	const struct ps_config *c = ps_active();
	struct udp_sock *s = slot(e->slot);
	struct ps_addr real;
	if (ps_addr_from_sockaddr(&real, (const struct sockaddr *)from, fromlen) < 0) {
		d->learned = d->evicted = false;
		d->why = "no sender address";
		return PS_DGRAM_DROP;
	}
	ps_addr_unmap(&real);
	uint64_t now = now_ms();
	bool locked = s->map && ps_lock(&s->lock);
	enum ps_dgram_verdict v = ps_dgram_judge(c, locked ? s->map : NULL, e->family, &real,
						 buf, n, now, commit, d);
	if (d->learned)
		last_learned(e->slot, s, now, &d->from, &real);
	if (locked)
		ps_unlock(&s->lock);
	if (commit && d->evicted)
		evicted(fd, s->map->cap, &d->gone);
	if (commit && v == PS_DGRAM_DROP)
		dropped(fd, s, &real, d->why);
	return v;
}

/* One raw receive into buf: the whole datagram, its sender, the caller's control
 * buffer. */
static ssize_t raw_recv(int fd, uint8_t *buf, struct sockaddr_storage *from,
			socklen_t *fromlen, struct msghdr *app, struct msghdr *m, int flags)
{
	struct iovec iov = {buf, SCRATCH};
	*m = (struct msghdr){.msg_name = from, .msg_namelen = sizeof(*from), .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = app ? app->msg_control : NULL,
			     .msg_controllen = app ? app->msg_controllen : 0};
	ssize_t n;
	if (m->msg_control) {
		n = real_recvmsg(fd, m, flags & ~MSG_TRUNC);
	} else {  /* the lighter call when no control data is wanted */
		n = real_recvfrom(fd, buf, SCRATCH, flags & ~MSG_TRUNC,
					(struct sockaddr *)from, &m->msg_namelen);
	}
	*fromlen = m->msg_namelen;
	return n;
}

ssize_t ps_udp_recvmsg(int fd, const struct ps_fdinfo *e, struct msghdr *msg, int flags)
{
	uint8_t *buf = buffer();
	struct sockaddr_storage from;
	socklen_t fromlen;
	struct msghdr m;
	struct ps_dgram d;
	if (!buf) {
		errno = ENOBUFS;
		return -1;
	}
	if (flags & MSG_ERRQUEUE)
		return real_recvmsg(fd, msg, flags);
	for (;;) {
		ssize_t n = raw_recv(fd, buf, &from, &fromlen, msg, &m, flags);
		if (n < 0)
			return -1;
		enum ps_dgram_verdict v = judge(fd, e, buf, (size_t)n, &from, fromlen,
						!(flags & MSG_PEEK), &d);
		if (v == PS_DGRAM_DELIVER) {
			size_t len = (size_t)n - d.off;
			size_t got = to_iov(msg->msg_iov, msg->msg_iovlen, buf + d.off, len);
			if (msg->msg_name)
				ps_report(msg->msg_name, &msg->msg_namelen, &d.from, e->family);
			msg->msg_controllen = m.msg_controllen;
			msg->msg_flags = (m.msg_flags & ~MSG_TRUNC) | (got < len ? MSG_TRUNC : 0);
			return (ssize_t)(flags & MSG_TRUNC ? len : got);
		}
		/* Refused or absorbed: never the application's. A peek leaves it queued,
		 * so take it now (judged again: a concurrent reader may have taken it
		 * first, and then this is the next one). */
		if (flags & MSG_PEEK) {
			n = raw_recv(fd, buf, &from, &fromlen, NULL, &m, MSG_DONTWAIT);
			if (n >= 0 && judge(fd, e, buf, (size_t)n, &from, fromlen, true, &d) ==
					      PS_DGRAM_DELIVER)
				ps_log_limited("udp fd %d: a datagram was lost to a concurrent "
					       "reader", fd);
		}
	}
}

int ps_udp_recvmmsg(int fd, const struct ps_fdinfo *e, struct mmsghdr *v, unsigned n,
		    int flags, struct timespec *timeout)
{
	long long end = timeout ? ps_now_ns() + timeout->tv_sec * 1000000000LL + timeout->tv_nsec
				: 0;
	unsigned i;
	for (i = 0; i < n; i++) {
		int f = flags & ~MSG_WAITFORONE;
		if (i && (flags & MSG_WAITFORONE))
			f |= MSG_DONTWAIT;
		ssize_t r = ps_udp_recvmsg(fd, e, &v[i].msg_hdr, f);
		if (r < 0)
			return i ? (int)i : -1;
		v[i].msg_len = (unsigned)r;
		if (timeout && ps_now_ns() >= end)
			return (int)i + 1;
	}
	return (int)i;
}

/* ---- replies ---- */

/* client's live flow in slot s if s is a socket of port (0: any); a proxy that a socket
 * of family cannot address does not count. Nothing is refreshed: only datagrams
 * received through the proxy keep a flow alive. */
static bool flow_in(struct udp_sock *s, uint16_t port, int family,
		    const struct ps_addr *client, uint64_t now, unsigned idle_ms,
		    struct ps_addr *proxy)
{
	if (!ps_lock(&s->lock))
		return false;
	bool found = __atomic_load_n(&s->cookie, __ATOMIC_RELAXED) && s->map &&
		     (!port || s->port == port) &&
		     ps_udpmap_find_proxy(s->map, client, now, idle_ms, proxy);
	ps_unlock(&s->lock);
	return found && addressable(family, proxy);
}

socklen_t ps_udp_reroute(const struct ps_fdinfo *e, const struct sockaddr *dst,
			 socklen_t len, struct sockaddr_storage *out)
{
	const struct ps_config *c = ps_active();
	struct ps_addr client, proxy;
	struct udp_sock *own = slot(e->slot);
	if (own == &no_slot || !dst || ps_addr_from_sockaddr(&client, dst, len) < 0)
		return 0;
	ps_addr_unmap(&client);
	uint64_t now = now_ms();
	bool found = (last_says(e->slot, &client, now, c->udp_idle_ms, &proxy) &&
		      addressable(e->family, &proxy)) ||
		     flow_in(own, 0, e->family, &client, now, c->udp_idle_ms, &proxy);
	/* The other sockets of the port, around its ring: a relaxed look at each one's
	 * port first, checked again under the slot's lock (the slot may be given to
	 * another socket). A ring changed meanwhile may lead elsewhere: the walk ends
	 * back at this socket, at a slot of another port, or after every slot. */
	uint16_t port = __atomic_load_n(&own->port, __ATOMIC_RELAXED);
	unsigned n = __atomic_load_n(&nslots, __ATOMIC_ACQUIRE);
	uint32_t i = e->slot;
	for (unsigned steps = 0; !found && steps < n; steps++) {
		i = __atomic_load_n(&slot(i)->next, __ATOMIC_ACQUIRE);
		struct udp_sock *s = slot(i);
		if (i == e->slot || s == &no_slot ||
		    __atomic_load_n(&s->port, __ATOMIC_RELAXED) != port)
			break;
		found = flow_in(s, port, e->family, &client, now, c->udp_idle_ms, &proxy);
	}
	return found ? ps_addr_to_sockaddr(&proxy, e->family, out) : 0;
}

int ps_udp_sendmmsg(int fd, const struct ps_fdinfo *e, struct mmsghdr *v, unsigned n,
		    int flags)
{
	enum { BATCH = 32 };
	struct mmsghdr b[BATCH];
	struct sockaddr_storage to[BATCH];
	unsigned done = 0;
	while (done < n) {
		unsigned k = n - done < BATCH ? n - done : BATCH;
		for (unsigned i = 0; i < k; i++) {
			struct msghdr *h = &v[done + i].msg_hdr;
			b[i] = v[done + i];
			socklen_t l = ps_udp_reroute(e, h->msg_name, h->msg_namelen, &to[i]);
			if (l) {
				b[i].msg_hdr.msg_name = &to[i];
				b[i].msg_hdr.msg_namelen = l;
			}
		}
		int r = real_sendmmsg(fd, b, k, flags);
		if (r < 0)
			return done ? (int)done : -1;
		for (int i = 0; i < r; i++)
			v[done + (unsigned)i].msg_len = b[i].msg_len;
		done += (unsigned)r;
		if ((unsigned)r < k)
			break;
	}
	return (int)done;
}

int ps_udp_connect(int fd, const struct ps_fdinfo *e, const struct sockaddr *dst,
		   socklen_t len)
{
	struct sockaddr_storage to;
	struct ps_fdinfo ne = *e;
	socklen_t l = ps_udp_reroute(e, dst, len, &to);
	int r = real_connect(fd, l ? (struct sockaddr *)&to : dst, l ? l : len);
	if (r == 0) {
		int saved = errno;
		ne.udp_flags &= (uint8_t)~PS_UDP_CONNECTED_MAPPED;
		if (l) {
			ne.udp_flags |= PS_UDP_CONNECTED_MAPPED;
			ps_addr_from_sockaddr(&ne.src, dst, len);
		}
		ps_fd_set(fd, &ne);
		errno = saved;
	}
	return r;
}

/* ---- readiness ---- */

/* Is a datagram for the application at the head of fd's queue? Refused ones in front
 * of it are taken away; *dropped tells whether there were any. Errors count as
 * readable: the application will see them. */
static bool readable(int fd, const struct ps_fdinfo *e, bool *dropped)
{
	uint8_t *buf = buffer();
	struct sockaddr_storage from;
	socklen_t fromlen;
	struct msghdr m;
	struct ps_dgram d;
	*dropped = false;
	if (!buf)
		return true;
	for (int i = 0; i < 1024; i++) {
		ssize_t n = raw_recv(fd, buf, &from, &fromlen, NULL, &m, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0)
			return errno != EAGAIN && errno != EWOULDBLOCK;
		if (judge(fd, e, buf, (size_t)n, &from, fromlen, false, &d) == PS_DGRAM_DELIVER)
			return true;
		n = raw_recv(fd, buf, &from, &fromlen, NULL, &m, MSG_DONTWAIT);
		*dropped = true;
		if (n >= 0 && judge(fd, e, buf, (size_t)n, &from, fromlen, true, &d) ==
				      PS_DGRAM_DELIVER)
			ps_log_limited("udp fd %d: a datagram was lost to a concurrent reader", fd);
	}
	return true;
}

/* poll and select name the descriptor: readiness with nothing left to read goes. */
static bool withdraw(int fd)
{
	struct ps_fdinfo e;
	bool dropped;
	return ps_udp_get(fd, &e) && !readable(fd, &e, &dropped);
}

int ps_udp_filter_poll(struct pollfd *fds, nfds_t n, int r)
{
	for (nfds_t i = 0; i < n && r > 0; i++) {
		if (!(fds[i].revents & (POLLIN | POLLRDNORM)) || !withdraw(fds[i].fd))
			continue;
		fds[i].revents &= (short)~(POLLIN | POLLRDNORM);
		if (!fds[i].revents)
			r--;
	}
	return r;
}

int ps_udp_filter_select(int nfds, fd_set *rd, int r)
{
	for (int fd = 0; fd < nfds && r > 0; fd++)
		if (FD_ISSET(fd, rd) && withdraw(fd)) {
			FD_CLR(fd, rd);
			r--;
		}
	return r;
}

/* Registrations of selected sockets in epoll sets: the event data the application
 * chose is all epoll_wait returns, so it is mapped back to the descriptor here. */
struct reg {
	int epfd, fd;
	uint64_t cookie, data;
	uint32_t events;
};
static struct reg *regs;      /* regs_cap entries, mmap'd; doubles when full */
static unsigned regs_cap;
unsigned ps_udp_nregs;

/* Room for one more registration. Called with regs_lock held (as every reader is). */
static bool regs_room(void)
{
	if (ps_udp_nregs < regs_cap)
		return true;
	unsigned cap = regs_cap ? regs_cap * 2 : 64;
	struct reg *r = mmap(NULL, cap * sizeof(*r), PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED)
		return false;
	if (regs) {
		memcpy(r, regs, ps_udp_nregs * sizeof(*r));
		munmap(regs, regs_cap * sizeof(*r));
	}
	regs = r;
	regs_cap = cap;
	return true;
}

/* Registrations whose descriptor is no longer that selected socket go (swept when
 * the table is full, before it grows). Called with regs_lock held. */
static void sweep(void)
{
	struct ps_fdinfo e;
	for (unsigned i = 0; i < ps_udp_nregs;)
		if (ps_udp_get(regs[i].fd, &e) && e.cookie == regs[i].cookie)
			i++;
		else
			regs[i] = regs[--ps_udp_nregs];
}

void ps_udp_epoll(int epfd, int op, int fd, const struct epoll_event *ev)
{
	struct ps_fdinfo e;
	bool sel = ps_udp_get(fd, &e);
	if ((!sel && !ps_udp_epoll_watched()) || !ps_lock(&regs_lock))
		return;
	unsigned i = 0;
	while (i < ps_udp_nregs && !(regs[i].epfd == epfd && regs[i].fd == fd))
		i++;
	if (op == EPOLL_CTL_DEL || !sel) {
		if (i < ps_udp_nregs)
			regs[i] = regs[--ps_udp_nregs];
	} else {
		if (i == ps_udp_nregs && ps_udp_nregs == regs_cap)
			sweep();
		if (i == ps_udp_nregs && regs_room())
			ps_udp_nregs++;
		if (i < ps_udp_nregs)
			regs[i] = (struct reg){.epfd = epfd, .fd = fd, .cookie = e.cookie,
					       .data = ev ? ev->data.u64 : 0,
					       .events = ev ? ev->events : 0};
		else
			ps_log_limited("udp fd %d: no memory for its epoll registration (%u "
				       "registrations): its readiness is not filtered", fd, regs_cap);
	}
	ps_unlock(&regs_lock);
}

/* The selected socket behind an event of epfd: the registration with that event data,
 * if exactly one has it (data shared by several descriptors says nothing). */
static bool event_reg(int epfd, uint64_t data, struct reg *out)
{
	int found = 0;
	if (!ps_lock(&regs_lock))
		return false;
	for (unsigned k = 0; k < ps_udp_nregs; k++)
		if (regs[k].epfd == epfd && regs[k].data == data) {
			*out = regs[k];
			found++;
		}
	ps_unlock(&regs_lock);
	return found == 1;
}

int ps_udp_filter_epoll(int epfd, struct epoll_event *ev, int r)
{
	struct ps_fdinfo e;
	struct reg rg = {.fd = -1};
	int out = 0;
	bool dropped;
	/* An event only names its data: it is withdrawn only if refused datagrams were
	 * really taken from the socket behind it and nothing is left. A socket found empty
	 * at once did not cause the event (another descriptor with the same data did). */
	for (int i = 0; i < r; i++) {
		if (ev[i].events & (EPOLLIN | EPOLLRDNORM) && event_reg(epfd, ev[i].data.u64, &rg) &&
		    ps_udp_get(rg.fd, &e) && e.cookie == rg.cookie &&
		    !readable(rg.fd, &e, &dropped) && dropped) {
			ev[i].events &= ~(uint32_t)(EPOLLIN | EPOLLRDNORM);
			if (!ev[i].events) {
				/* A one-shot registration fired for nothing: arm it again. */
				if (rg.events & EPOLLONESHOT)
					real_epoll_ctl(epfd, EPOLL_CTL_MOD, rg.fd,
						       &(struct epoll_event){.events = rg.events,
									     .data.u64 = rg.data});
				continue;
			}
		}
		ev[out++] = ev[i];
	}
	return out;
}
