/* accept → trust → peek/wait/parse → consume → record: the one receiving path. */
#include "acceptors.h"
#include "consume.h"
#include "keep.h"
#include "lock.h"
#include "log.h"
#include "real.h"
#include "recv.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

static bool nonblocking(int fd)
{
	int fl = real_fcntl(fd, F_GETFL, 0);
	return fl >= 0 && (fl & O_NONBLOCK);
}

/* When every connection the application can be handed must speak first (a header is
 * required, and only trusted sources may connect), the kernel may hold each one until
 * its first bytes arrive (TCP_DEFER_ACCEPT): the header is then there at accept and no
 * connection is kept aside. Only on a listener the application itself makes (a socket
 * it was handed may be served by others after this process, without the shim), and not
 * over a value it chose. For 1 s, the kernel's first SYN-ACK retransmission: a silent
 * connection holds a SYN-queue entry that long (with SYN cookies, the kernel's default,
 * a full queue refuses nobody), then is handed over and takes the kept path. */
static bool defer_until_spoken(int lfd, const struct ps_config *c, unsigned port)
{
	int secs = 0;
	socklen_t len = sizeof(secs);
	if (c->policy != PS_POLICY_REQUIRE || c->untrusted != PS_UNTRUSTED_REJECT ||
	    real_getsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, &len) < 0 || secs)
		return false;
	secs = 1;
	if (setsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)))
		return false;
	__atomic_store_n(&ps_deferred_listeners, 1, __ATOMIC_RELAXED);
	ps_log(PS_LOG_DEBUG, "port %u: the kernel holds each connection until it speaks "
	       "(TCP_DEFER_ACCEPT, 1 s)", port);
	return true;
}

unsigned char ps_deferred_listeners;

bool ps_listener_note(int lfd, const struct ps_config *c, bool own, struct ps_fdinfo *li)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ps_addr local;
	int proto = 0;
	socklen_t pl = sizeof(proto);
	if (real_getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0)
		return false;  /* not a socket: the real accept reports it */
	uint64_t cookie = ps_fd_cookie(lfd);
	/* listen() again on a known listener (a new backlog) is not a new one to announce */
	bool known = ps_fd_get(lfd, li) && li->kind == PS_FD_LISTENER && li->cookie == cookie;
	uint32_t deferred = known ? li->lflags & PS_LISTENER_DEFERRED : 0;
	memset(li, 0, sizeof(*li));
	li->kind = PS_FD_LISTENER;
	li->lflags = deferred;
	li->cookie = cookie;  /* kept connections belong to this socket only */
	if (ps_addr_from_sockaddr(&local, (struct sockaddr *)&ss, sl) == 0 &&
	    real_getsockopt(lfd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) == 0 &&
	    proto == IPPROTO_TCP) {
		li->family = local.family;
		li->applies = ps_portset_has(&c->ports, local.port);
		if (li->applies)  /* blocking now, or later through fcntl */
			__atomic_store_n(&ps_blocking_listeners, 1, __ATOMIC_RELAXED);
		if (!known) {
			ps_keep_acceptors_anew(lfd);  /* none of its threads is in accept yet */
			if (li->applies && own && defer_until_spoken(lfd, c, local.port))
				li->lflags |= PS_LISTENER_DEFERRED;
			ps_log(li->applies ? PS_LOG_INFO : PS_LOG_DEBUG, "%s: listening on port %u%s",
			       program_invocation_short_name, local.port,
			       li->applies ? "" : ", not selected by PROXYSHIM_PORTS: untouched");
		}
	}
	ps_fd_set(lfd, li);
	return li->applies;
}

/* Whether the shim applies to listener lfd, decided once (at listen(), at load for
 * inherited listeners, or here at the first accept) and kept in the fd table. */
static bool selected(int lfd, const struct ps_config *c, struct ps_fdinfo *li)
{
	if (ps_fd_get(lfd, li) && li->kind == PS_FD_LISTENER)
		return li->applies;
	return ps_listener_note(lfd, c, false, li);
}

