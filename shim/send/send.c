/* connect → record the header → write it before the first application byte.
 *
 * Fails closed: the header is written exactly once, and never guessed sent. The
 * kernel's own count of the bytes ever written to the socket (acknowledged bytes plus
 * the send queue) must equal the header bytes the shim wrote until the header is
 * complete; any difference means bytes left by a path no hook sees (stdio writes
 * through libc's internal __write, a raw syscall), and the connection is reset.
 *
 * Who writes: one writer at a time per socket. Before a fork the claim is a
 * process-private stripe word; a header still pending at fork moves to a slot of a
 * MAP_SHARED table keyed by SO_COOKIE, so that parent and child see one progress
 * count and one claim. */
#include "send.h"
#include "fdtable.h"
#include "log.h"
#include "pp.h"
#include "real.h"
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>  /* snprintf only: no stream */
#include <sys/ioctl.h>
#include <sys/mman.h>

/* A SEND entry's 'progress' word. */
#define SENT_BYTES 0xffffu            /* header bytes written (when there is no slot) */
#define SENT_SLOT_SHIFT 16            /* shared slot index + 1; 0: none */
#define SENT_SLOT_MASK (0xffu << SENT_SLOT_SHIFT)
#define SENT_DONE (1u << 24)          /* header complete (or connection given up) */
#define SENT_ALIASED (1u << 25)       /* dup'd: completion marks every copy */
#define SENT_ORPHAN (1u << 26)        /* fork child that could not share: I/O fails */

/* Headers pending at fork are rare (a fork between connect and the first I/O). A slot
 * lives until its header completes, the connection dies, or no process can still reach
 * it: every process holding a copy of the pending state is enlisted in the slot (its
 * pid), a fork in flight counts in 'state' until the child enlists itself, and the
 * last one to let go (close, exec) frees it; a pid the kernel reports gone no longer
 * holds. When none is free the child's I/O on that socket fails (logged); the parent
 * keeps sending alone. */
#define SLOTS 64
#define SLOT_FINISHED 0x80000000u
#define HOLDERS 16                    /* more: the slot is pinned until its header completes */
#define COOKIE_SETUP UINT64_MAX       /* a slot being set up: no SO_COOKIE reaches it */

/* state: forks in flight, flags, and a sequence bumped by every enlistment, so that a
 * reclaimer's compare-and-swap fails if anyone enlisted since it looked. Forks in flight
 * outlive the slot's use (a fork that failed is never told): they carry over. */
#define ST_INFLIGHT 0x3fffffffull
#define ST_PINNED (1ull << 30)        /* a holder did not fit: freed only when finished */
#define ST_DEAD (1ull << 31)          /* reclaimed: no one may enlist */
#define ST_SEQ (1ull << 32)

struct pend {
	_Atomic uint64_t cookie;  /* 0: free */
	_Atomic uint32_t owner;   /* thread id of the writer, 0: none */
	_Atomic uint32_t sent;    /* header bytes written; SLOT_FINISHED once over */
	_Atomic uint64_t state;
	_Atomic int32_t pid[HOLDERS];  /* enlisted processes, 0: none */
};

static struct pend *pend;             /* MAP_SHARED: fork children see the same */
#define STRIPES 64
static _Atomic uint32_t stripe[STRIPES];  /* pre-fork claims, by cookie */
static _Atomic bool ever_pending;     /* spares fork a table scan when never needed */

/* This process's enlistments: which slots, for which socket, under which pid. A process
 * that did not run the fork handlers (vfork, a raw clone) has another pid than 'self'
 * and is enlisted nowhere. */
static _Atomic uint64_t held;
static _Atomic uint64_t held_cookie[SLOTS];
static _Atomic int32_t self;
static _Atomic uint64_t forking;      /* slots whose fork in flight this fork counted */
static _Atomic uint32_t sharing;      /* odd while slots are being taken (see drop_unused) */
static _Atomic bool execing;          /* enlistments let go for an exec that may fail */

