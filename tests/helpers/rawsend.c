/* rawsend: connects from a chosen source address and sends stdin's bytes as they are,
 * optionally in chunks with delays, each chunk by a chosen call (-m), then optionally
 * prints the reply. Run with -h. Also how the connection is made and shared: a
 * non-blocking or signal-interrupted connect, connect() repeated, fork, exec, several
 * connections at once.
 * Exit status: 0 connected and sent (and, with -r, the reply ended by EOF or reset);
 * 1 usage; 2 could not connect; 3 sending failed; 4 no end of reply within -t. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELPER_NAME "rawsend"
#include "common.h"

#define PAYLOAD_MAX (1 << 20)
#define CONNS_MAX 200
#define WAYS_MAX 16

static struct {
	const char *src;
	size_t chunk;        /* 0: all at once */
	long delay_ms, wait_ms, timeout_ms, alarm_ms;
	bool reply, keep_open, verbose, nonblock, again, filler, fork, cork, exec_now;
	long conns, abandon;
	const char *exec, *abandon_exec;
	const char *ways[WAYS_MAX];
	int nways;
} opt = { .timeout_ms = 5000, .conns = 1 };

static void usage(FILE *f)
{
	fputs("usage: rawsend [-s SRCADDR] [-c CHUNK] [-d DELAY_MS] [-w WAIT_MS] [-r] [-k]\n"
	      "               [-t TIMEOUT_MS] [-v] [-h] HOST PORT\n"
	      "Sends stdin (binary, at most 1 MiB) to HOST:PORT (IPv4 or IPv6).\n"
	      "  -s SRCADDR  bind to SRCADDR (port 0) before connecting\n"
	      "  -c CHUNK    write CHUNK bytes at a time (default: all at once)\n"
	      "  -d MS       sleep MS between chunks\n"
	      "  -w MS       sleep MS after connecting, before the first byte\n"
	      "  -r          after sending, print the reply until EOF (or -t)\n"
	      "  -k          keep the write side open (default: shutdown(SHUT_WR) after sending)\n"
	      "  -t MS       reply timeout, also bounds the connect (default 5000)\n"
	      "  -m WAY,...  the call that sends each chunk (the last one repeats): send\n"
	      "              (default) write writev sendto sendmsg sendmmsg sendfile splice,\n"
	      "              or past any interposer: dprintf, stdio (fdopen + fwrite + fflush)\n"
	      "  -N          non-blocking connect (EINPROGRESS), poll until writable\n"
	      "  -A MS       SIGALRM (no SA_RESTART) after MS interrupts the blocking connect;\n"
	      "              on EINTR, poll until it completes\n"
	      "  -R          then connect() again, non-blocking, until 0 or EISCONN, and once\n"
	      "              more; each result on stderr ('rawsend: again=EALREADY')\n"
	      "  -f          first a filler connection, kept open (fills a backlog-0 queue, so\n"
	      "              that the real one stays in progress)\n"
	      "  -C          TCP_CORK on once connected (queued bytes wait for the FIN)\n"
	      "  -F          fork once connected: the child sends the first chunk and exits,\n"
	      "              the parent waits ('rawsend: child=STATUS'), then sends the rest\n"
	      "  -M COUNT    COUNT connections, all connected before any byte; each gets\n"
	      "              the payload in turn\n"
	      "  -L COUNT    first COUNT connections (made as the others) left unused: fork,\n"
	      "              the child exits at once, the parent reaps it and closes the\n"
	      "              socket; 'rawsend: abandoned=COUNT'\n"
	      "  -l CMD      with -L: the child execs sh -c CMD instead, not waited for\n"
	      "  -x CMD      once connected: the socket on fd 9 (inherited), exec sh -c CMD\n"
	      "  -X CMD      the same right after connect() returns (still in progress with -N)\n"
	      "  -v          report on stderr: 'rawsend: local=ADDR' once connected, 'first=MS'\n"
	      "              (first reply byte, ms after connect), 'end=eof|reset bytes=N'\n"
	      "  -h          this help\n", f);
}

static struct timespec connected_at;

