/* udpsrv: a UDP server for the integration tests. Binds ADDR:PORT, receives datagrams
 * with the chosen call and prints one line per datagram on stdout (flushed):
 *
 *   from=ADDR:PORT len=N flags=F [dst=ADDR] payload="ESCAPED"
 *
 * from= is the source the call reported ("-" when the call has none: recv/read on an
 * unconnected socket; getpeername() for recv/read on a connected one); len= is the
 * call's return value; flags= is msg_flags (TRUNC, CTRUNC, ...; "-" when none, and always
 * "-" for the calls that have no msg_flags); dst= is the IP_PKTINFO/IPV6_PKTINFO
 * destination address (with -i, for recvmsg/recvmmsg); payload= is the bytes the buffer
 * received (at most -s), escaped as testserver's data= (printable ASCII as is, \r \n \\
 * \" and \xNN). With -k each receive is preceded by a MSG_PEEK of one datagram (read:
 * with recv; recvmmsg: vlen 1): its line "peek from=..." comes before the normal line(s).
 *
 * Other lines: "ready" once bound (after "connected peer=ADDR" with -c); "connected
 * peer=ADDR" (getpeername) after a connect(); "eagain" when a non-blocking call without
 * a readiness loop returns EAGAIN (once per run of them: the server then retries every
 * 10 ms); "idle" when a readiness wait times out (100 ms; once per run of them);
 * "spurious" when a readiness wait reported the socket readable but the call then
 * returned EAGAIN (the application was misled; more than 50 of them: exit 4);
 * "vanished" when a datagram that -k just peeked could not be received (EAGAIN);
 * "count=N" at exit with -q.
 *
 * Echo (-e): each datagram is answered with "from=<reported source> <payload bytes>" to
 * the reported source, by the chosen call (sendmmsg: one call per received batch). With
 * -A ADDR the answers leave through a second socket bound to ADDR and the same port
 * (SO_REUSEADDR and SO_REUSEPORT on both), as SO_REUSEPORT workers and "connected UDP
 * servers" do; with -C it is that socket that connects to the first source.
 *
 * Heartbeat (-B ADDR:PORT): a thread sends "beat N" (N = 1, 2, ...) from the socket to
 * ADDR:PORT every -P milliseconds (default 100) while the server runs, as a daemon
 * reporting to its master.
 *
 * Exit status: 0 after -n datagrams or on SIGTERM; 1 usage or set-up error; 3 overall
 * timeout (-t); 4 too many spurious wake-ups. Run with -h for the options. */
/* Fortified libc calls (__recv_chk, __recvfrom_chk, __read_chk) for -f: they are used
 * when the buffer's size is known at compile time, as for FORT below. */
#if defined(__OPTIMIZE__) && !defined(_FORTIFY_SOURCE)
#define _FORTIFY_SOURCE 2
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HELPER_NAME "udpsrv"
#include "udpkit.h"

#define BATCH_MAX 256
#define CTL_SIZE 256          /* room for a pktinfo control message (and more) */
#define ADDR_STR 160
#define WAIT_SLICE_MS 100
#define SPURIOUS_MAX 50

enum recv_call { R_RECVFROM, R_RECVMSG, R_RECVMMSG, R_RECV, R_READ, R_READV };
enum wait_call { W_NONE, W_POLL, W_PPOLL, W_SELECT, W_PSELECT, W_EPOLL };
enum echo_call { E_NONE, E_SENDTO, E_SENDMSG, E_SENDMMSG, E_SEND, E_WRITE };