enum { ST_SYN_SENT = 2, ST_CLOSE = 7 };   /* include/net/tcp_states.h */

/* The inbound connection the calling thread accepted last (relay mode), and the
 * socket's identity so that a reused fd number is not mistaken for it. */
static __thread __attribute__((tls_model("initial-exec"))) int last_fd = -1;
static __thread __attribute__((tls_model("initial-exec"))) uint64_t last_cookie;

void ps_send_accepted(int fd)
{
	const struct ps_config *c = ps_send_active();
	if (fd >= 0 && c && c->send_source == PS_SOURCE_ACCEPTED) {
		last_fd = fd;
		last_cookie = ps_fd_cookie(fd);
	}
}

/* The original client of the inbound connection: getpeername() here is the public
 * name on purpose, so that libproxyshim.so, preloaded in either order, answers it. */
static int accepted_client(struct ps_addr *src)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (last_fd < 0 || ps_fd_cookie(last_fd) != last_cookie ||
	    getpeername(last_fd, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	return ps_addr_from_sockaddr(src, (struct sockaddr *)&ss, sl);
}

static int header_source(int fd, const struct ps_config *c, struct ps_addr *src)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (c->send_source == PS_SOURCE_FIXED) {
		*src = c->send_fixed;
		return 0;
	}
	if (c->send_source == PS_SOURCE_ACCEPTED && accepted_client(src) == 0)
		return 0;
	if (real_getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	return ps_addr_from_sockaddr(src, (struct sockaddr *)&ss, sl);
}

static int is_tcp(int fd)
{
	int proto = 0;
	socklen_t pl = sizeof(proto);
	return real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) == 0 &&
	       proto == IPPROTO_TCP;
}

/* Bytes the application and the shim ever wrote to the socket (any process), -1 if
 * unknown. Read twice around SIOCOUTQ so that an ACK in between is not miscounted. */
static long long written(int fd)
{
	for (int i = 0; i < 4; i++) {
		struct tcp_info a = {0}, b = {0};
		socklen_t la = sizeof(a), lb = sizeof(b);
		int q = 0;
		if (real_getsockopt(fd, IPPROTO_TCP, TCP_INFO, &a, &la) < 0 ||
		    la < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(a.tcpi_bytes_acked) ||
		    ps_syscall(SYS_ioctl, fd, SIOCOUTQ, &q) < 0 ||
		    real_getsockopt(fd, IPPROTO_TCP, TCP_INFO, &b, &lb) < 0)
			return -1;
		if (a.tcpi_state == ST_CLOSE)
			return -1;
		if (a.tcpi_state == ST_SYN_SENT)
			return 0;
		if (a.tcpi_bytes_acked != b.tcpi_bytes_acked || a.tcpi_state != b.tcpi_state)
			continue;
		/* the SYN counts one once acknowledged */
		return (long long)a.tcpi_bytes_acked - (a.tcpi_bytes_acked > 0) + q;
	}
	return -1;
}

static size_t build(const struct ps_fdinfo *e, uint8_t *hdr, size_t cap)
{
	return e->version == 2 ? pp_build_v2(hdr, cap, &e->src, &e->dst, NULL, 0, 0)
				: pp_build_v1(hdr, cap, &e->src, &e->dst);
}

static struct pend *slot_of(const struct ps_fdinfo *e)
{
	unsigned i = (e->progress & SENT_SLOT_MASK) >> SENT_SLOT_SHIFT;
	return i && pend ? &pend[i - 1] : NULL;
}

static _Atomic uint32_t *claim_word(const struct ps_fdinfo *e)
{
	struct pend *p = slot_of(e);
	return p ? &p->owner : &stripe[e->cookie % STRIPES];
}

static uint32_t my_tid(void)
{
	return (uint32_t)ps_syscall(SYS_gettid);
}