static size_t read_stdin(char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		if (n == cap) {
			fputs("rawsend: payload larger than 1 MiB\n", stderr);
			exit(1);
		}
		ssize_t r = read(0, buf + n, cap - n);
		if (r == 0)
			return n;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perror("rawsend: stdin");
			exit(1);
		}
		n += (size_t)r;
	}
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* Waits until fd's connect finished (writable), within the timeout. poll's revents
 * only: getsockopt(SO_ERROR) is itself a call the client shim acts on. */
static void await_connect(int fd, const char *host, unsigned port)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int pr;
	while ((pr = poll(&pfd, 1, (int)opt.timeout_ms)) < 0 && errno == EINTR)
		;
	if (pr <= 0 || (pfd.revents & (POLLERR | POLLHUP))) {
		fprintf(stderr, "rawsend: connect %s %u: %s\n", host, port,
			pr <= 0 ? "not done within -t" : "failed");
		exit(2);
	}
}

static void set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* -R: connect() again until the kernel reports the connection made, then once more. */
static void connect_again(int fd, const struct sockaddr *dst, socklen_t dlen)
{
	set_nonblock(fd, true);
	for (int i = 0, extra = 0; i < 100 && extra < 2; i++) {
		int r = connect(fd, dst, dlen), e = errno;
		fprintf(stderr, "rawsend: again=%s\n", r == 0 ? "0" : e == EALREADY ? "EALREADY" :
			e == EISCONN ? "EISCONN" : e == EINPROGRESS ? "EINPROGRESS" : strerror(e));
		if (r == 0 || e == EISCONN)
			extra++;
		else if (e == EALREADY || e == EINPROGRESS)
			await_connect(fd, "", 0);
		else
			exit(2);
	}
	set_nonblock(fd, false);
}

