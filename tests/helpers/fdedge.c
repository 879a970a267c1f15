/* fdedge: one program per boundary where descriptor state can go stale, run under the
 * receiving shim with PROXYSHIM_TRUSTED=127.0.0.10. It is both the server (its accepts
 * go through the shim) and the proxy (its own connect()s from 127.0.0.10, which the
 * receiving shim leaves alone), so each scenario is exact and needs no timing luck.
 * Prints what it saw; exit 0: the shim behaved, 1: the defect was seen, 2: set-up
 * failed. Run with -h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELPER_NAME "fdedge"
#define HELPER_DIE_STATUS 2
#include "common.h"

#define PROXY_IP "127.0.0.10"
#define CLIENT_IP "127.0.0.77"   /* the client the proxy's headers name */
#define FORGED_IP "127.0.0.66"   /* the address a client tries to give itself */
/* A client's own first bytes, which must never be taken for a header. */
#define FORGED_LINE "PROXY TCP4 " FORGED_IP " 127.0.0.1 1111 2222\r\nhello"

static void usage(FILE *f)
{
	fputs("usage: fdedge SCENARIO [ARGS]\n"
	      "  stale-fclose PORT, stale-rawclose PORT: a proxied connection on listener PORT\n"
	      "      is closed by fclose(fdopen()) / syscall(SYS_close); its number is reused by\n"
	      "      a connection from the same proxy address and port on an unselected\n"
	      "      listener: getpeername must report the real peer\n"
	      "  closerange-socket, closerange-file: close_range() over a kept connection (not\n"
	      "      its listener); the number is reused by the app's own socket / file; after\n"
	      "      the header timeout the shim must not read, return or close it\n"
	      "  dup2-listener: dup2() of a new listener over one with a kept connection: the\n"
	      "      new one never returns the old one's connection, which is closed\n"
	      "  nofd-nonblocking: no descriptor left to keep a late header aside: a\n"
	      "      non-blocking accept4 returns at once (never waits for the header)\n"
	      "  spawn-system, spawn-popen, spawn-posix: a child started that way inherits a\n"
	      "      proxied connection whose client sent a PROXY line as its first bytes: the\n"
	      "      child sees the header's client, the parent gets its bytes intact\n"
	      "  spawn-lost: the same through env -i (no state reaches the child): the child\n"
	      "      leaves the connection untouched (its peer is the proxy)\n"
	      "  spawn-idle N: N idle proxied connections, then popen(): it takes no header wait\n"
	      "  exec-many N: N proxied connections across execve: every one keeps its client;\n"
	      "             past the 4,000 carried, the others report the proxy (never a guess)\n"
	      "  exec-how HOW: one across execv, execvp, execvpe, execl, execlp, execle,\n"
	      "      fexecve, execveat, or vfork+execv\n"
	      "  exec-self: one across an execv in place (no fork); the new image prints its peer\n"
	      "  (children run FDEDGE_SELF if set, an emulator's wrapper of this program)\n"
	      "  scm-rights: one passed to another program over a UNIX socket (SCM_RIGHTS):\n"
	      "      the receiver sees its real peer and the client's bytes intact\n"
	      "  keep-race: a kept connection's number closed by another thread and reused\n"
	      "      while accept hands it over (widened by build/slowcalls.so): the\n"
	      "      application's own socket is never returned nor given an address\n"
	      "  keep-race-after: the same just after the shim proved the number (while it\n"
	      "      reads the header): the application's socket is never closed nor returned\n"
	      "  stale-twin: a kept connection's number closed by fclose(fdopen()) and taken\n"
	      "      by a second kept connection: that one is handed over as itself, and the\n"
	      "      first one's deadline touches nothing\n"
	      "  stale-event: a set's hang-up event for a connection since closed never\n"
	      "      applies to a new kept connection on its number\n"
	      "  et-progress: 20 late headers progress without completing while a 21st\n"
	      "      completes: an edge-triggered server (accept until EAGAIN) gets it\n"
	      "  poll-span, select-span: listeners numbered far apart, 200 descriptors\n"
	      "      between them, 70 listeners with kept connections made and closed\n"
	      "      meanwhile: poll / select reports each one when its late header completes\n"
	      "  poll-rdnorm, epoll-rdnorm: a listener watched only for POLLRDNORM /\n"
	      "      EPOLLRDNORM hears of its kept header\n"
	      "  select-nfds: a kept connection extends select past the caller's nfds:\n"
	      "      bits set beyond nfds (a closed number, a writable socket) stay unseen\n"
	      "  poll-keep-meanwhile, select-keep-meanwhile: another thread keeps a\n"
	      "      connection while a call is extended (widened by build/slowcalls.so): a\n"
	      "      listener whose kept header completed before the call is still reported\n"
	      "  fork-in-destroy, fork-after-unmap: a fork while another thread's close\n"
	      "      destroys a listener's set (widened by build/slowcalls.so; the second\n"
	      "      just after its array is unmapped): the child does not crash and its\n"
	      "      poll sees its own kept connection\n"
	      "  fork-in-kept-close: the same while the shim closes the kept connection\n"
	      "      itself: the child holds no copy, the client sees the close\n"
	      "  urgent-header: urgent data inside a late header: refused, no spin\n"
	      "  sa-restart: a blocking accept waiting for a late header under SA_RESTART\n"
	      "      signal handlers: never EINTR\n"
	      "  keep-spawn: a program spawned while a connection is kept does not hold it\n"
	      "  fork-select: the parent selects, its fork child accepts: never ECONNABORTED\n"
	      "  poll-once: one poll, then a plain accept loop: never ECONNABORTED\n"
	      "  nb-then-block: a listener made blocking with fcntl in a select loop: the\n"
	      "      loop keeps control while a header is late\n"
	      "  poll-at-nofile: a poll array as long as RLIMIT_NOFILE (64; the listener and\n"
	      "      negative entries) while a header is late: never EINVAL, the connection\n"
	      "      is accepted when it completes\n"
	      "  fork-epoll: the listener in an epoll instance made before fork; the child\n"
	      "      keeps a late connection and hears of it in that instance\n"
	      "  cancel-in-accept: a thread cancelled in a blocking accept is not waited for:\n"
	      "      holding a kept connection, the main thread takes 5 new ones at once\n"
	      "  phantom-in-accept: the same for a thread still blocked in accept on a\n"
	      "      listener whose number was closed and given to a new listener\n"
	      "  dup2-in-accept: the same for a new listener dup2'd over that number\n"
	      "  jump-out-of-accept: the same for a thread whose signal handler long-jumped\n"
	      "      out of accept and that then exits (it must not crash)\n"
	      "  jump-out-and-live: the same thread living on without accepting: one wait\n"
	      "      at most over 5 accepts\n"
	      "  accept-in-handler: 2 s of signals whose handler accepts, landing in\n"
	      "      the thread's own accepts: no crash\n"
	      "  eintr-in-handover: a signal (no SA_RESTART) while a blocking accept holding a\n"
	      "      kept connection waits for another thread to take a new one (run late by\n"
	      "      build/slowcalls.so): the accept returns EINTR\n"
	      "  surplus-in-handover: the same with two new connections, no signal: the\n"
	      "      accept takes one at once\n"
	      "  decided-in-handover: the same with one, no signal, and the kept header\n"
	      "      completing: the accept returns the kept connection at once\n"
	      "  vfork-close, vfork-close-range: a vfork child closes a proxied connection\n"
	      "      (or every descriptor) and exits: the parent's still reports its client,\n"
	      "      and a kept one is handed over when its header completes\n"
	      "  popen-fclose: fclose of a popen stream waits for its child, later popen\n"
	      "      calls work, the modes glibc takes are taken\n"
	      "  child FD...: (internal) prints each FD's peer as 'peer FD=ADDR:PORT'\n", f);
}

static void pause_ms(int ms)
{
	nanosleep(&(struct timespec){ms / 1000, ms % 1000 * 1000000L}, NULL);
}

static struct sockaddr_in sin_of(const char *ip, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static int port_of(int fd, int peer)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	if ((peer ? getpeername(fd, (void *)&a, &l) : getsockname(fd, (void *)&a, &l)) < 0)
		return -1;
	return ntohs(a.sin_port);
}

static const char *peer_str(int fd)
{
	static char out[64];
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	char ip[INET_ADDRSTRLEN] = "?";
	if (getpeername(fd, (void *)&a, &l) < 0)
		return "error";
	inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip));
	snprintf(out, sizeof(out), "%s:%u", ip, ntohs(a.sin_port));
	return out;
}

static int listener(int port, int nonblocking)
{
	int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0), on = 1;
	struct sockaddr_in a = sin_of("127.0.0.1", port);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
	    bind(fd, (void *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0)
		die_errno("listener");
	return fd;
}

/* A socket bound to src_ip:src_port (0: any port), to connect later (connect_to): its
 * number is taken before whatever the caller frees next. */
static int unconnected(const char *src_ip, int src_port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
	struct sockaddr_in s = sin_of(src_ip, src_port);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
	    bind(fd, (void *)&s, sizeof(s)) < 0)
		die_errno("dial");
	return fd;
}

static void connect_to(int fd, int port)
{
	struct sockaddr_in d = sin_of("127.0.0.1", port);
	if (connect(fd, (void *)&d, sizeof(d)) < 0)
		die_errno("dial");
}

/* A connection from src_ip:src_port (0: any port) to 127.0.0.1:port. */
static int dial(const char *src_ip, int src_port, int port)
{
	int fd = unconnected(src_ip, src_port);
	connect_to(fd, port);
	return fd;
}