static int drop(int fd)
{
	ps_fd_clear((unsigned)fd, (unsigned)fd);
	real_close(fd);
	return -1;
}

/* Remembers that a trusted connection needs no header any more, so that a program it
 * is handed to across exec does not look for one. */
static int mark_handled(int fd, uint64_t cookie, int family)
{
	struct ps_fdinfo hi = {.kind = PS_FD_HANDLED, .family = (uint16_t)family,
			       .cookie = cookie};
	ps_fd_set(fd, &hi);
	return 0;
}

int ps_settle(int fd, uint64_t cookie, int family, const struct ps_addr *peer,
	      socklen_t room, enum ps_take r, const struct pp_header *h, const char *why,
	      struct ps_addr *client)
{
	/* Addresses are formatted only for a line that is written: this is the hot path. */
	char pa[PS_ADDR_STRLEN], ca[PS_ADDR_STRLEN];
	if (r == PS_TAKE_BAD || r == PS_TAKE_MORE) {
		ps_addr_format(peer, pa, sizeof(pa));
		ps_log_limited("proxy %s: %s; connection closed", pa, why ? why : "no header");
		return -1;
	}
	if (r == PS_TAKE_NONE || !h->has_addrs) {
		if (ps_log_enabled(PS_LOG_DEBUG)) {
			ps_addr_format(peer, pa, sizeof(pa));
			ps_log(PS_LOG_DEBUG, "proxy %s: %s, real addresses kept", pa,
			       r == PS_TAKE_NONE ? "no header" : "header without addresses");
		}
		return mark_handled(fd, cookie, family);
	}
	if (family == AF_INET && h->src.family == AF_INET6 && !ps_ip_is_v4mapped(h->src.ip) &&
	    room && room < sizeof(struct sockaddr_in6)) {
		ps_addr_format(peer, pa, sizeof(pa));
		ps_addr_format(&h->src, ca, sizeof(ca));
		ps_log_limited("proxy %s: client %s is IPv6 but the application's buffer holds "
			       "only IPv4; connection closed", pa, ca);
		return -1;
	}
	struct ps_fdinfo ci = {.kind = PS_FD_CONN, .family = (uint16_t)family,
			       .cookie = cookie, .src = h->src, .dst = h->dst};
	if (!ps_fd_set(fd, &ci)) {
		ps_log_limited("cannot record a client for fd %d (beyond the fd table); "
			       "connection closed", fd);
		return -1;
	}
	*client = h->src;
	if (ps_log_enabled(PS_LOG_INFO)) {
		ps_addr_format(peer, pa, sizeof(pa));
		ps_addr_format(&h->src, ca, sizeof(ca));
		ps_log(PS_LOG_INFO, "proxy %s -> client %s", pa, ca);
	}
	return 1;
}

/* How the caller of accept on a listener waits, which decides what the shim may do
 * while a header is late or after it closed a connection:
 * - W_NONBLOCK: a non-blocking listener: EAGAIN, never a wait.
 * - W_POLLED: a blocking listener the application watches (its epoll set, or the
 *   calling thread's last poll/select reported it readable: PostgreSQL's postmaster,
 *   which takes signals only inside select): ECONNABORTED, which accept's contract
 *   allows, so it goes back to its loop; kept connections make the listener readable
 *   there when their header completes.
 * - W_BLOCK: a caller that just blocks in accept (thread per accept, prefork): it
 *   waits for whichever connection completes first, never behind a slower one. */
enum wait_kind { W_NONBLOCK, W_POLLED, W_BLOCK };

/* The listener of this thread's previous accept, and its ps_waits then. */
static __thread __attribute__((tls_model("initial-exec"))) int last_fd = -1;
static __thread __attribute__((tls_model("initial-exec"))) unsigned last_waits;

/* Whether another process may accept on this one's listeners: it is a fork child or has
 * forked (prefork servers). See sibling_takes. */