static int connect_to(const char *host, unsigned port, bool plain)
{
	struct sockaddr_storage dst, src;
	socklen_t dlen = na_parse(host, port, &dst);
	if (!dlen) {
		fprintf(stderr, "rawsend: bad host address \"%s\"\n", host);
		exit(1);
	}
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("rawsend: socket");
		exit(2);
	}
	if (opt.src) {
		socklen_t slen = na_parse(opt.src, 0, &src);
		if (!slen || src.ss_family != dst.ss_family) {
			fprintf(stderr, "rawsend: bad source address \"%s\" for %s\n", opt.src, host);
			exit(1);
		}
		if (bind(fd, (struct sockaddr *)&src, slen) < 0) {
			fprintf(stderr, "rawsend: bind %s: %s\n", opt.src, strerror(errno));
			exit(2);
		}
	}
	struct timeval tv = { opt.timeout_ms / 1000, (opt.timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (!plain && opt.nonblock)
		set_nonblock(fd, true);
	if (!plain && opt.alarm_ms) {
		struct sigaction sa = { .sa_handler = on_alarm };   /* no SA_RESTART */
		sigaction(SIGALRM, &sa, NULL);
		struct itimerval it = { .it_value = { opt.alarm_ms / 1000, (opt.alarm_ms % 1000) * 1000 } };
		setitimer(ITIMER_REAL, &it, NULL);
	}
	int r = connect(fd, (struct sockaddr *)&dst, dlen);
	int e = errno;
	if (r < 0 && !(e == EINPROGRESS && !plain && opt.nonblock) &&
	    !(e == EINTR && !plain && opt.alarm_ms)) {
		fprintf(stderr, "rawsend: connect %s %u: %s\n", host, port, strerror(e));
		exit(2);
	}
	if (r < 0) {
		if (opt.verbose)
			fprintf(stderr, "rawsend: connect=%s\n", e == EINTR ? "EINTR" : "EINPROGRESS");
		if (!opt.again && !(opt.exec_now && !plain))   /* -R, -X: not waiting yet */
			await_connect(fd, host, port);
	}
	if (!plain && opt.again)
		connect_again(fd, (struct sockaddr *)&dst, dlen);
	if (!plain && opt.nonblock)
		set_nonblock(fd, false);
	clock_gettime(CLOCK_MONOTONIC, &connected_at);
	int one = 1;   /* each chunk its own segment */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (!plain && opt.cork)
		setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
	return fd;
}

static FILE *streams[CONNS_MAX + 8];

/* One chunk by one way; the count written or -1 (errno set). */
static ssize_t send_way(int fd, const char *way, const char *p, size_t len)
{
	struct iovec iov = { (void *)p, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (!strcmp(way, "send"))
		return send(fd, p, len, MSG_NOSIGNAL);
	if (!strcmp(way, "write"))
		return write(fd, p, len);
	if (!strcmp(way, "writev"))
		return writev(fd, &iov, 1);
	if (!strcmp(way, "sendto"))
		return sendto(fd, p, len, MSG_NOSIGNAL, NULL, 0);
	if (!strcmp(way, "sendmsg"))
		return sendmsg(fd, &mh, MSG_NOSIGNAL);
	if (!strcmp(way, "sendmmsg")) {
		struct mmsghdr mm = { .msg_hdr = mh };
		return sendmmsg(fd, &mm, 1, MSG_NOSIGNAL) == 1 ? (ssize_t)mm.msg_len : -1;
	}
	if (!strcmp(way, "sendfile") || !strcmp(way, "splice")) {
		int pipefd[2] = { -1, -1 }, src = -1;
		ssize_t r = -1;
		if (!strcmp(way, "sendfile")) {
			src = memfd_create("rawsend", MFD_CLOEXEC);
			off_t off = 0;
			if (src >= 0 && write(src, p, len) == (ssize_t)len)
				r = sendfile(fd, src, &off, len);
		} else if (pipe2(pipefd, O_CLOEXEC) == 0 && write(pipefd[1], p, len) == (ssize_t)len) {
			r = splice(pipefd[0], NULL, fd, NULL, len, 0);
		}
		int e = errno;
		close(src), close(pipefd[0]), close(pipefd[1]);
		errno = e;
		return r;
	}
	if (!strcmp(way, "dprintf"))
		return dprintf(fd, "%.*s", (int)len, p);
	if (!strcmp(way, "stdio")) {
		if (!streams[fd])
			streams[fd] = fdopen(fd, "w");   /* never closed: that would close fd */
		return streams[fd] && fwrite(p, 1, len, streams[fd]) == len &&
		       fflush(streams[fd]) == 0 ? (ssize_t)len : -1;
	}
	fprintf(stderr, "rawsend: bad way \"%s\"\n", way);
	exit(1);
}

/* Chunks first..last-1 of the payload to fd. */
static int send_chunks(int fd, const char *p, size_t n, size_t first, size_t last)
{
	size_t chunk = opt.chunk ? opt.chunk : n;
	size_t i = first, off = first * chunk;
	for (; off < n && i < last; i++) {
		if (off && opt.delay_ms)
			sleep_ms(opt.delay_ms);
		const char *way = opt.nways ? opt.ways[i < (size_t)opt.nways ? i : (size_t)opt.nways - 1]
					    : "send";
		size_t len = n - off < chunk ? n - off : chunk;
		for (size_t done = 0; done < len;) {
			ssize_t w = send_way(fd, way, p + off + done, len - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				fprintf(stderr, "rawsend: send failed after %zu of %zu bytes: %s\n",
					off + done, n, strerror(errno));
				return 3;
			}
			done += (size_t)w;
		}
		off += len;
	}
	return 0;
}

/* Copies the reply to stdout until EOF or reset. Returns false on timeout. */
static bool copy_reply(int fd)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	size_t total = 0;
	const char *end = NULL;
	while (!end) {
		long left = opt.timeout_ms - ms_since(&start);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			fprintf(stderr, "rawsend: no end of reply within %ld ms (%zu bytes)\n",
				opt.timeout_ms, total);
			return false;
		}
		char buf[4096];
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r > 0) {
			if (total == 0 && opt.verbose)
				fprintf(stderr, "rawsend: first=%ld\n", ms_since(&connected_at));
			fwrite(buf, 1, (size_t)r, stdout);
			fflush(stdout);
			total += (size_t)r;
		} else if (r == 0) {
			end = "eof";
		} else if (errno == ECONNRESET) {
			end = "reset";
		} else if (errno != EINTR) {
			fprintf(stderr, "rawsend: recv: %s\n", strerror(errno));
			end = "error";
		}
	}
	if (opt.verbose)
		fprintf(stderr, "rawsend: end=%s bytes=%zu\n", end, total);
	return true;
}