/* The number the next descriptor made (accept4's connection, say) will get. */
static int next_number(void)
{
	int n = dup(0);
	close(n);
	return n;
}

static void put(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		die_errno("write");
}

/* The rest of a v1 header begun with "PROXY TCP4 ": CLIENT_IP:cport as the client. */
static void header_rest(int fd, int cport, int port)
{
	char h[96];
	snprintf(h, sizeof(h), "%s 127.0.0.1 %d %d\r\n", CLIENT_IP, cport, port);
	put(fd, h);
}

/* The v1 header naming CLIENT_IP:cport as the client of a connection to port. */
static void header(int fd, int cport, int port)
{
	char h[128];
	snprintf(h, sizeof(h), "PROXY TCP4 %s 127.0.0.1 %d %d\r\n", CLIENT_IP, cport, port);
	put(fd, h);
}

static int verdict(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "DEFECT", what);
	return ok ? 0 : 1;
}

/* Whether fd holds exactly FORGED_LINE, unread by anyone else (read now; 'who' names fd
 * in the output). */
static bool holds_forged(int fd, const char *who)
{
	char buf[256] = {0};
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	printf("%s read %zd bytes\n", who, n);
	return n == (ssize_t)strlen(FORGED_LINE) && !memcmp(buf, FORGED_LINE, (size_t)n);
}

/* Whether the other end closed fd within ms (EOF or reset). */
static bool peer_closed(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char b;
	return poll(&p, 1, ms) == 1 && recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

/* ---- a stale address on a reused number ---- */

static int stale(int rawclose, int port)
{
	int l1 = listener(port, 0), l2 = listener(0, 0);
	int c1 = dial(PROXY_IP, 0, port), proxy_port = port_of(c1, 0);
	header(c1, 5555, port);
	int x = accept(l1, NULL, NULL);
	if (x < 0)
		die_errno("accept");
	printf("first: fd %d peer %s\n", x, peer_str(x));
	if (rawclose) {
		syscall(SYS_close, x);
	} else {
		FILE *f = fdopen(x, "r+");
		if (!f)
			die_errno("fdopen");
		fclose(f);
	}
	close(c1);
	int c2 = dial(PROXY_IP, proxy_port, port_of(l2, 0));
	int y = accept(l2, NULL, NULL);
	if (y != x) {
		fprintf(stderr, "fdedge: the second connection got fd %d, not %d\n", y, x);
		return 2;
	}
	char want[64];
	snprintf(want, sizeof(want), "%s:%d", PROXY_IP, proxy_port);
	printf("second: fd %d peer %s (real %s)\n", y, peer_str(y), want);
	close(c2);
	return verdict(!strcmp(peer_str(y), want), "a reused number reports its real peer");
}

/* ---- close_range over a kept connection ---- */

/* Accepts on non-blocking l: the fd, or -1 with errno. */
static int try_accept(int l)
{
	return accept4(l, NULL, NULL, SOCK_NONBLOCK);
}

static int closerange(int use_file, int timeout_ms)
{
	int l = listener(0, 1), port = port_of(l, 0), other = use_file ? -1 : listener(0, 0);
	int c1 = dial(PROXY_IP, 0, port);
	int predicted = next_number();
	put(c1, "PROXY TCP4 ");  /* and never the rest */
	pause_ms(50);
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die_errno("the partial header was not kept aside");
	printf("kept connection: fd %d\n", predicted);
	if (fcntl(predicted, F_GETFD) < 0) {
		fprintf(stderr, "fdedge: the kept connection is not fd %d\n", predicted);
		return 2;
	}
	close_range((unsigned)predicted, (unsigned)predicted, 0);
	int mine, feeder = -1;
	const char *forged = FORGED_LINE;
	if (use_file) {
		mine = open("/dev/null", O_RDONLY);
	} else {
		mine = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in d = sin_of("127.0.0.1", port_of(other, 0));
		if (mine < 0 || connect(mine, (void *)&d, sizeof(d)) < 0)
			die_errno("own connection");
		feeder = accept(other, NULL, NULL);
		put(feeder, forged);
	}
	if (mine != predicted) {
		fprintf(stderr, "fdedge: the app's own descriptor is %d, not %d\n", mine,
			predicted);
		return 2;
	}
	pause_ms(timeout_ms + 200);
	int got = try_accept(l), e = errno, bad = 0;
	if (got >= 0)
		printf("accept returned fd %d, peer %s\n", got, peer_str(got));
	bad |= verdict(got < 0 && e == EAGAIN, "accept returns nothing after the timeout");
	bad |= verdict(fcntl(mine, F_GETFD) >= 0, "the app's own descriptor is still open");
	if (!use_file)
		bad |= verdict(holds_forged(mine, "own socket"), "the app's own socket keeps every byte");
	close(c1);
	return bad;
}

/* ---- a new listener over the old one's number ---- */

static int dup2_listener(void)
{
	int l = listener(0, 1), port = port_of(l, 0), bad = 0;
	int c1 = dial(PROXY_IP, 0, port);
	put(c1, "PROXY TCP4 " CLIENT_IP " ");
	pause_ms(50);
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die_errno("the partial header was not kept aside");
	int s = listener(0, 1), new_port = port_of(s, 0);
	if (dup2(s, l) != l)
		die_errno("dup2");
	close(s);
	char rest[64];
	snprintf(rest, sizeof(rest), "127.0.0.1 5555 %d\r\n", port);
	if (send(c1, rest, strlen(rest), MSG_NOSIGNAL) < 0)
		printf("the rest of the header could not be sent: %s\n", strerror(errno));
	pause_ms(100);
	int got = try_accept(l);
	if (got >= 0)
		printf("accept on the new listener (port %d) returned a connection to port %d\n",
		       new_port, port_of(got, 0));
	bad |= verdict(got < 0, "the new listener gets none of the old one's connections");
	bad |= verdict(peer_closed(c1, 2000), "the old listener's kept connection is closed");
	return bad;
}

/* ---- no room to keep a connection aside ---- */

static int nofd_nonblocking(int timeout_ms)
{
	int l = listener(0, 1), port = port_of(l, 0);
	int c1 = dial(PROXY_IP, 0, port);
	put(c1, "PROXY TCP4 ");
	pause_ms(50);
	/* Room for the accepted connection only: no epoll set can be made for it. */
	int spare = dup(0);
	close(spare);
	struct rlimit rl = {.rlim_cur = (rlim_t)spare + 1, .rlim_max = RLIM_INFINITY};
	struct rlimit old;
	getrlimit(RLIMIT_NOFILE, &old);
	rl.rlim_max = old.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die_errno("setrlimit");
	long long t0 = now_ms();
	int got = try_accept(l), e = errno;
	long long took = now_ms() - t0;
	setrlimit(RLIMIT_NOFILE, &old);
	printf("accept4 returned %d (%s) after %lld ms (header timeout %d ms)\n", got,
	       got < 0 ? strerror(e) : "a connection", took, timeout_ms);
	close(c1);
	return verdict(took < timeout_ms / 2, "a non-blocking accept never waits for a header");
}

/* ---- a kept connection's number closed and reused while it is handed over ---- */

/* build/slowcalls.so, when preloaded after the shim, delays the shim's proof that the
 * number still holds the kept socket, or the steps just after it (absent: the race is
 * left to chance). */
extern volatile int slow_proof_fd __attribute__((weak));
extern volatile int slow_proof_after_fd __attribute__((weak));
extern volatile int slow_mmap_tid __attribute__((weak));
extern volatile int slow_close_fd __attribute__((weak));
extern volatile int slow_munmap_tid __attribute__((weak));
extern volatile int slow_accept_tid __attribute__((weak));

static int kept_fd, pair[2];

/* The application's socket that takes the number holds "hello" (not a header). */
static void *close_and_reuse(void *arg)
{
	(void)arg;
	pause_ms(50);
	close(kept_fd);  /* the application closes that number (a close_range, a bug) */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0)
		die_errno("socketpair");
	put(pair[1], "hello");
	printf("closed %d; the application's socketpair took %d\n", kept_fd, pair[0]);
	return NULL;
}

/* after: the number is closed and reused just after the shim proved it (while it looks
 * at the header), not before. */
static int keep_race(bool after)
{
	int l = listener(0, 1), port = port_of(l, 0);
	int c1 = dial(PROXY_IP, 0, port);
	kept_fd = next_number();
	put(c1, "PROXY TCP4 ");
	pause_ms(50);
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die_errno("the partial header was not kept aside");
	char rest[64];
	snprintf(rest, sizeof(rest), "%s 127.0.0.1 5555 %d\r\n", CLIENT_IP, port);
	put(c1, rest);
	pause_ms(50);
	if (!after && &slow_proof_fd)
		slow_proof_fd = kept_fd;
	if (after && &slow_proof_after_fd)
		slow_proof_after_fd = kept_fd;
	pthread_t t;
	pthread_create(&t, NULL, close_and_reuse, NULL);
	int got = try_accept(l);
	pthread_join(t, NULL);
	printf("accept returned %d\n", got);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int family = getpeername(pair[0], (struct sockaddr *)&ss, &sl) == 0 ? ss.ss_family : -1;
	printf("the application's socketpair reports family %d\n", family);
	int bad = verdict(got != pair[0] || got < 0, "accept never returns the application's own socket");
	bad |= verdict(family == AF_UNIX, "the application's socket reports its own address");
	bad |= verdict(fcntl(pair[0], F_GETFD) >= 0, "the application's own socket is never closed");
	char buf[16] = {0};
	bad |= verdict(recv(pair[0], buf, sizeof(buf) - 1, MSG_DONTWAIT) == 5 && !strcmp(buf, "hello"),
		       "the application's own socket keeps its bytes");
	close(c1);
	return bad;
}