/* Takes *w for thread me. Bounded: a holder only writes a header of at most 232 bytes
 * to a socket whose buffer is empty, so a wait is short; a holder that died in it
 * (killed) is detected. Never for ourselves: a signal handler interrupting this
 * thread's own flush gets false (EAGAIN) rather than a deadlock. */
static bool take(_Atomic uint32_t *w, uint32_t me)
{
	for (unsigned i = 0; i < 3000; i++) {
		uint32_t cur = 0;
		if (atomic_compare_exchange_weak(w, &cur, me))
			return true;
		if (cur == me)
			return false;
		if (i < 100)
			continue;
		if (cur && ps_syscall(SYS_kill, (pid_t)cur, 0) < 0 && errno == ESRCH)
			atomic_compare_exchange_strong(w, &cur, 0);
		sched_yield();
	}
	return false;
}

static void give(_Atomic uint32_t *w, uint32_t me)
{
	atomic_compare_exchange_strong(w, &me, 0);
}

/* ---- holders of a shared slot ---- */

static int32_t real_pid(void)
{
	return (int32_t)ps_syscall(SYS_getpid);
}

/* Only ESRCH proves a holder gone: a zombie, a reused pid or one we may not signal
 * keeps the slot (it then waits for its header, as before holders were counted). */
static bool gone(int32_t pid)
{
	int saved = errno;
	bool r = ps_syscall(SYS_kill, (pid_t)pid, 0) < 0 && errno == ESRCH;
	errno = saved;
	return r;
}

/* Bumps p's sequence, sets flags and adds d (+1, 0, -1) to the forks in flight;
 * false once the slot was reclaimed. */
static bool bump(struct pend *p, uint64_t flags, int d)
{
	uint64_t st = atomic_load(&p->state), n;
	do {
		if (st & ST_DEAD)
			return false;
		n = (st + ST_SEQ) | flags;
		if (d > 0)
			n += 1;
		else if (d < 0 && (st & ST_INFLIGHT))
			n -= 1;
	} while (!atomic_compare_exchange_weak(&p->state, &st, n));
	return true;
}

/* Frees slot i, still serving socket c, if no process can reach it: no fork in
 * flight, no holder alive (gone ones are cleared), not pinned. The final
 * compare-and-swap fails if anyone enlisted meanwhile: an enlistment writes its pid
 * first, then bumps the sequence. */
static bool try_free(int i, uint64_t c)
{
	struct pend *p = &pend[i];
	uint64_t st = atomic_load(&p->state);
	if ((st & (ST_DEAD | ST_PINNED | ST_INFLIGHT)) || atomic_load(&p->cookie) != c)
		return false;
	for (int k = 0; k < HOLDERS; k++) {
		int32_t pid = atomic_load(&p->pid[k]);
		if (pid && !gone(pid))
			return false;
		if (pid)
			atomic_compare_exchange_strong(&p->pid[k], &pid, 0);
	}
	if (!atomic_compare_exchange_strong(&p->state, &st, (st + ST_SEQ) | ST_DEAD))
		return false;
	atomic_compare_exchange_strong(&p->cookie, &c, 0);
	return true;
}

/* Enlists this process in slot i for socket c; d -1 in a fork child, whose fork in
 * flight the parent counted. false if the slot no longer serves c. */
static bool enlist(int i, uint64_t c, int d)
{
	struct pend *p = &pend[i];
	int32_t me = atomic_load(&self), z = 0;
	int k = 0;
	while (k < HOLDERS && !atomic_compare_exchange_strong(&p->pid[k], &z, me))
		k++, z = 0;
	bool ok = bump(p, k == HOLDERS ? ST_PINNED : 0, d) && atomic_load(&p->cookie) == c;
	if (ok) {
		atomic_store(&held_cookie[i], c);
		atomic_fetch_or(&held, 1ull << i);
	} else if (k < HOLDERS) {
		atomic_compare_exchange_strong(&p->pid[k], &me, 0);
	}
	return ok;
}