int main(int argc, char **argv)
{
	int c;
	char *way;
	while ((c = getopt(argc, argv, "s:c:d:w:rkt:vm:NA:RfCFL:l:M:x:X:h")) != -1) {
		switch (c) {
		case 's': opt.src = optarg; break;
		case 'c': opt.chunk = (size_t)parse_num(optarg, 1, PAYLOAD_MAX, "chunk size"); break;
		case 'd': opt.delay_ms = parse_num(optarg, 0, 600000, "delay"); break;
		case 'w': opt.wait_ms = parse_num(optarg, 0, 600000, "wait"); break;
		case 'r': opt.reply = true; break;
		case 'k': opt.keep_open = true; break;
		case 't': opt.timeout_ms = parse_num(optarg, 1, 600000, "timeout"); break;
		case 'v': opt.verbose = true; break;
		case 'm':
			for (way = strtok(optarg, ","); way && opt.nways < WAYS_MAX; way = strtok(NULL, ","))
				opt.ways[opt.nways++] = way;
			break;
		case 'N': opt.nonblock = true; break;
		case 'A': opt.alarm_ms = parse_num(optarg, 1, 600000, "alarm"); break;
		case 'R': opt.again = true; break;
		case 'f': opt.filler = true; break;
		case 'C': opt.cork = true; break;
		case 'F': opt.fork = true; break;
		case 'l': opt.abandon_exec = optarg; break;
		case 'L': opt.abandon = parse_num(optarg, 1, 100000, "abandon count"); break;
		case 'M': opt.conns = parse_num(optarg, 1, CONNS_MAX, "connection count"); break;
		case 'x': opt.exec = optarg; break;
		case 'X': opt.exec = optarg, opt.exec_now = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 1;
	}
	unsigned port = (unsigned)parse_num(argv[optind + 1], 1, 65535, "port");

	static char payload[PAYLOAD_MAX];
	size_t n = read_stdin(payload, sizeof payload);
	if (opt.filler)
		connect_to(argv[optind], port, true);
	for (long i = 0; i < opt.abandon; i++) {
		int a = connect_to(argv[optind], port, false), ws;
		pid_t pid = fork();
		if (pid < 0) {
			perror("rawsend: fork");
			return 2;
		}
		if (!pid && opt.abandon_exec)
			execl("/bin/sh", "sh", "-c", opt.abandon_exec, (char *)NULL);
		if (!pid)
			_exit(0);
		if (!opt.abandon_exec)
			waitpid(pid, &ws, 0);
		close(a);
	}
	if (opt.abandon)
		fprintf(stderr, "rawsend: abandoned=%ld\n", opt.abandon);
	int fds[CONNS_MAX];
	for (long i = 0; i < opt.conns; i++)
		fds[i] = connect_to(argv[optind], port, false);
	int fd = fds[0], st = 0;
	if (opt.verbose) {
		char local[128];
		na_format_name(fd, 0, local, sizeof local);
		fprintf(stderr, "rawsend: local=%s\n", local);
	}
	if (opt.exec) {
		if (dup2(fd, 9) < 0) {
			perror("rawsend: dup2");
			return 2;
		}
		execl("/bin/sh", "sh", "-c", opt.exec, (char *)NULL);
		perror("rawsend: exec");
		return 2;
	}
	if (opt.wait_ms)
		sleep_ms(opt.wait_ms);
	size_t first = 0;
	if (opt.fork) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("rawsend: fork");
			return 2;
		}
		for (long i = 0; !pid && i < opt.conns; i++)
			st |= send_chunks(fds[i], payload, n, 0, 1);
		if (!pid)
			_exit(st);
		int ws = 0;
		waitpid(pid, &ws, 0);
		fprintf(stderr, "rawsend: child=%d\n", WIFEXITED(ws) ? WEXITSTATUS(ws) : 128);
		first = 1;
	}
	for (long i = 0; i < opt.conns; i++) {
		st |= send_chunks(fds[i], payload, n, first, (size_t)-1);
		if (!opt.keep_open)
			shutdown(fds[i], SHUT_WR);
	}
	if (st)
		return st;
	if (opt.reply && !copy_reply(fd))
		return 4;
	close(fd);
	return 0;
}