static struct {
	const char *laddr;      /* NULL: 127.0.0.1, or ::1 with -6 */
	unsigned port;
	bool v6, freeport;
	enum recv_call rcall;
	unsigned batch;
	bool waitforone;
	bool raw_mmsg;            /* -S: recvmmsg/sendmmsg through syscall(), as libuv does */
	bool shared_data;         /* -D: a readable pipe in the epoll set, same event data */
	long mmsg_timeout_ms;   /* < 0: no timeout argument */
	bool pktinfo;
	const char *connect_to; /* -c */
	bool connect_first;     /* -C */
	bool nonblock;
	enum wait_call wait;
	bool peek;
	size_t bufsize;
	bool trunc_in;          /* -x: MSG_TRUNC in the call's flags */
	enum echo_call echo;
	const char *gofile;
	bool quiet;
	long count;             /* 0: until SIGTERM or -t */
	unsigned timeout_s;
	int rcvbuf;
	bool fortify;           /* -f: recvfrom/recv/read into FORT (the _chk variants) */
	const char *out_addr;   /* -A: answers from a second socket bound to this address */
	const char *beat_to;    /* -B */
	long beat_ms;           /* -P */
} opt = { NULL, 0, false, false, R_RECVFROM, 8, false, false, false, -1, false, NULL, false,
	  false,
	  W_NONE, false, 65536, false, E_NONE, NULL, false, 0, 30, 0, false, NULL, NULL, 100 };

/* -f: a buffer of a size the compiler knows, so that a fortified build calls
 * __recvfrom_chk & co. (the other buffers are malloc'd: plain calls). */
static uint8_t fort[65536];

/* One received datagram. */
struct dgram {
	struct sockaddr_storage from;
	socklen_t fromlen;
	bool have_from;
	ssize_t len;
	int flags;
	bool have_dst;                 /* pktinfo seen */
	struct sockaddr_storage dst;   /* its address (port 0) */
	uint8_t *buf;
	uint8_t ctl[CTL_SIZE];
	size_t ctllen;
};

static int fd = -1, epfd = -1;
static int out_fd = -1;        /* the -A socket, once opened */
static struct dgram dg[BATCH_MAX];
static uint8_t *reply[BATCH_MAX];
static volatile sig_atomic_t received;   /* datagrams so far (for the SIGTERM line) */
static bool connected;

/* Signal handlers: write(2) only. */
static void put_str(int to, const char *s)
{
	ssize_t r = write(to, s, strlen(s));
	(void)r;
}

static void on_alarm(int sig)
{
	(void)sig;
	put_str(2, "udpsrv: overall timeout (-t)\n");
	_exit(3);
}

static void on_term(int sig)
{
	(void)sig;
	if (opt.quiet) {   /* "count=N\n", formatted without stdio */
		char num[24], *p = num + sizeof num;
		unsigned long v = (unsigned long)received;
		*--p = '\0';
		*--p = '\n';
		do
			*--p = (char)('0' + v % 10);
		while (v /= 10);
		put_str(1, "count=");
		put_str(1, p);
	}
	_exit(0);
}

static void usage(FILE *f)
{
	fputs("usage: udpsrv [-6] [-l ADDR] [-p PORT] [-F] [-m CALL] [-b N] [-W] [-M MS] [-i]\n"
	      "              [-c ADDR:PORT] [-C] [-N] [-w WAIT] [-k] [-s BYTES] [-x] [-e CALL]\n"
	      "              [-G FILE] [-q] [-r BYTES] [-f] [-A ADDR] [-B ADDR:PORT] [-P MS]\n"
	      "              [-n COUNT] [-t SECONDS] [-h]\n"
	      "  -6          IPv6: the default address is ::1\n"
	      "  -l ADDR     bind address (default 127.0.0.1, ::1 with -6; '::' dual-stack)\n"
	      "  -p PORT     port (default 0: ephemeral)\n"
	      "  -F          print a free UDP port of ADDR chosen by the kernel and exit\n"
	      "  -m CALL     recvfrom | recvmsg | recvmmsg | recv | read | readv (two iovecs)\n"
	      "              (default recvfrom)\n"
	      "  -b N        recvmmsg: batch of N datagrams (default 8, at most 256)\n"
	      "  -W          recvmmsg: MSG_WAITFORONE\n"
	      "  -S          recvmmsg and sendmmsg through syscall(SYS_...), as libuv does\n"
	      "  -D          -w epoll: also a readable pipe in the set, with the socket's event\n"
	      "              data (its events must still be reported: 'spurious' lines)\n"
	      "  -M MS       recvmmsg: timeout argument\n"
	      "  -i          IP_PKTINFO / IPV6_RECVPKTINFO on; recvmsg/recvmmsg print dst=, and\n"
	      "              sendmsg replies carry the destination back as their source\n"
	      "  -c A:P      connect() to A:P before 'ready'\n"
	      "  -C          connect() to the first datagram's reported source (with -A: the\n"
	      "              second socket)\n"
	      "  -N          O_NONBLOCK\n"
	      "  -w WAIT     readiness: none | poll | ppoll | select | pselect | epoll (default none)\n"
	      "  -k          MSG_PEEK each datagram first (read: with recv), then receive it\n"
	      "  -s BYTES    receive buffer size (default 65536)\n"
	      "  -x          pass MSG_TRUNC in the call's flags (the real length is returned)\n"
	      "  -e CALL     echo with sendto | sendmsg | sendmmsg | send | write (the last two\n"
	      "              on a connected socket)\n"
	      "  -G FILE     before the first receive, wait until FILE exists\n"
	      "  -q          quiet: no per-datagram lines; 'count=N' at exit\n"
	      "  -r BYTES    SO_RCVBUF\n"
	      "  -f          recvfrom/recv/read into a buffer of known size: with the default\n"
	      "              optimised build, the fortified __recvfrom_chk/__recv_chk/__read_chk;\n"
	      "              -w poll/ppoll through __poll_chk/__ppoll_chk\n"
	      "  -A ADDR     echo from a second socket bound to ADDR and the same port\n"
	      "              (SO_REUSEADDR, SO_REUSEPORT on both sockets)\n"
	      "  -B A:P      a thread sends \"beat N\" from the socket to A:P every -P ms\n"
	      "  -P MS       heartbeat period (default 100)\n"
	      "  -n COUNT    exit 0 after COUNT datagrams (default 0: until SIGTERM or -t)\n"
	      "  -t SEC      overall timeout: exit 3 after SEC seconds (default 30)\n"
	      "  -h          this help\n", f);
}