/* This process holds no copy of slot i's pending state any more. */
static void release(int i)
{
	uint64_t bit = 1ull << i, c = atomic_load(&held_cookie[i]);
	struct pend *p = &pend[i];
	if (!(atomic_fetch_and(&held, ~bit) & bit) || atomic_load(&p->cookie) != c)
		return;
	for (int k = 0; k < HOLDERS; k++) {
		int32_t me = atomic_load(&self);
		atomic_compare_exchange_strong(&p->pid[k], &me, 0);
	}
	try_free(i, c);
}

static void used_slot(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)fd;
	unsigned i = (info->progress & SENT_SLOT_MASK) >> SENT_SLOT_SHIFT;
	if (info->kind == PS_FD_SEND && i && !(info->progress & (SENT_DONE | SENT_ORPHAN)) &&
	    info->cookie == atomic_load(&held_cookie[i - 1]))
		*(uint64_t *)ctx |= 1ull << (i - 1);
}

/* After a close: slots no entry of this process refers to any more are let go. Not
 * while slots are being taken (an entry gets its slot after the enlistment): those
 * wait for the next close, or for this process to end. */
static void drop_unused(void)
{
	uint32_t before = atomic_load(&sharing);
	uint64_t used = 0;
	if (before & 1)
		return;
	ps_fd_each(used_slot, &used);
	uint64_t h = atomic_load(&held) & ~used;
	if (atomic_load(&sharing) != before)
		return;
	for (int i = 0; i < SLOTS; i++)
		if (h & (1ull << i))
			release(i);
}

static void send_forget(unsigned first, unsigned last)
{
	(void)first, (void)last;
	if (atomic_load(&held))
		drop_unused();
}

struct mark {
	uint64_t cookie;
	uint32_t set;
};

static void mark_copy(int fd, const struct ps_fdinfo *info, void *ctx)
{
	const struct mark *m = ctx;
	if (info->kind == PS_FD_SEND && info->cookie == m->cookie && !(info->progress & SENT_DONE)) {
		struct ps_fdinfo e = *info;
		e.progress = m->set;
		ps_fd_set(fd, &e);
	}
}

/* The header is over for this socket (written, or the connection gone): the slot is
 * freed for a fork sibling to see, and fd and its copies go straight to libc. */
static void finished(int fd, struct ps_fdinfo *e)
{
	struct pend *p = slot_of(e);
	uint64_t c = e->cookie;
	if (p && atomic_load(&p->cookie) == c) {
		atomic_fetch_or(&p->sent, SLOT_FINISHED);
		atomic_compare_exchange_strong(&p->cookie, &c, 0);
	}
	if (p && atomic_load(&held_cookie[p - pend]) == c)  /* the slot is over for everyone */
		atomic_fetch_and(&held, ~(1ull << (p - pend)));
	bool aliased = e->progress & SENT_ALIASED;
	e->progress = SENT_DONE;
	ps_fd_set(fd, e);
	if (aliased)
		ps_fd_each(mark_copy, &(struct mark){.cookie = e->cookie, .set = SENT_DONE});
}

/* Abortive: the server sees a reset, not an orderly end that could pass the bytes
 * already received for a complete request. connect(AF_UNSPEC) sends the RST and drops
 * what is still queued; shutdown() is the fallback, SO_LINGER {1,0} makes the last
 * close abortive too. */
static void reset_conn(int fd)
{
	struct linger lg = {1, 0};
	struct sockaddr sa = {.sa_family = AF_UNSPEC};
	int saved = errno;
	ps_syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	ps_syscall(SYS_connect, fd, &sa, sizeof(sa));
	ps_syscall(SYS_shutdown, fd, SHUT_RDWR);
	errno = saved;
}