/* ---- two kept connections on one number, the first closed behind the shim's back ---- */

/* c1 is kept, its number closed by fclose(fdopen()) (no hook sees it), c2 takes the
 * number and is kept too: c2 is handed over as itself, and at the first one's deadline
 * the shim touches nothing (the number is the application's connection by then). */
static int stale_twin(int timeout_ms)
{
	int l = listener(0, 1), port = port_of(l, 0);
	int c1 = dial(PROXY_IP, 0, port), n = next_number();
	put(c1, "PROXY TCP4 ");
	pause_ms(50);
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die_errno("the first partial header was not kept aside");
	int c2 = unconnected(PROXY_IP, 0);  /* its number taken before n frees */
	fclose(fdopen(n, "r+"));
	connect_to(c2, port);
	put(c2, "PROXY TCP4 ");
	pause_ms(50);
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die_errno("the second partial header was not kept aside");
	header_rest(c2, 5555, port);
	put(c2, "GET / HTTP/1.0\r\n");
	pause_ms(50);
	int got = try_accept(l);
	printf("accept returned %d (the number both were kept on: %d), peer %s\n", got, n,
	       got >= 0 ? peer_str(got) : "-");
	int bad = verdict(got == n && !strcmp(peer_str(got), CLIENT_IP ":5555"),
			  "the second connection is handed over with its own client");
	pause_ms(timeout_ms + 300);  /* past both deadlines */
	int again = try_accept(l);
	char buf[64] = {0};
	ssize_t r = got >= 0 ? recv(got, buf, sizeof(buf) - 1, MSG_DONTWAIT) : -1;
	bad |= verdict(again < 0 && fcntl(n, F_GETFD) >= 0 && r == 16,
		       "after the deadlines the connection is still the application's, its bytes intact");
	close(c1);
	close(c2);
	return bad;
}

/* ---- an event the set reported for a connection since gone ---- */

/* A, X and E are kept; X completes and A's proxy half-closes, so that one look at the set
 * sees both; accept hands X over. The application then stops accepting past the
 * deadlines (a server at its connection limit): A is closed, E handed over, the set left
 * empty with A's hang-up still among the events seen. B takes A's number and is kept; a
 * later accept must not apply A's hang-up to B, whose header then completes. */
static int stale_event(int timeout_ms)
{
	int l = listener(0, 1), port = port_of(l, 0);
	int ca = dial(PROXY_IP, 0, port), cx = dial(PROXY_IP, 0, port), ce = dial(PROXY_IP, 0, port);
	put(ca, "PROXY TCP4 ");
	put(cx, "PROXY TCP4 ");
	put(ce, "PROXY TCP4 ");
	pause_ms(50);
	int na = next_number();
	for (int i = 0; i < 3; i++)
		if (try_accept(l) >= 0 || errno != EAGAIN)
			die_errno("a partial header was not kept aside");
	pause_ms(50);
	header_rest(cx, 5555, port);
	pause_ms(20);
	shutdown(ca, SHUT_WR);
	pause_ms(30);
	int x = try_accept(l);
	printf("accept -> %d (%s)\n", x, x >= 0 ? peer_str(x) : strerror(errno));
	header_rest(ce, 5556, port);
	int cb = unconnected(PROXY_IP, 0);  /* its number taken before A's frees */
	pause_ms(timeout_ms + 100);
	int e = try_accept(l);
	printf("accept -> %d (%s)\n", e, e >= 0 ? peer_str(e) : strerror(errno));
	connect_to(cb, port);
	put(cb, "PROXY TCP4 ");
	pause_ms(50);
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die_errno("B was not kept aside");
	printf("B kept (A's number was %d, the next free is %d)\n", na, next_number());
	int cc = dial(PROXY_IP, 0, port);  /* another connection: an accept looks at the set */
	header(cc, 5557, port);
	pause_ms(50);
	int c = try_accept(l);
	printf("accept -> %d (%s)\n", c, c >= 0 ? peer_str(c) : strerror(errno));
	char rest[96];
	snprintf(rest, sizeof(rest), "%s 127.0.0.1 5558 %d\r\n", CLIENT_IP, port);
	if (send(cb, rest, strlen(rest), MSG_NOSIGNAL) < 0)
		printf("B's proxy: %s (the shim closed B)\n", strerror(errno));
	pause_ms(50);
	int b = try_accept(l);
	printf("accept -> %d (%s)\n", b, b >= 0 ? peer_str(b) : strerror(errno));
	int bad = verdict(b >= 0 && !strcmp(peer_str(b), CLIENT_IP ":5558"),
			  "B, whose header completes in time, is handed over");
	close(ca);
	close(cx);
	close(ce);
	close(cb);
	close(cc);
	return bad;
}

/* ---- more late headers making progress at once than one look at the set takes ---- */

/* 20 kept connections get more of their header (not all of it) and a 21st completes,
 * ready last: an edge-triggered server that accepts until EAGAIN must get it. */
static int et_progress(void)
{
	enum { K = 20 };
	int l = listener(0, 1), port = port_of(l, 0), c[K + 1];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = l};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
		die_errno("epoll");
	for (int i = 0; i <= K; i++) {
		c[i] = dial(PROXY_IP, 0, port);
		put(c[i], "PROXY TCP4 ");
	}
	pause_ms(50);
	int kept = 0;
	while (epoll_wait(ep, &ev, 1, 100) > 0)
		while (try_accept(l) >= 0 || errno != EAGAIN)
			kept = -1;
	printf("%d + 1 connections kept%s\n", K, kept ? ", but some were accepted" : "");
	for (int i = 0; i < K; i++)
		put(c[i], "127.0.0.");
	header_rest(c[K], 5555, port);
	pause_ms(50);
	int got = -1;
	for (int round = 0; round < 20 && got < 0; round++) {  /* 2 s */
		if (epoll_wait(ep, &ev, 1, 100) <= 0)
			continue;
		for (int a; (a = try_accept(l)) >= 0;)
			got = a;
	}
	printf("accepted %d (%s)\n", got, got >= 0 ? peer_str(got) : "never reported");
	return verdict(got >= 0 && !strcmp(peer_str(got), CLIENT_IP ":5555"),
		       "the complete header behind 20 incomplete ones is accepted");
}

/* ---- blocking listeners and how their callers wait ---- */

static void *finish_later(void *arg);
static volatile sig_atomic_t ticks;
static void on_tick(int sig)
{
	(void)sig;
	ticks++;
}

/* Accepts on blocking l until a connection or an error other than EINTR/ECONNABORTED
 * the scenario allows; prints what it saw. */
static int accept_noting(int l, const char *who, int *eintr, int *aborted)
{
	for (;;) {
		int fd = accept(l, NULL, NULL);
		if (fd >= 0)
			return fd;
		if (errno == EINTR && eintr) {
			++*eintr;
			continue;
		}
		if (errno == ECONNABORTED && aborted) {
			++*aborted;
			continue;
		}
		printf("%s: accept: %s\n", who, strerror(errno));
		return -1;
	}
}

/* The proxy sends urgent (MSG_OOB) data in the middle of a header: refused at once, no
 * spin (the kernel counts it toward readiness, a peek never shows it). */
static int urgent_header(int timeout_ms)
{
	int l = listener(0, 1), port = port_of(l, 0);
	int c1 = dial(PROXY_IP, 0, port);
	put(c1, "PROXY TCP4 " CLIENT_IP " 127.0.0.1 5555");
	pause_ms(50);
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die_errno("the partial header was not kept aside");
	if (send(c1, "!", 1, MSG_OOB) != 1)
		die_errno("send MSG_OOB");
	struct pollfd p = {.fd = l, .events = POLLIN};
	long long t0 = now_ms();
	int wakes = 0;
	while (now_ms() - t0 < timeout_ms / 2 && wakes < 1000)
		if (poll(&p, 1, 100) > 0 && try_accept(l) < 0 && errno == EAGAIN)
			wakes++;
	bool closed = peer_closed(c1, 0);
	printf("%d empty wake-ups in %d ms; the proxy's connection %s\n", wakes, timeout_ms / 2,
	       closed ? "was closed" : "is still open");
	int bad = verdict(wakes < 10, "no spin on urgent data");
	bad |= verdict(closed, "the connection with urgent data is refused before its deadline");
	return bad;
}

/* A blocking accept waiting for a late header while signals with SA_RESTART arrive:
 * never EINTR (the kernel would restart the accept). */
static int sa_restart(void)
{
	int l = listener(0, 0), port = port_of(l, 0), eintr = 0;
	struct sigaction sa = {.sa_handler = on_tick, .sa_flags = SA_RESTART};
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 20000}, {0, 20000}};
	int c1 = dial(PROXY_IP, 0, port);
	put(c1, "PROXY TCP4 ");
	pthread_t t;
	pthread_create(&t, NULL, finish_later, &c1);
	setitimer(ITIMER_REAL, &it, NULL);
	int fd = accept_noting(l, "sa_restart", &eintr, NULL);
	setitimer(ITIMER_REAL, &(struct itimerval){0}, NULL);
	pthread_join(t, NULL);
	printf("%d signals during the accept, %d EINTR; accepted %s\n", (int)ticks, eintr,
	       fd >= 0 ? peer_str(fd) : "nothing");
	int bad = verdict(ticks > 5 && eintr == 0, "no EINTR under SA_RESTART handlers");
	bad |= verdict(fd >= 0 && strstr(peer_str(fd), CLIENT_IP), "the late connection is served");
	return bad;
}