/* The index of s in names (NULL-terminated), or dies. */
static int pick(const char *s, const char *const *names, const char *what)
{
	for (int i = 0; names[i]; i++)
		if (!strcmp(s, names[i]))
			return i;
	die("bad %s: \"%s\"", what, s);
	return -1;
}

static void parse_args(int argc, char **argv)
{
	static const char *const rnames[] = { "recvfrom", "recvmsg", "recvmmsg", "recv", "read",
					      "readv", NULL };
	static const char *const wnames[] = { "none", "poll", "ppoll", "select", "pselect",
					      "epoll", NULL };
	static const char *const enames[] = { "none", "sendto", "sendmsg", "sendmmsg", "send",
					      "write", NULL };
	int c;
	while ((c = getopt(argc, argv, "6l:p:Fm:b:WSDM:ic:CNw:ks:xe:G:qr:fA:B:P:n:t:h")) != -1) {
		switch (c) {
		case '6': opt.v6 = true; break;
		case 'l': opt.laddr = optarg; break;
		case 'p': opt.port = (unsigned)parse_num(optarg, 0, 65535, "port"); break;
		case 'F': opt.freeport = true; break;
		case 'm': opt.rcall = (enum recv_call)pick(optarg, rnames, "receive call"); break;
		case 'b': opt.batch = (unsigned)parse_num(optarg, 1, BATCH_MAX, "batch"); break;
		case 'W': opt.waitforone = true; break;
		case 'S': opt.raw_mmsg = true; break;
		case 'D': opt.shared_data = true; break;
		case 'M': opt.mmsg_timeout_ms = parse_num(optarg, 0, 600000, "recvmmsg timeout"); break;
		case 'i': opt.pktinfo = true; break;
		case 'c': opt.connect_to = optarg; break;
		case 'C': opt.connect_first = true; break;
		case 'N': opt.nonblock = true; break;
		case 'w': opt.wait = (enum wait_call)pick(optarg, wnames, "wait call"); break;
		case 'k': opt.peek = true; break;
		case 's': opt.bufsize = (size_t)parse_num(optarg, 0, 1 << 20, "buffer size"); break;
		case 'x': opt.trunc_in = true; break;
		case 'e': opt.echo = (enum echo_call)pick(optarg, enames, "echo call"); break;
		case 'G': opt.gofile = optarg; break;
		case 'q': opt.quiet = true; break;
		case 'r': opt.rcvbuf = (int)parse_num(optarg, 1, 1 << 30, "SO_RCVBUF"); break;
		case 'f': opt.fortify = true; break;
		case 'A': opt.out_addr = optarg; break;
		case 'B': opt.beat_to = optarg; break;
		case 'P': opt.beat_ms = parse_num(optarg, 1, 60000, "heartbeat period"); break;
		case 'n': opt.count = parse_num(optarg, 0, 1L << 40, "count"); break;
		case 't': opt.timeout_s = (unsigned)parse_num(optarg, 1, 86400, "timeout"); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(1);
	}
	if (!opt.laddr)
		opt.laddr = opt.v6 ? "::1" : "127.0.0.1";
	if (opt.rcall != R_RECVMMSG)
		opt.batch = 1;
	if (opt.fortify && opt.bufsize > sizeof fort)
		die("-f takes a buffer size of at most %zu", sizeof fort);
}

/* ---- output ---- */

static void line(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void fmt_flags(int flags, char *buf, size_t n)
{
	static const struct { int bit; const char *name; } names[] = {
		{ MSG_TRUNC, "TRUNC" }, { MSG_CTRUNC, "CTRUNC" }, { MSG_EOR, "EOR" },
		{ MSG_OOB, "OOB" }, { MSG_ERRQUEUE, "ERRQUEUE" }, { MSG_CONFIRM, "CONFIRM" },
	};
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (flags & names[i].bit) {
			o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? "," : "", names[i].name);
			flags &= ~names[i].bit;
		}
	}
	if (flags)
		o += (size_t)snprintf(buf + o, n - o, "%s0x%x", o ? "," : "", (unsigned)flags);
	if (!o)
		snprintf(buf, n, "-");
}