static void fail_closed(int fd, struct ps_fdinfo *e, const char *why)
{
	char dst[PS_ADDR_STRLEN];
	ps_addr_format(&e->dst, dst, sizeof(dst));
	ps_log(PS_LOG_ERROR, "fd %d to %s: %s: connection reset", fd, dst, why);
	reset_conn(fd);
	finished(fd, e);
}

/* Sends the rest of the header with fd claimed. nowait: never block (exec). */
static int flush_claimed(int fd, struct ps_fdinfo *e, bool nowait)
{
	uint8_t hdr[PP_V1_MAX + 1];
	char why[120];
	struct pend *p = slot_of(e);
	uint32_t sent = e->progress & SENT_BYTES;
	if (p) {
		uint32_t s = atomic_load(&p->sent);
		if (atomic_load(&p->cookie) != e->cookie || (s & SLOT_FINISHED)) {
			/* An enlisted process's slot is only freed by the header's end: a fork
			 * sibling wrote it. Elsewhere (no fork handlers ran, or during an exec
			 * that let go) it may have been freed for want of holders: only bytes on
			 * the wire prove the header went. */
			bool enlisted = real_pid() == atomic_load(&self) && !atomic_load(&execing);
			long long w = enlisted ? -1 : written(fd);
			if (!enlisted && w >= 0 && w < (long long)build(e, hdr, sizeof(hdr))) {
				e->progress |= SENT_ORPHAN;
				ps_fd_set(fd, e);
				ps_log(PS_LOG_ERROR, "fd %d: PROXY header pending in a process made "
				       "without fork handlers and its shared state gone: I/O on it "
				       "fails (EPIPE)", fd);
				errno = EPIPE;
				return -1;
			}
			finished(fd, e);
			return 0;
		}
		sent = s;
	}
	long long w = written(fd);
	size_t len = build(e, hdr, sizeof(hdr));
	if (w >= 0 && w != sent) {
		snprintf(why, sizeof(why), "%lld bytes were written past the shim before its "
			 "PROXY header (%u of %zu header bytes sent)", w - (long long)sent, sent, len);
		fail_closed(fd, e, why);
		errno = ECONNRESET;
		return -1;
	}
	int fl = real_fcntl(fd, F_GETFL, 0);
	int flags = MSG_NOSIGNAL | (nowait || (fl >= 0 && (fl & O_NONBLOCK)) ? MSG_DONTWAIT : 0);
	while (sent < len) {
		ssize_t n = real_send(fd, hdr + sent, len - sent, flags);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			int err = errno;
			finished(fd, e);  /* the connection is gone: the app's call reports it */
			errno = err;
			return -1;
		}
		if (n < 0) {  /* keep what went out: the rest follows on the next call */
			if (!p) {
				e->progress = (e->progress & ~SENT_BYTES) | sent;
				ps_fd_set(fd, e);
			}
			return -1;
		}
		sent += (uint32_t)n;
		if (p)
			atomic_store(&p->sent, sent);
	}
	finished(fd, e);
	return 0;
}

/* 0 when fd carries no pending header any more; -1 with errno otherwise. */
static int flush(int fd, bool nowait)
{
	struct ps_fdinfo e;
	uint32_t me = 0;
	for (int tries = 0; tries < 4; tries++) {
		if (!ps_fd_get(fd, &e) || e.kind != PS_FD_SEND || (e.progress & SENT_DONE))
			return 0;
		if (ps_fd_cookie(fd) != e.cookie) {  /* a reused fd number */
			ps_fd_clear((unsigned)fd, (unsigned)fd);
			return 0;
		}
		if (e.progress & SENT_ORPHAN) {
			errno = EPIPE;
			return -1;
		}
		if (!me)
			me = my_tid();
		_Atomic uint32_t *w = claim_word(&e);
		if (!take(w, me)) {
			errno = EAGAIN;
			return -1;
		}
		struct ps_fdinfo now;
		/* moved to a slot (fork) or finished while we waited: claim again */
		if (!ps_fd_get(fd, &now) || now.progress != e.progress || now.cookie != e.cookie) {
			give(w, me);
			continue;
		}
		int r = flush_claimed(fd, &e, nowait);
		int saved = errno;
		give(w, me);
		errno = saved;
		return r;
	}
	errno = EAGAIN;
	return -1;
}