static void *finish_later(void *arg)
{
	int c1 = *(int *)arg;
	char rest[64];
	pause_ms(400);
	snprintf(rest, sizeof(rest), "%s 127.0.0.1 5555 80\r\n", CLIENT_IP);
	put(c1, rest);
	return NULL;
}

/* A connection kept aside is not inherited by a program spawned meanwhile: closing it
 * (its deadline) really closes it. */
static int keep_spawn(int timeout_ms)
{
	extern char **environ;
	int l = listener(0, 1), port = port_of(l, 0);
	int c1 = dial(PROXY_IP, 0, port);
	put(c1, "PROXY TCP4 ");
	pause_ms(50);
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die_errno("the partial header was not kept aside");
	pid_t pid;
	char *argv[] = {"sleep", "5", NULL};
	if (posix_spawnp(&pid, "sleep", NULL, NULL, argv, environ) != 0)
		die_errno("posix_spawnp");
	pause_ms(timeout_ms + 100);
	try_accept(l);  /* the deadline passed: the shim closes it */
	bool closed = peer_closed(c1, 500);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return verdict(closed, "a kept connection closed at its deadline is closed for the peer");
}

/* A server whose parent select()s the listener and whose fork child accepts: the child
 * is a blocking caller, never answered ECONNABORTED for its parent's select. */