static void fmt_from(const struct dgram *d, char *buf, size_t n)
{
	if (d->have_from)
		na_format(&d->from, d->fromlen, buf, n);
	else
		snprintf(buf, n, "-");
}

static void print_dgram(const char *tag, const struct dgram *d)
{
	char from[ADDR_STR], flags[96], dst[ADDR_STR] = "";
	fmt_from(d, from, sizeof from);
	fmt_flags(d->flags, flags, sizeof flags);
	if (d->have_dst) {
		strcpy(dst, " dst=");
		if (d->dst.ss_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)&d->dst)->sin_addr,
				  dst + 5, sizeof dst - 5);
		else
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&d->dst)->sin6_addr,
				  dst + 5, sizeof dst - 5);
	} else if (opt.pktinfo && (opt.rcall == R_RECVMSG || opt.rcall == R_RECVMMSG)) {
		strcpy(dst, " dst=none");
	}
	size_t shown = (size_t)d->len < opt.bufsize ? (size_t)d->len : opt.bufsize;
	printf("%sfrom=%s len=%zd flags=%s%s payload=", tag, from, d->len, flags, dst);
	put_escaped(stdout, d->buf, shown);
	putchar('\n');
	fflush(stdout);
}

/* ---- set-up ---- */

static void set_pktinfo(int s, int family)
{
	int one = 1;
	int r = family == AF_INET ? setsockopt(s, IPPROTO_IP, IP_PKTINFO, &one, sizeof one)
				  : setsockopt(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
	if (r < 0)
		die_errno("pktinfo");
}

/* Connects socket s; the main socket's recv/read then report its peer. */
static void do_connect(int s, const struct sockaddr_storage *to, socklen_t len)
{
	if (connect(s, (const struct sockaddr *)to, len) < 0) {
		char a[ADDR_STR];
		na_format(to, len, a, sizeof a);
		die("connect %s: %s", a, strerror(errno));
	}
	connected |= s == fd;
	char peer[ADDR_STR];
	na_format_name(s, 1, peer, sizeof peer);
	line("connected peer=%s", peer);
}

static void reuse(int s)
{
	int one = 1;
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one))
		die_errno("SO_REUSEADDR/SO_REUSEPORT");
}

/* Where answers leave: the socket, or with -A the second one, opened at its first use
 * (after the first datagram: bound earlier to a more specific address, it would take
 * the datagrams meant for the first socket). */