int ps_send_flush(int fd)
{
	return flush(fd, false);
}

static int record(int fd, const struct ps_config *c, const struct sockaddr *sa,
		  const struct ps_addr *dst)
{
	struct ps_fdinfo e = {.kind = PS_FD_SEND, .version = (uint8_t)c->send_version,
			      .family = sa->sa_family, .cookie = ps_fd_cookie(fd), .dst = *dst};
	if (header_source(fd, c, &e.src) < 0 || !ps_fd_set(fd, &e)) {
		ps_log(PS_LOG_ERROR, "fd %d: cannot prepare the PROXY header", fd);
		return -1;
	}
	atomic_store(&ever_pending, true);
	return 0;
}

/* The connect results after which the connection exists or is on its way: EINTR and
 * EALREADY leave it completing in the kernel, EISCONN and 0 report it made. */
static bool connecting(int r, int err)
{
	return r == 0 || err == EINPROGRESS || err == EINTR || err == EALREADY || err == EISCONN;
}

int ps_send_connected(int fd, const struct sockaddr *sa, socklen_t len, int r)
{
	const struct ps_config *c = ps_send_active();
	struct ps_addr dst;
	struct ps_fdinfo old;
	int saved = errno;
	if (!c || !sa || !connecting(r, saved) || ps_addr_from_sockaddr(&dst, sa, len) < 0 ||
	    !ps_netlist_match(&c->send_to, &dst) || !is_tcp(fd)) {
		errno = saved;
		return r;
	}
	/* A repeated connect (EALREADY, EISCONN, 0) keeps the record of the first. Without
	 * one (the first was never seen), only a socket that never carried a byte gets a
	 * header: later would be after application bytes. */
	bool known = ps_fd_get(fd, &old) && old.kind == PS_FD_SEND && old.cookie == ps_fd_cookie(fd);
	if (!known) {
		long long w = written(fd);
		if (w > 0) {
			ps_log(PS_LOG_WARN, "fd %d: connect() on a socket that already sent %lld "
			       "bytes the shim did not see: left as it is", fd, w);
			errno = saved;
			return r;
		}
		if (record(fd, c, sa, &dst) < 0) {
			errno = saved;
			return r;
		}
	}
	if ((r == 0 || saved == EISCONN) && flush(fd, false) < 0 && errno != EAGAIN)
		return -1;
	errno = saved;
	return r;
}

/* ---- dup and fork ---- */

/* A dup of a pending socket: both entries learn of each other, so that the header
 * written through one is known to be written through the other. */
void ps_send_copied(int from, int to)
{
	struct ps_fdinfo e;
	if (!ps_fd_get(from, &e) || e.kind != PS_FD_SEND || (e.progress & SENT_DONE))
		return;
	uint32_t me = my_tid();
	_Atomic uint32_t *w = claim_word(&e);
	bool held = take(w, me);
	if (ps_fd_get(from, &e) && e.kind == PS_FD_SEND && !(e.progress & SENT_DONE)) {
		e.progress |= SENT_ALIASED;
		ps_fd_set(from, &e);
		ps_fd_set(to, &e);
	}
	if (held)
		give(w, me);
}

static int find_slot(uint64_t cookie)
{
	for (int i = 0; i < SLOTS; i++)
		if (atomic_load(&pend[i].cookie) == cookie)
			return i;
	return -1;
}

/* A free slot for socket c, with this process as its one holder. Set up under
 * COOKIE_SETUP, so that no one finds or reclaims it half made. Forks in flight carry
 * over (see ST_INFLIGHT). */