static _Atomic bool siblings;

void ps_accept_forked(void)
{
	__atomic_store_n(&siblings, true, __ATOMIC_RELAXED);
}

void ps_accept_fork_child(void)
{
	last_fd = -1;
	ps_accept_forked();
}

/* 'ready': the thread's last poll/select reported lfd readable (taken by this call).
 * An epoll registration counts only if the thread waited for readiness since its
 * previous accept on lfd: Apache prefork with one listener registers it in an epoll
 * set it never waits on, and comes straight back to accept after ECONNABORTED. */
struct caller {
	bool ready, waited;
	int wk;     /* enum wait_kind once decided, -1 before */
	int flags;  /* accept4's: SOCK_NONBLOCK, SOCK_CLOEXEC */
	int extra;  /* SOCK_CLOEXEC when the shim added it to the real accept4 */
	struct ps_acceptors *accepting;  /* this process's threads in the real accept on lfd */
};

/* Whether this thread's last trusted connection had to be kept aside: the next one is
 * then accepted close-on-exec, as a kept connection must be, which saves a system call
 * when it is kept too and costs one (the flag cleared) when it is not. */
static __thread __attribute__((tls_model("initial-exec"))) bool keep_likely;

static enum wait_kind wait_kind(int lfd, const struct ps_fdinfo *li, struct caller *cl)
{
	if (cl->wk < 0)
		cl->wk = nonblocking(lfd) ? W_NONBLOCK
			 : cl->ready || ((li->lflags & PS_LISTENER_WATCHED) && cl->waited) ? W_POLLED
											 : W_BLOCK;
	return cl->wk;
}

/* Handles a connection just accepted on lfd: 0 to hand it over (ss then holds the
 * address to report), -1 when it was closed, 1 when it was kept aside (its header is
 * late). room is the caller's address buffer size; *wk is decided here if needed. */
static int admit(int lfd, int fd, const struct ps_config *c, struct ps_fdinfo *li,
		 struct sockaddr_storage *ss, socklen_t *sl, socklen_t room, struct caller *cl)
{
	struct ps_addr peer, client;
	struct pp_header h;
	const char *why = NULL;
	ps_fd_clear((unsigned)fd, (unsigned)fd);  /* a new socket: any entry is stale */
	if (ps_addr_from_sockaddr(&peer, (struct sockaddr *)ss, *sl) < 0)
		return 0;
	if (!ps_netlist_match(&c->trusted, &peer)) {
		if (c->untrusted == PS_UNTRUSTED_PASS)
			return 0;
		if (ps_log_enabled(PS_LOG_DEBUG)) {
			char pa[PS_ADDR_STRLEN];
			ps_addr_format(&peer, pa, sizeof(pa));
			ps_log(PS_LOG_DEBUG, "untrusted %s: connection closed", pa);
		}
		return drop(fd);
	}
	bool raised;
	enum ps_take t = ps_try_header(fd, c, &h, &why, 0, &raised);
	keep_likely = t == PS_TAKE_MORE;
	if (t == PS_TAKE_MORE) {
		int how = (cl->flags & SOCK_NONBLOCK ? PS_KEEP_NONBLOCK : 0) |
			  (raised ? PS_KEEP_LOWAT : 0) |
			  ((cl->flags | cl->extra) & SOCK_CLOEXEC ? PS_KEEP_CLOEXEC : 0);
		if (ps_keep_add(lfd, li, fd, &peer, how) == 0)
			return 1;
		if (wait_kind(lfd, li, cl) == W_BLOCK) {  /* no room to keep it: the bounded wait */
			t = ps_take_header(fd, c, &h, &why);
		} else {  /* the application's loop never waits: refused, and said so */
			why = "header incomplete and no room to keep the connection aside";
			t = PS_TAKE_BAD;
		}
	}
	/* Just accepted in this call: the number is not known to anyone else yet. */
	int r = ps_settle(fd, ps_fd_cookie(fd), li->family, &peer, room, t, &h, why, &client);
	if (r < 0)
		return drop(fd);
	if (r > 0)
		*sl = ps_addr_to_sockaddr(&client, li->family, ss);
	return 0;
}