static int out_socket(void)
{
	if (!opt.out_addr)
		return fd;
	if (out_fd >= 0)
		return out_fd;
	char a[ADDR_STR];
	na_format_name(fd, 0, a, sizeof a);
	struct sockaddr_storage ss;
	socklen_t len = na_parse(opt.out_addr, (unsigned)atoi(strrchr(a, ':') + 1), &ss);
	if (!len)
		die("bad -A address \"%s\"", opt.out_addr);
	int s = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die_errno("socket");
	reuse(s);
	if (bind(s, (struct sockaddr *)&ss, len) < 0)
		die("bind -A %s: %s", opt.out_addr, strerror(errno));
	return out_fd = s;
}

static void *beat(void *arg)
{
	const struct sockaddr_storage *to = arg;
	char msg[32];
	for (unsigned n = 1;; n++) {
		int k = snprintf(msg, sizeof msg, "beat %u", n);
		sendto(fd, msg, (size_t)k, 0, (const struct sockaddr *)to,
		       to->ss_family == AF_INET ? sizeof(struct sockaddr_in)
						: sizeof(struct sockaddr_in6));
		sleep_ms(opt.beat_ms);
	}
	return NULL;
}

static void start_beat(void)
{
	static struct sockaddr_storage to;
	pthread_t t;
	if (!na_parse_hostport(opt.beat_to, false, &to))
		die("bad -B address \"%s\" (ADDR:PORT or [ADDR]:PORT)", opt.beat_to);
	if (pthread_create(&t, NULL, beat, &to))
		die("pthread_create failed");
}

static void open_socket(void)
{
	struct sockaddr_storage ss;
	socklen_t len = na_parse(opt.laddr, opt.port, &ss);
	if (!len)
		die("bad address \"%s\"", opt.laddr);
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die_errno("socket");
	if (opt.rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt.rcvbuf, sizeof opt.rcvbuf))
		die_errno("SO_RCVBUF");
	if (opt.out_addr)
		reuse(fd);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		die("bind %s port %u: %s", opt.laddr, opt.port, strerror(errno));
	if (opt.freeport) {
		char a[ADDR_STR];
		na_format_name(fd, 0, a, sizeof a);
		printf("%s\n", strrchr(a, ':') + 1);
		exit(0);
	}
	if (opt.pktinfo)
		set_pktinfo(fd, ss.ss_family);
	if (opt.nonblock && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		die_errno("O_NONBLOCK");
	if (opt.connect_to) {
		struct sockaddr_storage to;
		socklen_t tl = na_parse_hostport(opt.connect_to, false, &to);
		if (!tl)
			die("bad -c address \"%s\" (ADDR:PORT or [ADDR]:PORT)", opt.connect_to);
		do_connect(fd, &to, tl);
	}
	if (opt.wait == W_EPOLL) {
		epfd = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
		if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			die_errno("epoll");
		int p[2];
		if (opt.shared_data && (pipe(p) < 0 || write(p[1], "x", 1) != 1 ||
					epoll_ctl(epfd, EPOLL_CTL_ADD, p[0], &ev) < 0))
			die_errno("epoll pipe");
	}
	for (unsigned i = 0; i < BATCH_MAX; i++) {
		dg[i].buf = malloc(opt.bufsize ? opt.bufsize : 1);
		reply[i] = malloc(opt.bufsize + ADDR_STR + 8);
		if (!dg[i].buf || !reply[i])
			die("out of memory");
	}
}

/* ---- receiving ---- */

/* Reads the pktinfo control message of a received datagram, if any. */
static void take_pktinfo(struct dgram *d, struct msghdr *m)
{
	d->have_dst = false;
	d->ctllen = m->msg_controllen;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof pi);
			struct sockaddr_in *s = (struct sockaddr_in *)&d->dst;
			memset(&d->dst, 0, sizeof d->dst);
			s->sin_family = AF_INET;
			s->sin_addr = pi.ipi_addr;
			d->have_dst = true;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof pi);
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&d->dst;
			memset(&d->dst, 0, sizeof d->dst);
			s->sin6_family = AF_INET6;
			s->sin6_addr = pi.ipi6_addr;
			d->have_dst = true;
		}
	}
}

