/* UDP, receiving side. Each selected socket has a slot here (its flow table and
 * counters); its fd entries name the slot. A datagram is received whole into a
 * per-thread buffer, judged (shim/dgram.c), and its payload copied to the caller:
 * one system call per datagram, nothing allocated. */
#include "udp.h"
#include "dgram.h"
#include "log.h"
#include "real.h"
#include "shim.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

bool ps_udp_on;

/* Larger than any UDP payload (65,507 bytes over IPv4, 65,527 over IPv6). */
#define SCRATCH 65536
#define SLOTS 64
#define SPINS 4096

struct udp_sock {
	uint64_t cookie;          /* the socket's SO_COOKIE; 0: free */
	int lock;                 /* guards map */
	uint64_t dropped;
	struct ps_udpmap *map;
};

static struct udp_sock socks[SLOTS];
static int socks_lock;
static pthread_key_t scratch_key;
static __thread __attribute__((tls_model("initial-exec"))) uint8_t *scratch;

/* Spin locks that give up: a signal handler interrupting its own thread's holder must
 * not wait forever (it then works without the flow table). */
static bool lock(int *l)
{
	for (int i = 0; i < SPINS; i++)
		if (!__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
			return true;
	return false;
}

static void unlock(int *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* Flow idle times are long (default 30 s): the coarse clock (a few ms) is enough and
 * the cheapest read. */
static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void scratch_free(void *p)
{
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

/* ---- selection ---- */

static void mark_used(int fd, const struct ps_fdinfo *e, void *used)
{
	(void)fd;
	if (e->kind == PS_FD_UDP && e->sent < SLOTS)
		((bool *)used)[e->sent] = true;
}

/* A slot for the socket with this cookie (the one it has, or a free one); frees slots
 * no descriptor names any more when all are taken. -1 if none. */
static int slot_for(uint64_t cookie)
{
	int got = -1;
	if (!lock(&socks_lock))
		return -1;
	for (int i = 0; i < SLOTS && got < 0; i++)
		if (socks[i].cookie == cookie)
			got = i;
	for (int pass = 0; pass < 2 && got < 0; pass++) {
		for (int i = 0; i < SLOTS && got < 0; i++)
			if (!socks[i].cookie)
				got = i;
		if (got < 0 && pass == 0) {
			bool used[SLOTS] = {0};
			ps_fd_each(mark_used, used);
			for (int i = 0; i < SLOTS; i++)
				if (!used[i])
					socks[i].cookie = 0;
		}
	}
	if (got >= 0 && socks[got].cookie != cookie) {
		struct udp_sock *s = &socks[got];
		if (!s->map) {  /* pages are touched only as flows arrive */
			void *p = mmap(NULL, sizeof(*s->map), PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			s->map = p == MAP_FAILED ? NULL : p;
		} else {
			memset(s->map, 0, sizeof(*s->map));
		}
		s->dropped = 0;
		s->cookie = s->map ? cookie : 0;
		if (!s->map)
			got = -1;
	}
	unlock(&socks_lock);
	return got;
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
	uint64_t cookie = ps_fd_cookie(fd);
	int s = cookie ? slot_for(cookie) : -1;
	if (s < 0) {
		ps_log(PS_LOG_ERROR, "udp fd %d: no room to track this socket: left untouched", fd);
		return true;
	}
	ps_fd_set(fd, &(struct ps_fdinfo){.kind = PS_FD_UDP, .family = ss.ss_family,
					  .cookie = cookie, .sent = (uint32_t)s});
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

static void evicted(int fd, const struct ps_udpflow *gone)
{
	char cl[PS_ADDR_STRLEN], px[PS_ADDR_STRLEN];
	ps_addr_format(&gone->client, cl, sizeof(cl));
	ps_addr_format(&gone->proxy, px, sizeof(px));
	ps_log_limited("udp fd %d: flow table full (%u flows): forgot the oldest, %s via %s",
		       fd, PS_UDPMAP_CAP, cl, px);
}

/* Judges the datagram in buf under the slot's lock. */
static enum ps_dgram_verdict judge(int fd, const struct ps_fdinfo *e, const uint8_t *buf,
				   size_t n, const struct sockaddr_storage *from,
				   socklen_t fromlen, bool commit, struct ps_dgram *d)
{
	const struct ps_config *c = ps_active();
	struct udp_sock *s = &socks[e->sent];
	struct ps_addr real;
	if (ps_addr_from_sockaddr(&real, (const struct sockaddr *)from, fromlen) < 0) {
		d->why = "no sender address";
		return PS_DGRAM_DROP;
	}
	ps_addr_unmap(&real);
	bool locked = lock(&s->lock);
	enum ps_dgram_verdict v =
		ps_dgram_judge(c, locked ? s->map : NULL, &real, buf, n, now_ms(), commit, d);
	if (locked)
		unlock(&s->lock);
	if (v == PS_DGRAM_DELIVER && e->family == AF_INET && d->from.family == AF_INET6) {
		d->why = "IPv6 client on an IPv4 socket";
		v = PS_DGRAM_DROP;
	}
	if (commit && d->evicted)
		evicted(fd, &d->gone);
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
		n = REAL_LAZY(recvmsg)(fd, m, flags & ~MSG_TRUNC);
	} else {  /* the lighter call when no control data is wanted */
		n = REAL_LAZY(recvfrom)(fd, buf, SCRATCH, flags & ~MSG_TRUNC,
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
		return REAL_LAZY(recvmsg)(fd, msg, flags);
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
	struct timespec end = {0}, now;
	if (timeout) {
		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += timeout->tv_sec + (end.tv_nsec + timeout->tv_nsec) / 1000000000;
		end.tv_nsec = (end.tv_nsec + timeout->tv_nsec) % 1000000000;
	}
	unsigned i;
	for (i = 0; i < n; i++) {
		int f = flags & ~MSG_WAITFORONE;
		if (i && (flags & MSG_WAITFORONE))
			f |= MSG_DONTWAIT;
		ssize_t r = ps_udp_recvmsg(fd, e, &v[i].msg_hdr, f);
		if (r < 0)
			return i ? (int)i : -1;
		v[i].msg_len = (unsigned)r;
		if (timeout) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > end.tv_sec ||
			    (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
				return (int)i + 1;
		}
	}
	return (int)i;
}

/* ---- replies ---- */

socklen_t ps_udp_reroute(const struct ps_fdinfo *e, const struct sockaddr *dst,
			 socklen_t len, struct sockaddr_storage *out)
{
	const struct ps_config *c = ps_active();
	struct udp_sock *s = &socks[e->sent];
	struct ps_addr client, proxy;
	if (!dst || ps_addr_from_sockaddr(&client, dst, len) < 0)
		return 0;
	ps_addr_unmap(&client);
	if (!lock(&s->lock))
		return 0;
	bool found = ps_udpmap_proxy(s->map, &client, now_ms(), c->udp_idle_ms, &proxy);
	unlock(&s->lock);
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
		int r = REAL_LAZY(sendmmsg)(fd, b, k, flags);
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
		ne.selected &= (uint8_t)~PS_UDP_CONNECTED_MAPPED;
		if (l) {
			ne.selected |= PS_UDP_CONNECTED_MAPPED;
			ps_addr_from_sockaddr(&ne.src, dst, len);
		}
		ps_fd_set(fd, &ne);
		errno = saved;
	}
	return r;
}

/* ---- readiness ---- */

/* Is a datagram for the application at the head of fd's queue? Refused ones in front
 * of it are taken away. Errors count as readable: the application will see them. */
static bool readable(int fd, const struct ps_fdinfo *e)
{
	uint8_t *buf = buffer();
	struct sockaddr_storage from;
	socklen_t fromlen;
	struct msghdr m;
	struct ps_dgram d;
	if (!buf)
		return true;
	for (int i = 0; i < 1024; i++) {
		ssize_t n = raw_recv(fd, buf, &from, &fromlen, NULL, &m, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0)
			return errno != EAGAIN && errno != EWOULDBLOCK;
		if (judge(fd, e, buf, (size_t)n, &from, fromlen, false, &d) == PS_DGRAM_DELIVER)
			return true;
		n = raw_recv(fd, buf, &from, &fromlen, NULL, &m, MSG_DONTWAIT);
		if (n >= 0 && judge(fd, e, buf, (size_t)n, &from, fromlen, true, &d) ==
				      PS_DGRAM_DELIVER)
			ps_log_limited("udp fd %d: a datagram was lost to a concurrent reader", fd);
	}
	return true;
}

int ps_udp_filter_poll(struct pollfd *fds, nfds_t n, int r)
{
	struct ps_fdinfo e;
	for (nfds_t i = 0; i < n && r > 0; i++) {
		if (!(fds[i].revents & (POLLIN | POLLRDNORM)) || !ps_udp_get(fds[i].fd, &e) ||
		    readable(fds[i].fd, &e))
			continue;
		fds[i].revents &= (short)~(POLLIN | POLLRDNORM);
		if (!fds[i].revents)
			r--;
	}
	return r;
}

int ps_udp_filter_select(int nfds, fd_set *rd, int r)
{
	struct ps_fdinfo e;
	for (int fd = 0; fd < nfds && r > 0; fd++)
		if (FD_ISSET(fd, rd) && ps_udp_get(fd, &e) && !readable(fd, &e)) {
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
#define REGS 64
static struct reg regs[REGS];
static unsigned nregs;
static int regs_lock;

bool ps_udp_epoll_watched(void)
{
	return __atomic_load_n(&nregs, __ATOMIC_RELAXED) != 0;
}

void ps_udp_epoll(int epfd, int op, int fd, const struct epoll_event *ev)
{
	struct ps_fdinfo e;
	bool sel = ps_udp_get(fd, &e);
	if ((!sel && !ps_udp_epoll_watched()) || !lock(&regs_lock))
		return;
	unsigned i = 0;
	while (i < nregs && !(regs[i].epfd == epfd && regs[i].fd == fd))
		i++;
	if (op == EPOLL_CTL_DEL || !sel) {
		if (i < nregs)
			regs[i] = regs[--nregs];
	} else if (i < nregs || nregs < REGS) {
		if (i == nregs)
			nregs++;
		regs[i] = (struct reg){.epfd = epfd, .fd = fd, .cookie = e.cookie,
				       .data = ev ? ev->data.u64 : 0, .events = ev ? ev->events : 0};
	}
	unlock(&regs_lock);
}

int ps_udp_filter_epoll(int epfd, struct epoll_event *ev, int r)
{
	struct ps_fdinfo e;
	int out = 0;
	for (int i = 0; i < r; i++) {
		struct reg rg = {.fd = -1};
		if (ev[i].events & (EPOLLIN | EPOLLRDNORM) && lock(&regs_lock)) {
			for (unsigned k = 0; k < nregs; k++)
				if (regs[k].epfd == epfd && regs[k].data == ev[i].data.u64)
					rg = regs[k];
			unlock(&regs_lock);
		}
		if (rg.fd >= 0 && ps_udp_get(rg.fd, &e) && e.cookie == rg.cookie &&
		    !readable(rg.fd, &e)) {
			ev[i].events &= ~(uint32_t)(EPOLLIN | EPOLLRDNORM);
			/* A one-shot registration fired for nothing: arm it again. */
			if (rg.events & EPOLLONESHOT)
				real_epoll_ctl(epfd, EPOLL_CTL_MOD, rg.fd,
					       &(struct epoll_event){.events = rg.events,
								     .data.u64 = rg.data});
			if (!ev[i].events)
				continue;
		}
		ev[out++] = ev[i];
	}
	return out;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ps_deadline_start(struct ps_deadline *d, int timeout_ms)
{
	d->forever = timeout_ms < 0;
	d->end_ns = now_ns() + (timeout_ms > 0 ? (uint64_t)timeout_ms * 1000000u : 0);
}

int ps_deadline_left_ms(const struct ps_deadline *d)
{
	if (d->forever)
		return -1;
	uint64_t now = now_ns();
	if (now >= d->end_ns)
		return 0;
	uint64_t ms = (d->end_ns - now + 999999) / 1000000;  /* never 0 while time is left */
	return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}