/* Kernel semantics: copy what fits, report the full length. */
static void copy_out(struct sockaddr *addr, socklen_t *alen,
		     const struct sockaddr_storage *ss, socklen_t len)
{
	memcpy(addr, ss, *alen < len ? *alen : len);
	*alen = len;
}

int ps_report(struct sockaddr *addr, socklen_t *alen, const struct ps_addr *a,
	      int sock_family)
{
	struct sockaddr_storage ss;
	copy_out(addr, alen, &ss, ps_addr_to_sockaddr(a, sock_family, &ss));
	return 0;
}

/* A kept connection that is ready, given the flags of this accept4 call; -1 if none. */
static int kept(int lfd, const struct ps_fdinfo *li, const struct ps_config *c, int flags,
		socklen_t room, struct sockaddr_storage *ss, socklen_t *sl, bool *closed)
{
	struct ps_addr client;
	bool nonblock;
	int fd = ps_keep_next(lfd, li, c, room, &client, closed, &nonblock);
	if (fd < 0)
		return -1;
	/* Only what this call's flags change (an event loop asks the same every time). */
	if (nonblock != !!(flags & SOCK_NONBLOCK)) {
		int fl = real_fcntl(fd, F_GETFL, 0);
		real_fcntl(fd, F_SETFL, nonblock ? fl & ~O_NONBLOCK : fl | O_NONBLOCK);
	}
	if (!(flags & SOCK_CLOEXEC))  /* kept close-on-exec */
		real_fcntl(fd, F_SETFD, 0);
	*sl = ps_addr_to_sockaddr(&client, li->family, ss);
	return fd;
}

/* Whether a connection waits in lfd's queue now. */
static bool pending(int lfd)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	return real_poll(&p, 1, 0) > 0;
}

/* How many connections wait in lfd's queue now: a listener's TCP_INFO reports that
 * length as tcpi_unacked (a kernel that leaves it 0 is asked with poll: 1 if any). */
static unsigned queued(int lfd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (real_getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	    len >= offsetof(struct tcp_info, tcpi_unacked) + sizeof(ti.tcpi_unacked) &&
	    ti.tcpi_state == TCP_LISTEN && ti.tcpi_unacked)
		return ti.tcpi_unacked;
	return pending(lfd);
}

/* Signals a thread raises by its own execution (a fault): never the one that woke a
 * wait. ASan, for one, handles them without SA_RESTART. */
static bool synchronous(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL ||
	       sig == SIGTRAP || sig == SIGSYS || sig == SIGKILL || sig == SIGSTOP;
}

/* Whether every signal the application handles has SA_RESTART: then an accept the
 * shim's wait stands for would have been restarted, not interrupted. Asked only when a
 * signal came. */
static bool all_restart(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;
		if (!synchronous(sig) && sigaction(sig, NULL, &sa) == 0 &&
		    sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN &&
		    !(sa.sa_flags & SA_RESTART))
			return false;
	}
	return true;
}

/* A thread holding kept connections leaves a new connection to another acceptor, so
 * that it stays free to hand over a header that completes meanwhile: to another thread
 * of this process inside the real accept on the listener, or to another process
 * (prefork). A lone acceptor takes it at once: a wait would only slow every accept while
 * a header is late.
 * A thread counted in the real accept is in the kernel's queue of waiters: the kernel
 * gives it a connection as soon as it runs, which a busy machine can put off for
 * milliseconds, so the wait for it is long (THREAD_GRACE_NS), as long as the queue holds
 * no more connections than such threads (a surplus is taken at once). A count that is
 * wrong (acceptors.h says when) costs one such wait: then it is doubted. Another process
 * may be busy, or gone: its wait is short (PROC_GRACE_NS). Kept connections decided
 * meanwhile end either wait, as do signals the accept would have returned EINTR for. */