static void prepare_msg(struct dgram *d, struct msghdr *m, struct iovec *iov)
{
	memset(m, 0, sizeof *m);
	iov->iov_base = d->buf;
	iov->iov_len = opt.bufsize;
	m->msg_name = &d->from;
	m->msg_namelen = sizeof d->from;
	m->msg_iov = iov;
	m->msg_iovlen = 1;
	if (opt.pktinfo) {
		m->msg_control = d->ctl;
		m->msg_controllen = sizeof d->ctl;
	}
}

/* For recv/read: the peer of a connected socket, else no source. */
static void source_from_peer(struct dgram *d)
{
	d->have_from = false;
	if (connected) {
		d->fromlen = sizeof d->from;
		d->have_from = getpeername(fd, (struct sockaddr *)&d->from, &d->fromlen) == 0;
	}
}

/* After a single-datagram call: with -f, moves what FORT received to the datagram's
 * buffer. Returns the datagram count (1) or -1. */
static int from_fort(struct dgram *d)
{
	if (d->len < 0)
		return -1;
	if (opt.fortify)
		memcpy(d->buf, fort, (size_t)d->len < opt.bufsize ? (size_t)d->len : opt.bufsize);
	return 1;
}

/* Receives up to max datagrams into dg[] with the configured call plus extra flags.
 * Returns how many, or -1 with errno. */
static int receive(int extra, unsigned max)
{
	int fl = extra | (opt.trunc_in ? MSG_TRUNC : 0);
	struct dgram *d = &dg[0];
	memset(&d->from, 0, sizeof d->from);
	d->fromlen = sizeof d->from;
	d->flags = 0;
	d->have_dst = false;
	d->have_from = true;
	enum recv_call call = opt.rcall;
	if ((call == R_READ || call == R_READV) && (extra & MSG_PEEK))
		call = R_RECV;       /* read() cannot peek */
	switch (call) {
	case R_RECVFROM:
		d->len = opt.fortify ? recvfrom(fd, fort, opt.bufsize, fl,
						(struct sockaddr *)&d->from, &d->fromlen)
				     : recvfrom(fd, d->buf, opt.bufsize, fl,
						(struct sockaddr *)&d->from, &d->fromlen);
		return from_fort(d);
	case R_RECV:
		d->len = opt.fortify ? recv(fd, fort, opt.bufsize, fl)
				     : recv(fd, d->buf, opt.bufsize, fl);
		source_from_peer(d);
		return from_fort(d);
	case R_READ:
		d->len = opt.fortify ? read(fd, fort, opt.bufsize) : read(fd, d->buf, opt.bufsize);
		source_from_peer(d);
		return from_fort(d);
	case R_READV: {          /* the buffer in two pieces: the payload must span them */
		size_t half = opt.bufsize / 2;
		struct iovec iov[2] = { { d->buf, half }, { d->buf + half, opt.bufsize - half } };
		d->len = readv(fd, iov, 2);
		source_from_peer(d);
		return d->len < 0 ? -1 : 1;
	}
	case R_RECVMSG: {
		struct msghdr m;
		struct iovec iov;
		prepare_msg(d, &m, &iov);
		d->len = recvmsg(fd, &m, fl);
		if (d->len < 0)
			return -1;
		d->fromlen = m.msg_namelen;
		d->flags = m.msg_flags;
		take_pktinfo(d, &m);
		return 1;
	}
	case R_RECVMMSG: {
		struct mmsghdr mm[BATCH_MAX];
		struct iovec iov[BATCH_MAX];
		for (unsigned i = 0; i < max; i++) {
			memset(&dg[i].from, 0, sizeof dg[i].from);
			prepare_msg(&dg[i], &mm[i].msg_hdr, &iov[i]);
			mm[i].msg_len = 0;
		}
		struct timespec ts = { opt.mmsg_timeout_ms / 1000,
				       (opt.mmsg_timeout_ms % 1000) * 1000000L };
		int rf = fl | (opt.waitforone ? MSG_WAITFORONE : 0);
		struct timespec *tp = opt.mmsg_timeout_ms >= 0 ? &ts : NULL;
		int n = opt.raw_mmsg ? (int)syscall(SYS_recvmmsg, fd, mm, max, rf, tp)
				     : recvmmsg(fd, mm, max, rf, tp);
		for (int i = 0; i < n; i++) {
			dg[i].len = (ssize_t)mm[i].msg_len;
			dg[i].fromlen = mm[i].msg_hdr.msg_namelen;
			dg[i].have_from = true;
			dg[i].flags = mm[i].msg_hdr.msg_flags;
			take_pktinfo(&dg[i], &mm[i].msg_hdr);
		}
		return n;
	}
	}
	return -1;
}