static int new_slot(uint64_t c, uint32_t sent)
{
	for (int i = 0; i < SLOTS; i++) {
		struct pend *p = &pend[i];
		uint64_t free_ = 0, st, n;
		if (!atomic_compare_exchange_strong(&p->cookie, &free_, COOKIE_SETUP))
			continue;
		atomic_store(&p->sent, sent);
		for (int k = 0; k < HOLDERS; k++)
			atomic_store(&p->pid[k], k ? 0 : atomic_load(&self));
		st = atomic_load(&p->state);
		do
			n = (st + ST_SEQ) & ~(ST_DEAD | ST_PINNED);
		while (!atomic_compare_exchange_weak(&p->state, &st, n));
		atomic_store(&held_cookie[i], c);
		atomic_store(&p->cookie, c);
		return i;
	}
	return -1;
}

/* The table is full: frees every slot no process can reach any more (its holders
 * closed their copies, exec'd or ended). */
static bool reclaim(void)
{
	bool any = false;
	for (int i = 0; i < SLOTS; i++) {
		uint64_t c = atomic_load(&pend[i].cookie);
		if (c && c != COOKIE_SETUP && try_free(i, c))
			any = true;
	}
	return any;
}

/* Before fork, in the parent: each pending header not yet shared moves to a slot
 * (copies of one socket find the same slot by cookie). */
static void share(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)ctx;
	struct ps_fdinfo e = *info;
	if (e.kind != PS_FD_SEND || (e.progress & (SENT_DONE | SENT_ORPHAN)) || slot_of(&e))
		return;
	uint32_t me = my_tid();
	_Atomic uint32_t *w = claim_word(&e);
	if (!take(w, me))
		return;  /* left unshared: the child fails closed on it */
	if (ps_fd_get(fd, &e) && e.kind == PS_FD_SEND && !(e.progress & SENT_DONE) && !slot_of(&e)) {
		int i = find_slot(e.cookie);
		if (i >= 0 && !((atomic_load(&held) >> i & 1) &&
				atomic_load(&held_cookie[i]) == e.cookie) &&
		    !enlist(i, e.cookie, 0))
			i = -1;
		if (i < 0 && (i = new_slot(e.cookie, e.progress & SENT_BYTES)) < 0 && reclaim())
			i = new_slot(e.cookie, e.progress & SENT_BYTES);
		if (i >= 0) {
			e.progress = (e.progress & ~(SENT_BYTES | SENT_SLOT_MASK)) |
				 (uint32_t)(i + 1) << SENT_SLOT_SHIFT;
			ps_fd_set(fd, &e);
			atomic_fetch_or(&held, 1ull << i);
		}
	}
	give(w, me);
}

/* In the child: what could not be shared must not be written by two processes that
 * cannot see each other's progress; this side's I/O on it fails. */
static void orphan(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)ctx;
	struct ps_fdinfo e = *info;
	char dst[PS_ADDR_STRLEN];
	if (e.kind != PS_FD_SEND || (e.progress & (SENT_DONE | SENT_ORPHAN)) || slot_of(&e))
		return;
	e.progress |= SENT_ORPHAN;
	ps_fd_set(fd, &e);
	ps_addr_format(&e.dst, dst, sizeof(dst));
	ps_log(PS_LOG_ERROR, "fd %d to %s: PROXY header pending at fork and no shared slot "
	       "free (%d): I/O on it fails in this child (EPIPE)", fd, dst, SLOTS);
}

/* The child is counted in flight in every slot this process holds before it exists,
 * so that no slot is freed before the child enlists itself. A fork that fails leaves
 * its count: that slot is then freed only when its header completes. */
static void fork_prepare(void)
{
	if (!pend || !atomic_load(&ever_pending))
		return;
	atomic_fetch_add(&sharing, 1);
	ps_fd_each(share, NULL);
	uint64_t h = atomic_load(&held), f = 0;
	for (int i = 0; i < SLOTS; i++)
		if ((h & (1ull << i)) && bump(&pend[i], 0, 1))
			f |= 1ull << i;
	atomic_store(&forking, f);
	atomic_fetch_add(&sharing, 1);
}