#define THREAD_GRACE_NS 50000000
#define PROC_GRACE_NS 2000000
#define STEP_NS 100000

enum handover {
	H_TAKEN,    /* another acceptor took it (or it is gone) */
	H_DECIDED,  /* a kept connection may be decided: look at them first */
	H_MINE,     /* nobody else takes it: this thread does */
	H_EINTR,    /* a signal the accept would have returned for (errno set) */
};

/* Whether other acceptors take lfd's pending connections within the grace. Whether any
 * is still pending is asked first every time: another thread may have taken the last
 * (and left accept, no longer counted) before this one looked. */
static enum handover sibling_takes(int lfd, const struct ps_fdinfo *li, const struct caller *cl)
{
	bool procs = __atomic_load_n(&siblings, __ATOMIC_RELAXED);
	long long start = 0;
	uint64_t word, first_word = 0;
	struct pollfd p = {.fd = ps_keep_fd(lfd, li), .events = POLLIN};
	for (;;) {
		unsigned q = queued(lfd), threads = ps_acceptors(cl->accepting, &word);
		if (!q)
			return H_TAKEN;
		/* Threads counted but doubted (below) get the short wait. */
		bool doubted = !threads && (uint32_t)word >= q;
		long long grace = threads >= q ? THREAD_GRACE_NS
				  : procs || doubted ? PROC_GRACE_NS : 0;
		long long now = ps_now_ns();
		if (!start) {
			start = now;
			first_word = word;
		}
		if (now - start >= grace) {
			/* Counted as the thread that takes it, unless another thread entered
			 * or left accept since the count was read (two woken for one
			 * connection: the other one waits for this one then). */
			if (!ps_acceptors_claim(cl->accepting, word))
				continue;
			/* Threads counted all along that took nothing: doubted. */
			if (threads >= q && word == first_word)
				ps_acceptors_doubt(cl->accepting, word);
			return H_MINE;  /* nobody else takes it (soon enough) */
		}
		int n = real_ppoll(&p, p.fd >= 0, &(struct timespec){0, STEP_NS}, NULL);
		if (n > 0)
			return H_DECIDED;
		if (n < 0 && errno == EINTR && !all_restart())
			return H_EINTR;
	}
}

/* W_BLOCK with connections kept: waits until a kept one is decided (its header, or its
 * deadline: 0) or the listener has a new one that no other acceptor takes (2: take it
 * now). A prefork child that took the new one would hold its kept connections while it
 * serves it, with idle siblings. -1 with EINTR when a signal came, as the accept it
 * stands for would report. */
static int wait_first(int lfd, const struct ps_fdinfo *li, const struct caller *cl)
{
	struct pollfd p[2] = {{.fd = lfd, .events = POLLIN},
			      {.fd = ps_keep_fd(lfd, li), .events = POLLIN}};
	while (p[1].fd >= 0) {
		if (real_poll(p, 2, -1) < 0) {
			if (errno == EINTR && all_restart())
				continue;  /* the kernel would have restarted the accept */
			return -1;
		}
		if (p[1].revents || !(p[0].revents & POLLIN))
			return 0;
		switch (sibling_takes(lfd, li, cl)) {
		case H_MINE:
			return 2;
		case H_DECIDED:
			return 0;
		case H_EINTR:
			return -1;
		case H_TAKEN:
			break;
		}
	}
	return 0;
}

/* Before the real accept on lfd: a blocking accept must not hold an application that
 * could do something else (once this call closed or kept a connection: 'acted'), nor
 * stand a ready connection behind a late one. 0: go on to the real accept; 1: a kept
 * connection may be decided, look again; -1: return (errno set). */