/* Waits up to WAIT_SLICE_MS for the socket to be readable: 1 readable, 0 timeout. */
/* glibc's fortified poll entries, called by name for -f (a _FORTIFY_SOURCE build calls
 * them when it knows the array's size; which one a build picks varies). */
extern int __poll_chk(struct pollfd *, nfds_t, int, size_t);
extern int __ppoll_chk(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *,
		       size_t);

static int wait_readable(void)
{
	const struct timespec ts = { 0, WAIT_SLICE_MS * 1000000L };
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	fd_set rs;
	struct timeval tv = { 0, WAIT_SLICE_MS * 1000L };
	struct epoll_event ev;
	int r = -1;
	FD_ZERO(&rs);
	FD_SET(fd, &rs);
	switch (opt.wait) {
	case W_POLL:
		r = opt.fortify ? __poll_chk(&pfd, 1, WAIT_SLICE_MS, sizeof pfd)
				: poll(&pfd, 1, WAIT_SLICE_MS);
		break;
	case W_PPOLL:
		r = opt.fortify ? __ppoll_chk(&pfd, 1, &ts, NULL, sizeof pfd) : ppoll(&pfd, 1, &ts, NULL);
		break;
	case W_SELECT: r = select(fd + 1, &rs, NULL, NULL, &tv); break;
	case W_PSELECT: r = pselect(fd + 1, &rs, NULL, NULL, &ts, NULL); break;
	case W_EPOLL: r = epoll_wait(epfd, &ev, 1, WAIT_SLICE_MS); break;
	case W_NONE: return 1;
	}
	if (r < 0 && errno != EINTR)
		die_errno("wait");
	return r > 0;
}

/* ---- echo ---- */

/* Builds the reply to d in reply[i]; returns its length. */
static size_t make_reply(unsigned i, const struct dgram *d)
{
	char from[ADDR_STR];
	fmt_from(d, from, sizeof from);
	int h = snprintf((char *)reply[i], ADDR_STR + 8, "from=%s ", from);
	size_t shown = (size_t)d->len < opt.bufsize ? (size_t)d->len : opt.bufsize;
	memcpy(reply[i] + h, d->buf, shown);
	return (size_t)h + shown;
}

/* The pktinfo control message that makes the reply leave from d's destination. */
static size_t reply_ctl(const struct dgram *d, uint8_t *ctl, size_t cap, struct msghdr *m)
{
	if (!opt.pktinfo || !d->have_dst)
		return 0;
	memset(ctl, 0, cap);
	m->msg_control = ctl;
	m->msg_controllen = cap;
	struct cmsghdr *c = CMSG_FIRSTHDR(m);
	if (d->dst.ss_family == AF_INET) {
		struct in_pktinfo pi = { 0 };
		pi.ipi_spec_dst = ((const struct sockaddr_in *)&d->dst)->sin_addr;
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof pi);
		memcpy(CMSG_DATA(c), &pi, sizeof pi);
		m->msg_controllen = CMSG_SPACE(sizeof pi);
	} else {
		struct in6_pktinfo pi = { 0 };
		pi.ipi6_addr = ((const struct sockaddr_in6 *)&d->dst)->sin6_addr;
		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof pi);
		memcpy(CMSG_DATA(c), &pi, sizeof pi);
		m->msg_controllen = CMSG_SPACE(sizeof pi);
	}
	return m->msg_controllen;
}

static void send_failed(const char *call)
{
	static unsigned reported;
	if (reported++ < 20)
		fprintf(stderr, "udpsrv: %s: %s\n", call, strerror(errno));
}