static void fork_child(void)
{
	atomic_store(&self, real_pid());
	for (int i = 0; i < STRIPES; i++)  /* held by threads that do not exist here */
		atomic_store(&stripe[i], 0);
	if (!atomic_load(&ever_pending))
		return;
	uint64_t f = atomic_exchange(&forking, 0);
	atomic_store(&held, 0);
	for (int i = 0; i < SLOTS; i++)
		if (f & (1ull << i))
			enlist(i, atomic_load(&held_cookie[i]), -1);
	ps_fd_each(orphan, NULL);
}

/* Before an exec that replaces this process: its copies are gone if it succeeds (closed
 * on exec, or finished by ps_send_exec). If it fails, they are taken back, or fail
 * (EPIPE) where the slot was freed meanwhile. A vfork child (another pid than 'self')
 * leaves the parent's enlistments alone. */
static void reenlist(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)ctx;
	struct ps_fdinfo e = *info;
	unsigned i = (e.progress & SENT_SLOT_MASK) >> SENT_SLOT_SHIFT;
	if (e.kind != PS_FD_SEND || !i || (e.progress & (SENT_DONE | SENT_ORPHAN)) ||
	    ((atomic_load(&held) >> (i - 1) & 1) && atomic_load(&held_cookie[i - 1]) == e.cookie) ||
	    enlist((int)i - 1, e.cookie, 0))
		return;
	e.progress |= SENT_ORPHAN;
	ps_fd_set(fd, &e);
	ps_log(PS_LOG_ERROR, "fd %d: PROXY header pending at a failed exec and its shared "
	       "state gone: I/O on it fails (EPIPE)", fd);
}

static void send_exec_call(bool returned)
{
	if (!pend || real_pid() != atomic_load(&self))
		return;
	if (!returned) {
		atomic_store(&execing, true);
		for (int i = 0; i < SLOTS; i++)
			if (atomic_load(&held) & (1ull << i))
				release(i);
		return;
	}
	atomic_fetch_add(&sharing, 1);
	ps_fd_each(reenlist, NULL);
	atomic_fetch_add(&sharing, 1);
	atomic_store(&execing, false);
}

void ps_send_init(void)
{
	void *m = mmap(NULL, SLOTS * sizeof(struct pend), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	atomic_store(&self, real_pid());
	if (m != MAP_FAILED)
		pend = m;
	else
		ps_log(PS_LOG_WARN, "no shared table: headers pending at fork fail closed in the child");
	pthread_atfork(fork_prepare, NULL, fork_child);
	ps_on_copy = ps_send_copied;
	ps_on_forget = send_forget;
	ps_on_exec = send_exec_call;
}

/* ---- exec ---- */

/* The new program cannot know of a header still pending on a socket it inherits:
 * finished now if that needs no wait, otherwise the connection is reset. Sockets
 * closed on exec are left to the processes that keep them. */
static void before_exec(int fd, const struct ps_fdinfo *info, void *ctx)
{
	(void)ctx;
	struct ps_fdinfo e;
	if (info->kind != PS_FD_SEND || (info->progress & SENT_DONE))
		return;
	int fdfl = real_fcntl(fd, F_GETFD, 0);
	if (fdfl < 0 || (fdfl & FD_CLOEXEC))
		return;
	if (flush(fd, true) == 0)
		return;
	if (ps_fd_get(fd, &e) && e.kind == PS_FD_SEND && !(e.progress & SENT_DONE))
		fail_closed(fd, &e, "PROXY header still pending at exec and not writable "
			    "without waiting");
}

void ps_send_exec(void)
{
	if (ps_send_active() && atomic_load(&ever_pending))
		ps_fd_each(before_exec, NULL);
}