static int before_accept(int lfd, const struct ps_fdinfo *li, bool acted, struct caller *cl)
{
	bool any_kept = ps_keep_fd(lfd, li) >= 0;
	if (!acted && !any_kept)
		return 0;  /* the common case: no system call */
	enum wait_kind wk = wait_kind(lfd, li, cl);
	if (wk == W_NONBLOCK)
		return 0;
	/* Holding kept connections, a process blocked in the real accept would leave them
	 * undecided: a new connection goes to a process free to take it, if one is. */
	if (pending(lfd)) {
		if (!any_kept)
			return 0;
		enum handover h = sibling_takes(lfd, li, cl);
		if (h != H_TAKEN)
			return h == H_MINE ? 0 : h == H_DECIDED ? 1 : -1;
	}
	if (wk == W_POLLED) {
		errno = ECONNABORTED;
		return -1;
	}
	if (!any_kept)
		return 0;
	int w = wait_first(lfd, li, cl);
	return w < 0 ? -1 : w == 2 ? 0 : 1;
}

int ps_accept(int lfd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	const struct ps_config *c = ps_active();
	struct ps_fdinfo li;
	int saved = errno;
	ps_acceptors_settle();
	if (!c || (addr && !alen) || !selected(lfd, c, &li)) {
		errno = saved;
		return real_accept4(lfd, addr, alen, flags);
	}
	/* Each readiness report is taken by one accept; 'waited': a readiness wait came
	 * between this thread's previous accept on lfd and this one. */
	struct caller cl = {.wk = -1, .flags = flags, .waited = last_fd != lfd || last_waits != ps_waits,
			    .accepting = ps_keep_acceptors(lfd),
			    .extra = keep_likely && !(flags & SOCK_CLOEXEC) ? SOCK_CLOEXEC : 0,
			    .ready = __atomic_load_n(&ps_blocking_listeners, __ATOMIC_RELAXED) &&
				     ps_ready_take(lfd)};
	last_fd = lfd;
	last_waits = ps_waits;
	bool look = true;  /* at the kept connections */
	/* A header is often a few microseconds behind its connection. A poll or select
	 * loop walks its whole array every round: one more look at the kept connections,
	 * before EAGAIN, is cheaper than the round that would report the header. An epoll
	 * loop's round is cheap, so there is no such look there. */
	bool again = false;
	for (bool acted = false;; acted = true) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = look ? kept(lfd, &li, c, flags, addr ? *alen : 0, &ss, &sl, &acted) : -1;
		look = true;
		if (fd < 0) {
			int next = before_accept(lfd, &li, acted, &cl);
			if (next < 0)
				return -1;
			if (next > 0)
				continue;
			fd = ps_acceptors_accept(cl.accepting, lfd, (struct sockaddr *)&ss, &sl,
						 flags | cl.extra);
			if (fd < 0 && again && errno == EAGAIN) {  /* the one more look */
				fd = kept(lfd, &li, c, flags, addr ? *alen : 0, &ss, &sl, &acted);
				if (fd < 0) {
					errno = EAGAIN;
					return -1;
				}
			} else {
				if (fd < 0)
					return fd;
				int r = admit(lfd, fd, c, &li, &ss, &sl, addr ? *alen : 0, &cl);
				if (r != 0) {
					/* Closed or kept: the next one, as the caller waits. The
					 * kept ones were looked at in this call: one decided since
					 * makes the listener readable anew (its set wakes every
					 * wait on it). */
					look = false;
					again |= r > 0 && !(li.lflags & PS_LISTENER_WATCHED);
					continue;
				}
				if (cl.extra)
					real_fcntl(fd, F_SETFD, 0);  /* not kept after all */
			}
		}
		if (addr)
			copy_out(addr, alen, &ss, sl);
		errno = saved;
		return fd;
	}
}

bool ps_conn(int fd, struct ps_fdinfo *ci)
{
	if (!ps_fd_get(fd, ci) || ci->kind != PS_FD_CONN)
		return false;
	if (ps_fd_cookie(fd) == ci->cookie)
		return true;
	ps_fd_clear((unsigned)fd, (unsigned)fd);  /* fd number reused behind our back */
	return false;
}