/* Answers the n datagrams in dg[]. */
static void echo(int n)
{
	struct mmsghdr mm[BATCH_MAX];
	struct iovec iov[BATCH_MAX];
	static uint8_t ctl[BATCH_MAX][CTL_SIZE];
	int k = 0;
	for (int i = 0; i < n; i++) {
		struct dgram *d = &dg[i];
		if (!d->have_from && opt.echo != E_SEND && opt.echo != E_WRITE) {
			fprintf(stderr, "udpsrv: no source to answer (recv/read, not connected)\n");
			continue;
		}
		size_t rl = make_reply((unsigned)i, d);
		const struct sockaddr *to = (const struct sockaddr *)&d->from;
		switch (opt.echo) {
		case E_SENDTO:
			if (sendto(out_socket(), reply[i], rl, 0, to, d->fromlen) < 0)
				send_failed("sendto");
			break;
		case E_SEND:
			if (send(out_socket(), reply[i], rl, 0) < 0)
				send_failed("send");
			break;
		case E_WRITE:
			if (write(out_socket(), reply[i], rl) < 0)
				send_failed("write");
			break;
		case E_SENDMSG:
		case E_SENDMMSG: {
			struct msghdr *m = &mm[k].msg_hdr;
			memset(m, 0, sizeof *m);
			iov[k].iov_base = reply[i];
			iov[k].iov_len = rl;
			m->msg_name = &d->from;
			m->msg_namelen = d->fromlen;
			m->msg_iov = &iov[k];
			m->msg_iovlen = 1;
			reply_ctl(d, ctl[k], sizeof ctl[k], m);
			if (opt.echo == E_SENDMSG) {
				if (sendmsg(out_socket(), m, 0) < 0)
					send_failed("sendmsg");
			} else {
				k++;
			}
			break;
		}
		case E_NONE:
			break;
		}
	}
	for (int off = 0; off < k;) {   /* sendmmsg: the whole batch, resumed if partial */
		int s = out_socket();
		int r = opt.raw_mmsg ? (int)syscall(SYS_sendmmsg, s, mm + off, k - off, 0)
				     : sendmmsg(s, mm + off, (unsigned)(k - off), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			send_failed("sendmmsg");
			off++;          /* skip the message that failed */
			continue;
		}
		off += r;
	}
}

/* ---- main loop ---- */

static void wait_gofile(void)
{
	struct stat st;
	while (stat(opt.gofile, &st) < 0)
		sleep_ms(10);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	alarm(opt.timeout_s);
	open_socket();
	line("ready");
	if (opt.beat_to)
		start_beat();
	if (opt.gofile)
		wait_gofile();

	bool idle_shown = false, eagain_shown = false, sent_connect = connected;
	unsigned spurious = 0;
	long total = 0;
	for (;;) {
		bool waited = opt.wait != W_NONE;
		if (waited && !wait_readable()) {
			if (!idle_shown)
				line("idle");
			idle_shown = true;
			continue;
		}
		int n = 0;
		bool peeked = false;
		if (opt.peek) {
			n = receive(MSG_PEEK, 1);
			peeked = n > 0;
			if (peeked && !opt.quiet)
				print_dgram("peek ", &dg[0]);
		}
		if (n >= 0)
			n = receive(0, opt.batch);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				die_errno("receive");
			if (peeked) {         /* the datagram just peeked is gone */
				line("vanished");
				continue;
			}
			if (waited) {         /* readiness was reported: the app was misled */
				line("spurious");
				if (++spurious > SPURIOUS_MAX) {
					fprintf(stderr, "udpsrv: more than %d spurious wake-ups\n",
						SPURIOUS_MAX);
					return 4;
				}
			} else {
				if (!eagain_shown)
					line("eagain");
				eagain_shown = true;
				sleep_ms(10);
			}
			continue;
		}
		idle_shown = eagain_shown = false;
		for (int i = 0; i < n && !opt.quiet; i++)
			print_dgram("", &dg[i]);
		if (opt.connect_first && !sent_connect && dg[0].have_from) {
			do_connect(out_socket(), &dg[0].from, dg[0].fromlen);
			sent_connect = true;
		}
		if (opt.echo != E_NONE)
			echo(n);
		total += n;
		received = (sig_atomic_t)total;
		if (opt.count && total >= opt.count)
			break;
	}
	if (opt.quiet)
		line("count=%ld", total);
	return 0;
}