static int fork_select(void)
{
	int l = listener(0, 0), port = port_of(l, 0);
	int c1 = dial(PROXY_IP, 0, port);
	put(c1, "PROXY TCP4 ");
	fd_set r;
	FD_ZERO(&r);
	FD_SET(l, &r);
	select(l + 1, &r, NULL, NULL, NULL);
	pthread_t t;
	pthread_create(&t, NULL, finish_later, &c1);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = accept_noting(l, "child", NULL, NULL);
		printf("child accepted %s\n", fd >= 0 ? peer_str(fd) : "nothing");
		_exit(fd >= 0 && strstr(peer_str(fd), CLIENT_IP) ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	pthread_join(t, NULL);
	return verdict(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		       "the fork child's blocking accept gets the late connection");
}

/* A server that polled once (its first client), then only blocks in accept: never
 * ECONNABORTED for that old poll. */
static int poll_once(void)
{
	int l = listener(0, 0), port = port_of(l, 0);
	int c0 = dial(PROXY_IP, 0, port);
	header(c0, 5000, port);
	struct pollfd p = {.fd = l, .events = POLLIN};
	poll(&p, 1, 1000);
	int fd0 = accept(l, NULL, NULL);
	int c1 = dial(PROXY_IP, 0, port);
	put(c1, "PROXY TCP4 ");
	pthread_t t;
	pthread_create(&t, NULL, finish_later, &c1);
	int aborted = 0, fd = accept_noting(l, "loop", NULL, &aborted);
	pthread_join(t, NULL);
	printf("first %s; then %d ECONNABORTED; accepted %s\n", fd0 >= 0 ? "served" : "lost",
	       aborted, fd >= 0 ? peer_str(fd) : "nothing");
	return verdict(aborted == 0 && fd >= 0, "a plain accept loop after one poll is never aborted");
}

/* poll() may take as many entries as RLIMIT_NOFILE (negative ones are skipped): the
 * set of a listener with a kept connection must not push it past (EINVAL). */
static int poll_at_nofile(void)
{
	int l = listener(0, 1), port = port_of(l, 0);
	int c = dial(PROXY_IP, 0, port);
	put(c, "PROXY TCP4 ");
	struct rlimit rl = {64, 64};
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die_errno("setrlimit");
	struct pollfd p[64];
	for (int i = 0; i < 64; i++)
		p[i] = (struct pollfd){.fd = -1};
	p[0] = (struct pollfd){.fd = l, .events = POLLIN};
	int fd = -1, einval = 0, wrong = 0;
	bool sent = false;
	for (long long end = now_ms() + 5000; fd < 0 && now_ms() < end;) {
		int r = poll(p, 64, 100);
		if (r < 0)
			einval += errno == EINVAL;
		for (int i = 1; r > 0 && i < 64; i++)
			wrong += p[i].revents != 0 || p[i].fd != -1;
		if (r > 0 && (p[0].revents & POLLIN))
			fd = accept(l, NULL, NULL);
		if (!sent) {  /* the first look kept it aside; now the rest of the header */
			header_rest(c, 7777, port);
			sent = true;
		}
	}
	printf("poll errors EINVAL %d, entries changed %d, accepted %s\n", einval, wrong,
	       fd >= 0 ? peer_str(fd) : "nothing");
	return verdict(!einval && !wrong && fd >= 0 && strstr(peer_str(fd), CLIENT_IP),
		       "a full-length poll array still hears of the kept connection");
}

/* A listener moved to number 'at' (or above). */
static int listener_at(int at)
{
	int l = listener(0, 1), moved = fcntl(l, F_DUPFD, at);
	if (moved < 0)
		die_errno("F_DUPFD");
	close(l);
	return moved;
}

/* Keeps a connection on non-blocking listener l: its header begun, not finished. */
static int kept_on(int l)
{
	int c = dial(PROXY_IP, 0, port_of(l, 0));
	put(c, "PROXY TCP4 ");
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die("a connection with half a header was handed over");
	return c;
}

/* Waits (2 s at most) until poll or select over l and the fds in between reports l
 * readable; then accepts. */
static int accept_when_ready(bool sel, int l, const int *fds, int n)
{
	struct pollfd p[n + 1];
	for (long long end = now_ms() + 2000; now_ms() < end;) {
		bool ready;
		if (sel) {
			fd_set r;
			int top = l;
			FD_ZERO(&r);
			FD_SET(l, &r);
			for (int i = 0; i < n; i++) {
				FD_SET(fds[i], &r);
				top = fds[i] > top ? fds[i] : top;
			}
			ready = select(top + 1, &r, NULL, NULL, &(struct timeval){0, 100000}) > 0 &&
				FD_ISSET(l, &r);
		} else {
			for (int i = 0; i < n; i++)
				p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
			p[n] = (struct pollfd){.fd = l, .events = POLLIN};
			ready = poll(p, (nfds_t)n + 1, 100) > 0 && (p[n].revents & POLLIN);
		}
		int fd;
		if (ready && (fd = try_accept(l)) >= 0)
			return fd;
	}
	return -1;
}

/* Listeners far apart in number, with many descriptors between them and 70 listeners
 * made and closed meanwhile (each with a set, swept): poll or select over them still
 * reports each one readable when its kept connection's header completes. */
static int span(bool sel)
{
	enum { CHURN = 70, IDLE = 200 };
	int lo = listener(0, 1), clo = kept_on(lo);
	for (int i = 0; i < CHURN; i++) {
		int l = listener_at(300 + i), c = kept_on(l);
		close(l);
		close(c);
	}
	int hi = listener_at(900), chi = kept_on(hi), idle[IDLE];
	for (int i = 0; i < IDLE; i += 2)
		if (pipe(&idle[i]) < 0)
			die_errno("pipe");
	header_rest(chi, 6001, port_of(hi, 0));
	int got_hi = accept_when_ready(sel, hi, idle, IDLE);
	header_rest(clo, 6002, port_of(lo, 0));
	int got_lo = accept_when_ready(sel, lo, idle, IDLE);
	printf("listener %d: %s; listener %d: ", hi, got_hi >= 0 ? peer_str(got_hi) : "never ready",
	       lo);
	printf("%s\n", got_lo >= 0 ? peer_str(got_lo) : "never ready");
	return verdict(got_hi >= 0 && !strcmp(peer_str(got_hi), CLIENT_IP ":6001") &&
			       got_lo >= 0 && !strcmp(peer_str(got_lo), CLIENT_IP ":6002"),
		       "each listener is reported when its kept header completes");
}

/* A listener watched only for POLLRDNORM / EPOLLRDNORM (the same readiness as POLLIN
 * for a listener) is reported, as asked, when its kept header completes. */
static int rdnorm(bool use_epoll)
{
	int l = listener(0, 1), ep = -1, c = kept_on(l), got = 0;
	if (use_epoll) {
		struct epoll_event ev = {.events = EPOLLRDNORM, .data.fd = l};
		if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
			die_errno("epoll");
	}
	header_rest(c, 6300, port_of(l, 0));
	if (use_epoll) {
		struct epoll_event ev;
		got = epoll_wait(ep, &ev, 1, 1000) == 1 && ev.data.fd == l && (ev.events & EPOLLRDNORM);
	} else {
		struct pollfd p = {.fd = l, .events = POLLRDNORM};
		got = poll(&p, 1, 1000) == 1 && p.revents == POLLRDNORM;
	}
	int fd = got ? try_accept(l) : -1;
	printf("%s: %s\n", use_epoll ? "epoll EPOLLRDNORM" : "poll POLLRDNORM",
	       fd >= 0 ? peer_str(fd) : "never reported");
	return verdict(fd >= 0 && !strcmp(peer_str(fd), CLIENT_IP ":6300"),
		       "a listener watched for RDNORM hears of its kept header");
}

/* select() looks only at the caller's nfds bits, even when the shim extends the call
 * past them for a set descriptor: a bit set beyond nfds (a writable socket, or a
 * closed number) never makes it return early or fail. */
static int select_nfds(void)
{
	int l = listener(0, 1), other = dial(PROXY_IP, 0, port_of(listener(0, 1), 0));
	int hole = dup(0), c = kept_on(l);
	(void)c;
	close(hole);
	fd_set r, w;
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(l, &r);
	FD_SET(hole, &r);   /* beyond nfds, closed */
	FD_SET(other, &w);  /* beyond nfds, writable */
	long long t0 = now_ms();
	int n = select(l + 1, &r, &w, NULL, &(struct timeval){0, 300000});
	printf("listener %d, closed %d and writable %d beyond nfds %d: select returned %d (%s) "
	       "after %lld ms\n", l, hole, other, l + 1, n, n < 0 ? strerror(errno) : "no error",
	       now_ms() - t0);
	return verdict(n == 0, "select ignores the bits beyond nfds");
}

/* Another thread keeps a connection on listener A while this thread's poll or select is
 * being extended (build/slowcalls.so holds the call in the mmap of its room for 200 ms):
 * listener B, whose kept header had completed before the call, is still reported. */
static void *keep_on_a(void *arg)
{
	int *a = arg;  /* a[0]: the listener, a[1]: its client with half a header */
	pause_ms(50);
	a[1] = try_accept(a[0]) < 0 && errno == EAGAIN;  /* kept: 1 */
	return NULL;
}

static int keep_meanwhile(bool sel)
{
	enum { IDLE = 300, SEL_BITS = 8192 };
	int a = listener(0, 1), c0 = kept_on(a);
	header_rest(c0, 6100, port_of(a, 0));  /* A's set made, then emptied */
	pause_ms(50);
	if (try_accept(a) < 0)
		die("the first connection on listener A was not handed over");
	int b = listener_at(900), cb = kept_on(b), idle[IDLE];
	header_rest(cb, 6101, port_of(b, 0));  /* decided before the call */
	pause_ms(50);
	for (int i = 0; i < IDLE; i += 2)
		if (pipe(&idle[i]) < 0)
			die_errno("pipe");
	int arg[2] = {a, 0}, ready = 0, r;
	put(dial(PROXY_IP, 0, port_of(a, 0)), "PROXY TCP4 ");
	pthread_t t;
	pthread_create(&t, NULL, keep_on_a, arg);
	if (&slow_mmap_tid)
		slow_mmap_tid = (int)gettid();
	long long t0 = now_ms();
	if (sel) {  /* bitmaps of 8,192 bits: the room is mapped */
		static unsigned long bits[SEL_BITS / (8 * sizeof(long))];
		const int w = 8 * sizeof(long);
		bits[a / w] |= 1ul << a % w;
		bits[b / w] |= 1ul << b % w;
		r = select(SEL_BITS, (fd_set *)bits, NULL, NULL, &(struct timeval){1, 0});
		ready = r > 0 && (bits[b / w] >> b % w & 1);
	} else {  /* 302 entries: the room is mapped */
		struct pollfd p[IDLE + 2];
		p[0] = (struct pollfd){.fd = a, .events = POLLIN};
		for (int i = 0; i < IDLE; i++)
			p[i + 1] = (struct pollfd){.fd = idle[i], .events = POLLIN};
		p[IDLE + 1] = (struct pollfd){.fd = b, .events = POLLIN};
		r = poll(p, IDLE + 2, 1000);
		ready = r > 0 && (p[IDLE + 1].revents & POLLIN);
	}
	long long took = now_ms() - t0;
	pthread_join(t, NULL);
	printf("A kept a connection during the call: %s; the call returned %d after %lld ms, "
	       "listener B %s\n", arg[1] ? "yes" : "no", r, took, ready ? "readable" : "not reported");
	int fd = ready ? try_accept(b) : -1;
	return verdict(arg[1] && fd >= 0 && !strcmp(peer_str(fd), CLIENT_IP ":6101"),
		       "a listener whose kept header completed is reported while another keeps one");
}

/* A fork while another thread's close of a listener is destroying its set, held 200 ms
 * by build/slowcalls.so: in the shim's close of the set's epoll instance (its kept
 * connections counted off already: FORK_AT_SET_CLOSE), just after its array of kept
 * connections is given back (FORK_AT_UNMAP): the child neither crashes nor loses sight
 * of its own kept connections; or in the close of the kept connection itself
 * (FORK_AT_KEPT_CLOSE): the child holds no copy of it, so the parent's close reaches
 * the client. */
enum { FORK_AT_SET_CLOSE, FORK_AT_UNMAP, FORK_AT_KEPT_CLOSE };
static bool hold_unmap;

static void *close_listener(void *arg)
{
	if (hold_unmap && &slow_munmap_tid)
		slow_munmap_tid = (int)gettid();
	close(*(int *)arg);
	return NULL;
}

static int fork_in_destroy(int at)
{
	int l = listener(0, 1), c = dial(PROXY_IP, 0, port_of(l, 0)), kfd = next_number();
	put(c, "PROXY TCP4 ");
	if (try_accept(l) >= 0 || errno != EAGAIN)
		die("the partial header was not kept aside");
	/* The set is made when its first connection is kept: its epoll instance takes the
	 * number after the connection's. */
	char path[64], what[64] = "";
	snprintf(path, sizeof(path), "/proc/self/fd/%d", kfd + 1);
	if (readlink(path, what, sizeof(what) - 1) < 0 || !strstr(what, "eventpoll"))
		die("fd %d is not the set's epoll instance (%s)", kfd + 1, what);
	hold_unmap = at == FORK_AT_UNMAP;
	if (at != FORK_AT_UNMAP && &slow_close_fd)
		slow_close_fd = at == FORK_AT_KEPT_CLOSE ? kfd : kfd + 1;
	pthread_t t;
	pthread_create(&t, NULL, close_listener, &l);
	pause_ms(50);
	pid_t pid = fork();
	if (pid == 0 && at == FORK_AT_KEPT_CLOSE) {  /* holds whatever it inherited */
		pause_ms(3000);
		_exit(0);
	}
	if (at == FORK_AT_KEPT_CLOSE) {
		pthread_join(t, NULL);
		bool closed = peer_closed(c, 1500);
		printf("the client %s the close\n", closed ? "saw" : "did not see");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return verdict(closed, "the parent's close of a kept connection reaches the client");
	}
	if (pid == 0) {
		int l2 = listener(0, 1), c2 = kept_on(l2);
		header_rest(c2, 6200, port_of(l2, 0));
		struct pollfd p = {.fd = l2, .events = POLLIN};
		int r = poll(&p, 1, 2000), fd = r > 0 ? try_accept(l2) : -1;
		printf("child: poll returned %d, accepted %s\n", r, fd >= 0 ? peer_str(fd) : "nothing");
		fflush(stdout);
		_exit(fd >= 0 && !strcmp(peer_str(fd), CLIENT_IP ":6200") ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	pthread_join(t, NULL);
	if (WIFSIGNALED(st))
		printf("child killed by signal %d\n", WTERMSIG(st));
	return verdict(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		       "the fork child's kept connection is reported by its poll");
}

/* An epoll instance made before fork is shared with the child: a connection the child
 * keeps must make the listener readable there. */
static int fork_epoll(void)
{
	int l = listener(0, 1), port = port_of(l, 0), ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
		die_errno("epoll");
	pid_t pid = fork();
	if (pid == 0) {
		int c = dial(PROXY_IP, 0, port), fd = -1;
		put(c, "PROXY TCP4 ");
		bool sent = false;
		for (long long end = now_ms() + 4000; fd < 0 && now_ms() < end;) {
			struct epoll_event got;
			if (epoll_wait(ep, &got, 1, 200) == 1 && got.data.fd == l)
				fd = accept4(l, NULL, NULL, SOCK_NONBLOCK);
			if (fd < 0 && !sent && errno == EAGAIN) {  /* kept: now the rest */
				header_rest(c, 7778, port);
				sent = true;
			}
		}
		printf("child accepted %s\n", fd >= 0 ? peer_str(fd) : "nothing");
		_exit(fd >= 0 && strstr(peer_str(fd), CLIENT_IP) ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	return verdict(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		       "the child hears of its kept connection in the inherited instance");
}

/* A listener made non-blocking, then blocking again (fcntl), in a select loop: after a
 * late header the loop gets control back within its tick, never held in accept. */
static int nb_then_block(void)
{
	int l = listener(0, 1), port = port_of(l, 0);
	fcntl(l, F_SETFL, fcntl(l, F_GETFL) & ~O_NONBLOCK);
	int c1 = dial(PROXY_IP, 0, port);
	put(c1, "PROXY TCP4 ");
	pthread_t t;
	pthread_create(&t, NULL, finish_later, &c1);
	long long worst = 0, last = now_ms(), t0 = last;
	int served = 0;
	while (!served && now_ms() - t0 < 3000) {
		fd_set r;
		FD_ZERO(&r);
		FD_SET(l, &r);
		struct timeval tv = {0, 100000};
		int n = select(l + 1, &r, NULL, NULL, &tv);
		if (n > 0) {
			int fd = accept(l, NULL, NULL);
			served = fd >= 0 && strstr(peer_str(fd), CLIENT_IP) != NULL;
		}
		long long now = now_ms();
		if (now - last > worst)
			worst = now - last;
		last = now;
	}
	pthread_join(t, NULL);
	printf("longest time without control: %lld ms; served %d\n", worst, served);
	int bad = verdict(worst < 300, "the select loop never loses control");
	bad |= verdict(served, "the late connection is served");
	return bad;
}

/* ---- children that inherit proxied connections ---- */

/* ---- a thread cancelled inside a blocking accept ---- */

static void *accept_forever(void *arg)
{
	close(accept(*(int *)arg, NULL, NULL));
	return NULL;
}

static __thread sigjmp_buf out_of_accept;

static void jump_out(int sig)
{
	(void)sig;
	siglongjmp(out_of_accept, 1);
}

static volatile sig_atomic_t let_go, jumped;

/* Blocks in accept until a signal's handler jumps out of it; then, if arg says so, lives
 * on (until let_go) without accepting; then exits the thread (which unwinds: anything
 * the shim left registered on the stack would be jumped to). */
static void *accept_until_jump(void *arg)
{
	const int *a = arg;
	if (!sigsetjmp(out_of_accept, 1))
		close(accept(a[0], NULL, NULL));
	else
		jumped = 1;
	while (a[1] && !let_go)
		pause_ms(10);
	pthread_exit(NULL);
}

enum gone { G_CANCELLED, G_PHANTOM, G_DUP2, G_JUMPED, G_JUMPED_LIVES };

/* A thread that left accept for good is not waited for: the main thread, holding a late
 * header's connection, takes each new one itself at once (5 in a row), instead of
 * leaving it for the shim's wait to a thread that will never take it.
 * - G_CANCELLED: the thread is cancelled inside accept;
 * - G_PHANTOM, G_DUP2: the thread stays blocked in accept on a listener whose number is
 *   closed and given to a new listener, or that a new listener is dup2'd over (neither
 *   wakes it; it is let go at the end);
 * - G_JUMPED: a signal handler long-jumps out of the thread's accept, then the thread
 *   exits;
 * - G_JUMPED_LIVES: the same, but the thread lives on without accepting: it stays
 *   counted, which may cost one wait, never one per accept. */
static int gone_acceptor(enum gone how)
{
	int l = listener(0, 0), old_port = port_of(l, 0), num = l, jump_args[2] = {l, 0};
	bool stays = how == G_PHANTOM || how == G_DUP2;
	bool jumps = how == G_JUMPED || how == G_JUMPED_LIVES;
	pthread_t t;
	struct sigaction sa = {.sa_handler = jump_out};
	sigaction(SIGUSR1, &sa, NULL);
	jump_args[1] = how == G_JUMPED_LIVES;
	if (pthread_create(&t, NULL, jumps ? accept_until_jump : accept_forever,
			   jumps ? (void *)jump_args : (void *)&num))
		die("pthread_create");
	pause_ms(100);  /* in the kernel's accept by now */
	if (jumps) {
		if (pthread_kill(t, SIGUSR1))
			die("pthread_kill");
		for (int i = 0; i < 200 && !jumped; i++)
			pause_ms(10);
		if (!jumped || (how == G_JUMPED && pthread_join(t, NULL)))
			die("the thread did not jump out of accept");
	} else if (how == G_PHANTOM) {
		close(l);
		if ((l = listener(0, 0)) != num)  /* the lowest free number */
			die("the listener's number was not reused");
	} else if (how == G_DUP2) {
		int l2 = listener(0, 0);
		if (dup2(l2, l) != l)
			die_errno("dup2");
		close(l2);
	} else if (pthread_cancel(t) || pthread_join(t, NULL)) {
		die("pthread_cancel");
	}
	int port = port_of(l, 0), late = dial(PROXY_IP, 0, port), whole[5], fd[5];
	long long ms[5], total = 0, most = 0;
	bool right = true;
	put(late, "PROXY TCP4 ");
	for (int i = 0; i < 5; i++) {
		whole[i] = dial(PROXY_IP, 0, port);
		header(whole[i], 6003 + i, port);
		pause_ms(20);  /* queued, its bytes in */
		long long t0 = now_ms();
		fd[i] = accept(l, NULL, NULL);
		ms[i] = now_ms() - t0;
		total += ms[i];
		most = ms[i] > most ? ms[i] : most;
		char want[32];
		snprintf(want, sizeof(want), "%s:%d", CLIENT_IP, 6003 + i);
		right = right && fd[i] >= 0 && !strcmp(peer_str(fd[i]), want);
	}
	printf("5 accepts with a late header kept: %lld, %lld, %lld, %lld, %lld ms%s\n", ms[0],
	       ms[1], ms[2], ms[3], ms[4], right ? "" : ", not each the next client");
	if (stays) {  /* the old socket still listens: the thread takes this and ends */
		int last = dial(PROXY_IP, 0, old_port);
		header(last, 6009, old_port);
		pthread_join(t, NULL);
		close(last);
	}
	if (how == G_JUMPED_LIVES) {
		let_go = 1;
		pthread_join(t, NULL);
		return verdict(right && total < 150, "one wait at most for a thread counted wrongly");
	}
	return verdict(right && most < 30, "each complete header's connection at once, the late one kept");
}

/* ---- accept inside a signal handler that interrupted accept ---- */

static int handler_listener;
static _Atomic bool storm_over;
static _Atomic long handled;

static void accept_in_handler(int sig)
{
	(void)sig;
	int saved = errno;
	close(accept(handler_listener, NULL, NULL));
	handled++;
	errno = saved;
}

/* Signals the thread *arg every 2 to 20 us (at random: each lands at a different point of
 * its loop, not right after the previous handler). */
static void *signal_storm(void *arg)
{
	unsigned seed = 1;
	while (!storm_over) {
		pthread_kill(*(pthread_t *)arg, SIGUSR2);
		uint64_t until = now_ns() + 2000 + (unsigned)rand_r(&seed) % 18000;
		while (now_ns() < until)
			;
	}
	return NULL;
}

/* For two seconds, signals whose handler accepts on one listener land anywhere in this
 * thread's accepts on another (both non-blocking: EAGAIN): the shim's record of a
 * thread in accept is taken by one of the two, never both, never through a pointer
 * the other cleared (that crashed). */
static int handler_accepts(void)
{
	int l = listener(0, 1);
	handler_listener = listener(0, 1);
	struct sigaction sa = {.sa_handler = accept_in_handler};  /* no SA_RESTART */
	sigaction(SIGUSR2, &sa, NULL);
	pthread_t self = pthread_self(), storm;
	if (pthread_create(&storm, NULL, signal_storm, &self))
		die("pthread_create");
	long accepts = 0;
	for (long long end = now_ms() + 2000; now_ms() < end; accepts++)
		close(accept(l, NULL, NULL));
	storm_over = true;
	pthread_join(storm, NULL);
	printf("%ld accepts, %ld signals handled\n", accepts, (long)handled);
	return verdict(handled > 0, "no crash with accepts inside signal handlers");
}

/* A thread in accept that takes its connection 200 ms late (build/slowcalls.so). */
static void *accept_late(void *arg)
{
	if (&slow_accept_tid)
		slow_accept_tid = (int)gettid();
	close(accept(*(int *)arg, NULL, NULL));
	return NULL;
}

enum handover_case { H_SURPLUS, H_SIGNAL, H_DECIDED };
static pthread_t main_thread;
static _Atomic long long dialed_at;
struct handover_args {
	int port, late;
	enum handover_case how;
};

/* Dials whole headers' connections to the listener (H_SURPLUS: two, more than the one
 * thread in accept takes; else one), then H_SIGNAL: signals the main thread; H_DECIDED:
 * completes the late header. */
static void *dial_later(void *arg)
{
	const struct handover_args *a = arg;
	int c[2], n = a->how == H_SURPLUS ? 2 : 1;
	pause_ms(100);  /* the main thread waits for its kept connection */
	for (int i = 0; i < n; i++) {
		c[i] = dial(PROXY_IP, 0, a->port);
		header(c[i], 6004 + i, a->port);
	}
	dialed_at = now_ms();
	pause_ms(10);
	if (a->how == H_SIGNAL)
		pthread_kill(main_thread, SIGUSR1);
	if (a->how == H_DECIDED)
		header_rest(a->late, 6010, a->port);
	pause_ms(500);
	for (int i = 0; i < n; i++)
		close(c[i]);
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* The main thread holds a kept connection while another thread is in accept, taking its
 * connections 200 ms late (build/slowcalls.so). New connections come:
 * - H_SURPLUS: two, more than that thread takes: the main thread takes one at once, not
 *   after the shim's wait for the other thread;
 * - H_SIGNAL: one, left to the other thread, and a signal (handler without SA_RESTART)
 *   during that wait: the accept returns EINTR, as the kernel's would;
 * - H_DECIDED: one, left to the other thread, and the kept header completes during that
 *   wait: the accept returns the kept connection at once. */
static int handover(enum handover_case how)
{
	if (!&slow_accept_tid)
		die("needs build/slowcalls.so preloaded after the shim");
	alarm(10);  /* a wait that never ends fails here, not at the caller's timeout */
	struct sigaction sa = {.sa_handler = on_usr1};  /* no SA_RESTART */
	sigaction(SIGUSR1, &sa, NULL);
	int l = listener(0, 0), port = port_of(l, 0);
	pthread_t slow, dialer;
	main_thread = pthread_self();
	if (pthread_create(&slow, NULL, accept_late, &l))
		die("pthread_create");
	pause_ms(100);  /* in accept by now */
	struct handover_args a = {port, dial(PROXY_IP, 0, port), how};
	put(a.late, "PROXY TCP4 ");
	pause_ms(50);
	/* The thread in accept takes 'late' 200 ms from now; this one takes it first. */
	if (pthread_create(&dialer, NULL, dial_later, &a))
		die("pthread_create");
	int fd = accept(l, NULL, NULL), e = errno;
	long long ms = now_ms() - dialed_at;
	printf("accept: %s %lld ms after the dial\n", fd >= 0 ? peer_str(fd) : strerror(e), ms);
	pthread_join(dialer, NULL);
	shutdown(l, SHUT_RD);  /* wakes the other thread if it is still in accept */
	pthread_join(slow, NULL);
	switch (how) {
	case H_SURPLUS:
		return verdict(fd >= 0 && !strncmp(peer_str(fd), CLIENT_IP ":600", 13) && ms < 30,
			       "a connection more than the thread in accept takes is taken at once");
	case H_SIGNAL:
		return verdict(fd < 0 && e == EINTR && ms >= 10, "EINTR, as the accept it stands for");
	case H_DECIDED:
		return verdict(fd >= 0 && !strcmp(peer_str(fd), CLIENT_IP ":6010") && ms < 40,
			       "the kept connection, as soon as its header completes");
	}
	return 2;
}

static char self[4096];

/* A proxied connection to l naming CLIENT_IP:cport: the proxy's end; *x the
 * accepted one (blocking accept: the header is consumed there). */
static int proxied(int l, int port, int cport, int *x)
{
	int c = dial(PROXY_IP, 0, port);
	header(c, cport, port);
	if ((*x = accept(l, NULL, NULL)) < 0)
		die_errno("accept");
	return c;
}

/* A vfork child closes what it inherited before it exits (close, or close_range over
 * every descriptor, as CPython's subprocess does): the parent still has a proxied
 * connection and a kept one, and the shim must still know both: the first reports its
 * client, the second is handed over when its header completes. */
static int vfork_closes(bool range)
{
	int l = listener(0, 1), port = port_of(l, 0), x;
	int c = dial(PROXY_IP, 0, port);
	header(c, 5555, port);
	pause_ms(20);
	if ((x = accept(l, NULL, NULL)) < 0)
		die_errno("accept");
	int late = kept_on(l);
	pid_t pid = vfork();
	if (pid == 0) {
		if (range)
			syscall(SYS_close_range, 3u, ~0u, 0u);
		else
			close(x);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, NULL, 0) != pid)
		die_errno("vfork");
	header_rest(late, 5556, port);
	int y = accept_when_ready(false, l, NULL, 0);
	char was[32];
	snprintf(was, sizeof(was), "%s", peer_str(x));
	printf("after the vfork child's %s: the connection %s, the kept one %s\n",
	       range ? "close_range" : "close", was, y >= 0 ? peer_str(y) : "never handed over");
	return verdict(!strcmp(was, CLIENT_IP ":5555") && y >= 0 &&
			       !strcmp(peer_str(y), CLIENT_IP ":5556"),
		       "the parent's connections keep their clients");
}

static int spawn(const char *how)
{
	int l = listener(0, 0), port = port_of(l, 0), bad = 0;
	const char *forged = FORGED_LINE;
	int x, c = proxied(l, port, 5555, &x);
	put(c, forged);
	pause_ms(50);
	char cmd[4200], out[512] = {0}, fdarg[16];
	snprintf(cmd, sizeof(cmd), "%s child %d", self, x);
	snprintf(fdarg, sizeof(fdarg), "%d", x);
	fflush(stdout);
	if (!strcmp(how, "system")) {
		char file[] = "/tmp/fdedge.XXXXXX";
		int o = mkstemp(file);
		char redir[4300];
		snprintf(redir, sizeof(redir), "%s > %s", cmd, file);
		if (o < 0 || system(redir) != 0)
			die_errno("system");
		if (read(o, out, sizeof(out) - 1) < 0)
			die_errno("read");
		unlink(file);
		close(o);
	} else if (!strcmp(how, "lost")) {
		/* A program without the shim that clears the environment on the way: the
		 * child gets no state at all. */
		char lost[4400];
		snprintf(lost, sizeof(lost),
			 "env -u LD_PRELOAD sh -c 'exec env -i LD_PRELOAD=\"%s\" "
			 "PROXYSHIM_TRUSTED=%s %s'", getenv("LD_PRELOAD"), PROXY_IP, cmd);
		FILE *p = popen(lost, "r");
		if (!p || !fgets(out, sizeof(out), p) || pclose(p) != 0)
			die_errno("popen");
	} else if (!strcmp(how, "popen")) {
		FILE *p = popen(cmd, "r");
		if (!p || !fgets(out, sizeof(out), p) || pclose(p) != 0)
			die_errno("popen");
	} else {
		extern char **environ;
		char *argv[] = {self, "child", fdarg, NULL};
		int pfd[2];
		pid_t pid;
		posix_spawn_file_actions_t fa;
		if (pipe(pfd) < 0)
			die_errno("pipe");
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
		if (posix_spawn(&pid, self, &fa, NULL, argv, environ) != 0)
			die_errno("posix_spawn");
		close(pfd[1]);
		if (read(pfd[0], out, sizeof(out) - 1) < 0)
			die_errno("read");
		waitpid(pid, NULL, 0);
	}
	printf("child: %s", out);
	char want[64];
	if (!strcmp(how, "lost"))  /* nothing proves the header is still unread */
		snprintf(want, sizeof(want), "peer %d=%s:%d\n", x, PROXY_IP, port_of(c, 0));
	else
		snprintf(want, sizeof(want), "peer %d=%s:5555\n", x, CLIENT_IP);
	bad |= verdict(!strstr(out, FORGED_IP), "the child never takes the client's bytes "
		       "for a header");
	bad |= verdict(!strcmp(out, want), !strcmp(how, "lost")
					   ? "the child leaves the connection untouched"
					   : "the child sees the header's client");
	bad |= verdict(holds_forged(x, "parent"), "the parent gets the client's bytes intact");
	close(c);
	return bad;
}

static int spawn_idle(int n, int timeout_ms)
{
	int l = listener(0, 0), port = port_of(l, 0);
	for (int i = 0, x; i < n; i++)
		proxied(l, port, 6000 + i, &x);
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "%s child", self);
	long long t0 = now_ms();
	FILE *p = popen(cmd, "r");
	char out[64];
	if (!p || (fgets(out, sizeof(out), p), pclose(p)) != 0)
		die_errno("popen");
	long long took = now_ms() - t0;
	printf("popen with %d idle proxied connections took %lld ms (header timeout %d ms)\n",
	       n, took, timeout_ms);
	return verdict(took < timeout_ms / 2, "a child never waits for headers at start");
}

#define INHERIT_CARRIED 4000  /* sockets the shim carries across one exec */

static int exec_many(int n)
{
	int l = listener(0, 0), port = port_of(l, 0), k = 0;
	static char *argv[8192];
	static int cport_of[65536];
	argv[k++] = self;
	argv[k++] = "child";
	if (n > 8000)
		die_errno("at most 8000 connections");
	for (int i = 0, x; i < n; i++) {
		proxied(l, port, 7000 + i, &x);
		if (x >= 65536)
			die_errno("descriptor too high");
		cport_of[x] = 7000 + i;
		char *a = malloc(16);
		snprintf(a, 16, "%d", x);
		argv[k++] = a;
	}
	argv[k] = NULL;
	int pfd[2];
	if (pipe(pfd) < 0)
		die_errno("pipe");
	long long t0 = now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		execv(self, argv);
		_exit(127);
	}
	close(pfd[1]);
	FILE *f = fdopen(pfd[0], "r");
	char line[128];
	int right = 0, proxy = 0, lines = 0;
	while (f && fgets(line, sizeof(line), f)) {
		int fd, p;
		char ip[32];
		lines++;
		bool parsed = sscanf(line, "peer %d=%31[0-9.]:%d", &fd, ip, &p) == 3 && fd >= 0 &&
			      fd < 65536;
		if (parsed && !strcmp(ip, CLIENT_IP) && p == cport_of[fd])
			right++;
		else if (parsed && !strcmp(ip, PROXY_IP))
			proxy++;
		else if (lines - right - proxy <= 3)
			printf("child: %s", line);
	}
	waitpid(pid, NULL, 0);
	int carried = n < INHERIT_CARRIED ? n : INHERIT_CARRIED;
	printf("%d of %d connections kept their client across execve, %d report the proxy "
	       "(%lld ms)\n", right, n, proxy, now_ms() - t0);
	return verdict(right == carried && proxy == n - carried,
		       "every carried connection keeps its client, no other is guessed");
}

/* One proxied connection across one exec-family call (made in a forked or vforked
 * child): the new program reports the header's client. */
static int exec_how(const char *how)
{
	extern char **environ;
	int l = listener(0, 0), port = port_of(l, 0), x, pfd[2];
	int c = proxied(l, port, 5555, &x);
	char fdarg[16], out[256] = {0};
	snprintf(fdarg, sizeof(fdarg), "%d", x);
	char *argv[] = {self, "child", fdarg, NULL};
	if (pipe(pfd) < 0)
		die_errno("pipe");
	pid_t pid = !strcmp(how, "vfork") ? vfork() : fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		if (!strcmp(how, "execv") || !strcmp(how, "vfork"))
			execv(self, argv);
		else if (!strcmp(how, "execvp"))
			execvp(self, argv);
		else if (!strcmp(how, "execvpe"))
			execvpe(self, argv, environ);
		else if (!strcmp(how, "execl"))
			execl(self, self, "child", fdarg, (char *)NULL);
		else if (!strcmp(how, "execlp"))
			execlp(self, self, "child", fdarg, (char *)NULL);
		else if (!strcmp(how, "execle"))
			execle(self, self, "child", fdarg, (char *)NULL, environ);
		else if (!strcmp(how, "fexecve")) {
			int e = open(self, O_RDONLY);  /* not O_CLOEXEC: the kernel reads it */
			fexecve(e, argv, environ);
		} else if (!strcmp(how, "execveat"))
			execveat(AT_FDCWD, self, argv, environ, 0);
		_exit(127);
	}
	close(pfd[1]);
	if (read(pfd[0], out, sizeof(out) - 1) < 0)
		die_errno("read");
	int st;
	waitpid(pid, &st, 0);
	printf("%s: %s", how, out);
	char want[64];
	snprintf(want, sizeof(want), "peer %d=%s:5555\n", x, CLIENT_IP);
	close(c);
	return verdict(!strcmp(out, want), "the new program sees the header's client");
}

/* One proxied connection, its client's own PROXY line unread, across an execv of this
 * program in place (no fork: for emulators whose fork is broken). The new image
 * prints "peer FD=ADDR:PORT": the header's client, never the forged one. */
static int exec_self(void)
{
	int l = listener(0, 0), port = port_of(l, 0), x;
	int c = proxied(l, port, 5555, &x);
	put(c, FORGED_LINE);
	if (fcntl(c, F_SETFD, 0) < 0)  /* the proxy's end stays open in the new image */
		die("fcntl");
	char fdarg[16];
	snprintf(fdarg, sizeof(fdarg), "%d", x);
	char *argv[] = {self, "child", fdarg, NULL};
	fflush(stdout);
	execv(self, argv);
	die("execv");
	return 2;
}

/* A proxied connection passed to another program over a UNIX socket: no state goes
 * with it, so it reports its real peer (the proxy), never the client's own bytes. */
static int scm_rights(void)
{
	int l = listener(0, 0), port = port_of(l, 0), x, sv[2], pfd[2];
	const char *forged = FORGED_LINE;
	int c = proxied(l, port, 5555, &x);
	put(c, forged);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe(pfd) < 0)
		die_errno("socketpair");
	pid_t pid = fork();
	if (pid == 0) {
		dup2(sv[1], 0);
		dup2(pfd[1], 1);
		execl(self, self, "receive", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	char byte = 0, cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {&byte, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			   .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &x, sizeof(int));
	if (sendmsg(sv[0], &m, 0) != 1)
		die_errno("sendmsg");
	char out[512] = {0};
	ssize_t n = 0, r;
	while (n < (ssize_t)sizeof(out) - 1 && (r = read(pfd[0], out + n, sizeof(out) - 1 - (size_t)n)) > 0)
		n += r;
	waitpid(pid, NULL, 0);
	printf("receiver: %s", out);
	char want[600];
	snprintf(want, sizeof(want), "peer %s:%d data %s\n", PROXY_IP, port_of(c, 0), forged);
	close(c);
	return verdict(!strcmp(out, want), "the receiver sees the real peer and every byte");
}

/* popen streams as glibc has them: fclose() waits for the child as pclose() does and
 * later popen calls still work; every mode glibc takes is taken. */
static int popen_fclose(void)
{
	static const char *const good[] = {"r", "re", "er", "w", "we", "ew"};
	static const char *const bad_modes[] = {"rw", "r+", "x", ""};
	char line[64] = {0};
	int bad = 0;
	FILE *p = popen("echo first", "r");
	if (!p || !fgets(line, sizeof(line), p))
		die_errno("popen");
	/* glibc's pclose is its fclose, and programs rely on it; GCC's malloc attribute on
	 * popen says otherwise, hence the call through a pointer. */
	int (*volatile close_stream)(FILE *) = fclose;
	int st = close_stream(p);
	bad |= verdict(st == 0, "fclose of a popen stream returns the child's status");
	bad |= verdict(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD,
		       "fclose reaped the child");
	p = popen("echo second", "r");
	bad |= verdict(p && fgets(line, sizeof(line), p) && !strcmp(line, "second\n"),
		       "a later popen works");
	if (p)
		bad |= verdict(pclose(p) == 0, "pclose returns the child's status");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		p = popen("exit 3", good[i]);
		printf("mode \"%s\": %s\n", good[i], p ? "taken" : strerror(errno));
		bad |= verdict(p && WEXITSTATUS(pclose(p)) == 3, "a mode glibc takes");
	}
	for (size_t i = 0; i < sizeof(bad_modes) / sizeof(bad_modes[0]); i++) {
		errno = 0;
		p = popen("true", bad_modes[i]);
		bad |= verdict(!p && errno == EINVAL, "a mode glibc refuses (EINVAL)");
	}
	return bad;
}

/* (internal) the receiving end of scm_rights: one descriptor from fd 0. */
static int receive(void)
{
	char byte, cbuf[CMSG_SPACE(sizeof(int))], data[256] = {0};
	struct iovec iov = {&byte, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			   .msg_controllen = sizeof(cbuf)};
	int fd;
	if (recvmsg(0, &m, 0) != 1 || !CMSG_FIRSTHDR(&m))
		die_errno("recvmsg");
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
	pause_ms(50);
	if (recv(fd, data, sizeof(data) - 1, MSG_DONTWAIT) < 0)
		die_errno("recv");
	printf("peer %s data %s\n", peer_str(fd), data);
	return 0;
}

static int child(int argc, char **argv)
{
	for (int i = 2; i < argc; i++)
		printf("peer %s=%s\n", argv[i], peer_str(atoi(argv[i])));
	return 0;
}

int main(int argc, char **argv)
{
	const char *t = getenv("PROXYSHIM_TIMEOUT_MS");
	int timeout_ms = t ? atoi(t) : 3000;
	signal(SIGPIPE, SIG_IGN);
	/* FDEDGE_SELF: what a child runs as this program. Under qemu-user without binfmt_misc
	 * the kernel cannot exec another architecture's program: a wrapper script runs it
	 * under the emulator (make cross-test). */
	const char *as = getenv("FDEDGE_SELF");
	if (as && *as)
		snprintf(self, sizeof(self), "%s", as);
	else if (readlink("/proc/self/exe", self, sizeof(self) - 1) < 0)
		die_errno("readlink");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2;
	}
	const char *s = argv[1];
	int arg = argc > 2 ? atoi(argv[2]) : 0;
	if (!strcmp(s, "stale-fclose") || !strcmp(s, "stale-rawclose"))
		return stale(!strcmp(s, "stale-rawclose"), arg);
	if (!strcmp(s, "closerange-socket") || !strcmp(s, "closerange-file"))
		return closerange(!strcmp(s, "closerange-file"), timeout_ms);
	if (!strcmp(s, "dup2-listener"))
		return dup2_listener();
	if (!strcmp(s, "nofd-nonblocking"))
		return nofd_nonblocking(timeout_ms);
	if (!strncmp(s, "spawn-", 6) && strcmp(s, "spawn-idle"))
		return spawn(s + 6);
	if (!strcmp(s, "spawn-idle"))
		return spawn_idle(arg, timeout_ms);
	if (!strcmp(s, "exec-many"))
		return exec_many(arg);
	if (!strcmp(s, "urgent-header"))
		return urgent_header(timeout_ms);
	if (!strcmp(s, "sa-restart"))
		return sa_restart();
	if (!strcmp(s, "keep-spawn"))
		return keep_spawn(timeout_ms);
	if (!strcmp(s, "fork-select"))
		return fork_select();
	if (!strcmp(s, "poll-once"))
		return poll_once();
	if (!strcmp(s, "nb-then-block"))
		return nb_then_block();
	if (!strcmp(s, "keep-race-after"))
		return keep_race(true);
	if (!strcmp(s, "stale-twin"))
		return stale_twin(timeout_ms);
	if (!strcmp(s, "stale-event"))
		return stale_event(timeout_ms);
	if (!strcmp(s, "et-progress"))
		return et_progress();
	if (!strcmp(s, "keep-race"))
		return keep_race(false);
	if (!strcmp(s, "cancel-in-accept"))
		return gone_acceptor(G_CANCELLED);
	if (!strcmp(s, "phantom-in-accept"))
		return gone_acceptor(G_PHANTOM);
	if (!strcmp(s, "dup2-in-accept"))
		return gone_acceptor(G_DUP2);
	if (!strcmp(s, "jump-out-of-accept"))
		return gone_acceptor(G_JUMPED);
	if (!strcmp(s, "jump-out-and-live"))
		return gone_acceptor(G_JUMPED_LIVES);
	if (!strcmp(s, "accept-in-handler"))
		return handler_accepts();
	if (!strcmp(s, "surplus-in-handover"))
		return handover(H_SURPLUS);
	if (!strcmp(s, "eintr-in-handover"))
		return handover(H_SIGNAL);
	if (!strcmp(s, "decided-in-handover"))
		return handover(H_DECIDED);
	if (!strcmp(s, "vfork-close") || !strcmp(s, "vfork-close-range"))
		return vfork_closes(s[11] == '-');
	if (!strcmp(s, "popen-fclose"))
		return popen_fclose();
	if (!strcmp(s, "poll-keep-meanwhile") || !strcmp(s, "select-keep-meanwhile"))
		return keep_meanwhile(s[0] == 's');
	if (!strcmp(s, "poll-rdnorm") || !strcmp(s, "epoll-rdnorm"))
		return rdnorm(s[0] == 'e');
	if (!strcmp(s, "select-nfds"))
		return select_nfds();
	if (!strcmp(s, "fork-in-destroy"))
		return fork_in_destroy(FORK_AT_SET_CLOSE);
	if (!strcmp(s, "fork-after-unmap"))
		return fork_in_destroy(FORK_AT_UNMAP);
	if (!strcmp(s, "fork-in-kept-close"))
		return fork_in_destroy(FORK_AT_KEPT_CLOSE);
	if (!strcmp(s, "poll-span") || !strcmp(s, "select-span"))
		return span(s[0] == 's');
	if (!strcmp(s, "poll-at-nofile"))
		return poll_at_nofile();
	if (!strcmp(s, "fork-epoll"))
		return fork_epoll();
	if (!strcmp(s, "exec-self"))
		return exec_self();
	if (!strcmp(s, "exec-how") && argc > 2)
		return exec_how(argv[2]);
	if (!strcmp(s, "scm-rights"))
		return scm_rights();
	if (!strcmp(s, "receive"))
		return receive();
	if (!strcmp(s, "child"))
		return child(argc, argv);
	usage(stderr);
	return 2;
}
