/* hsrv: a TCP server for the hostile-input tests (tests/integration/hostile_*.bats), built
 * to misbehave the way real daemons do around the shim: it survives EMFILE, takes
 * signals during accept, forks from threads, closes descriptors from signal handlers,
 * vforks and execs children holding connections, and serves on very high fds.
 * One stdout line per served connection:
 *   conn fd=N peer=ADDR local=ADDR data="ESCAPED" sigs=S
 * (data read until EOF, 256 bytes or -I ms idle; sigs: signals taken during the accept
 * call that returned it), then "OK <peer>\n" to the client and close. Run with -h.
 * Exit status: 0 after -n connections or a clean stop, 1 on errors, 3 on -T. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netaddr.h"

#define DATA_MAX 256
#define ADDR_STR 160
#define MAX_THREADS 64

extern char **environ;

enum mode { M_BLOCK, M_EPOLL, M_THREADS, M_SPIN, M_SELECT };

static struct {
	const char *laddr, *portfile;
	long count;
	enum mode mode;
	int nthreads, idle_ms, hard_timeout;
	long storm_us;        /* -s: SIGUSR1 every storm_us microseconds */
	long open_to;         /* -O: open fds until this number is reached */
	long rlimit;          /* -r: RLIMIT_NOFILE soft (and hard) limit */
	long dup_to;          /* -D: serve every connection on this fd number */
	bool fork_stress;     /* -f */
	long dup_stress;      /* -Z FD: a thread dup2()s the listener to FD, in a loop */
	const char *sigclose; /* -K listener | dup */
	long vfork_n;         /* -V: hold N connections, then vfork+exec a child for each */
	const char *spawn;    /* -X vfork | spawn */
	long child_fd;        /* -C: child mode */
	bool exhaust;         /* -E: no free fd while the listener is added to epoll */
} opt = {"127.0.0.1", NULL, 0, M_BLOCK, 1, 2000, 30, 0, 0, 0, -1, false, -1, NULL, 0,
	 "vfork", -1, false};

static int lfd = -1;
static const char *self_path;
static atomic_long served, sigs, accept_errors, forks, stuck, dups;
static volatile sig_atomic_t stop;
/* -f: up to FORK_INFLIGHT children at once, reaped as they end; one still there after
 * 2 s is reported ('fork-stuck') and killed. */
#define FORK_INFLIGHT 16
static _Atomic pid_t inflight[FORK_INFLIGHT];
static atomic_bool fork_quit, fork_done;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *what)
{
	fprintf(stderr, "hsrv: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void usage(FILE *f)
{
	fputs("usage: hsrv [-l ADDR] [-P PORTFILE] [-n COUNT] [-m block|epoll|threads:N|spin]\n"
	      "            [-I IDLE_MS] [-T SECONDS] [-s STORM_US] [-O FD] [-r NOFILE] [-D FD]\n"
	      "            [-f] [-Z FD] [-K listener|dup] [-V N [-X vfork|spawn]] [-C FD] [-E] [-h]\n"
	      "  -l ADDR    listen address (127.0.0.1; '::1' IPv6 only, '::' dual-stack)\n"
	      "  -P FILE    write the port to FILE once listening\n"
	      "  -n COUNT   exit 0 after COUNT served connections (prints the summary line)\n"
	      "  -m MODE    block (accept), epoll (non-blocking accept4), threads:N (N threads\n"
	      "             in blocking accept4), spin (non-blocking accept4 in a busy loop),\n"
	      "             select (blocking listener, accept after pselect, SIGTERM blocked\n"
	      "             except in pselect and then stops the server: PostgreSQL's way)\n"
	      "  -I MS      idle read timeout (default 2000)      -T SEC  hard timeout (30)\n"
	      "  -s US      SIGUSR1 to the process every US microseconds (handler counts; no\n"
	      "             SA_RESTART, so blocking calls see EINTR)\n"
	      "  -O FD      before listening, open /dev/null copies until fd FD exists\n"
	      "  -r N       set RLIMIT_NOFILE (soft and hard) to N; exit 4 if not permitted\n"
	      "  -D FD      dup2 every accepted connection to FD, close the original, serve FD\n"
	      "  -f         a thread forks children in a loop (16 at a time); each child\n"
	      "             getpeername()s fds 3-63, close()s the -Z fd, closefrom(3),\n"
	      "             _exit(0); one still there after 2 s is reported ('fork-stuck')\n"
	      "             and killed\n"
	      "  -Z FD      a thread dup2()s the listener to FD and closes it, in a loop\n"
	      "  -K listener  SIGTERM handler closes the listener; the server then exits 0\n"
	      "  -K dup     with -s: the SIGUSR1 handler close()s the -Z fd (else the -D fd)\n"
	      "  -V N       accept N connections and hold them, then start a child per\n"
	      "             connection with -X (vfork+execve, or posix_spawn) running\n"
	      "             'hsrv -C FD', wait for them and exit 0\n"
	      "  -E         epoll mode: every free fd is taken (EMFILE) while the listener is\n"
	      "             added to the epoll set, and given back right after\n"
	      "  -C FD      child mode: print 'child fd=FD peer=ADDR local=ADDR data=\"...\"' for\n"
	      "             the inherited connection FD, reply 'OK <peer>\\n', exit 0\n"
	      "At exit after -n: 'summary served=N sigs=N accept_errors=N forks=N stuck=N dups=N\n"
	      "dupper=none|running|stuck' (stuck: the -Z thread made no progress in 2 s).\n", f);
}

static long num(const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "hsrv: bad number \"%s\"\n", s);
		exit(1);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "l:P:n:m:I:T:s:O:r:D:fZ:K:V:X:C:Eh")) != -1) {
		switch (c) {
		case 'l': opt.laddr = optarg; break;
		case 'P': opt.portfile = optarg; break;
		case 'n': opt.count = num(optarg, 1, 10000000); break;
		case 'm':
			if (!strcmp(optarg, "block"))
				opt.mode = M_BLOCK;
			else if (!strcmp(optarg, "epoll"))
				opt.mode = M_EPOLL;
			else if (!strcmp(optarg, "spin"))
				opt.mode = M_SPIN;
			else if (!strcmp(optarg, "select"))
				opt.mode = M_SELECT;
			else if (!strncmp(optarg, "threads:", 8))
				opt.mode = M_THREADS,
				opt.nthreads = (int)num(optarg + 8, 1, MAX_THREADS);
			else
				num("", 0, 0);
			break;
		case 'I': opt.idle_ms = (int)num(optarg, 1, 600000); break;
		case 'T': opt.hard_timeout = (int)num(optarg, 1, 86400); break;
		case 's': opt.storm_us = num(optarg, 1, 10000000); break;
		case 'O': opt.open_to = num(optarg, 3, 1 << 24); break;
		case 'r': opt.rlimit = num(optarg, 16, 1 << 24); break;
		case 'D': opt.dup_to = num(optarg, 3, 1 << 24); break;
		case 'f': opt.fork_stress = true; break;
		case 'Z': opt.dup_stress = num(optarg, 3, 1 << 24); break;
		case 'K': opt.sigclose = optarg; break;
		case 'V': opt.vfork_n = num(optarg, 1, 64); break;
		case 'X': opt.spawn = optarg; break;
		case 'C': opt.child_fd = num(optarg, 0, 1 << 24); break;
		case 'E': opt.exhaust = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(1);
	}
}

static void out_line(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&out_lock);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* The -Z thread still makes progress (it is not stuck inside a hook): one dup2 within
 * 2 s, in 10 ms steps (a loaded machine may not run it for a few hundred ms, under a
 * signal every few microseconds; a hung thread never comes back). */
static const char *dupper_state(void)
{
	if (opt.dup_stress < 0)
		return "none";
	long before = atomic_load(&dups);
	for (int i = 0; i < 200; i++) {
		usleep(10000);
		if (atomic_load(&dups) != before)
			return "running";
	}
	return "stuck";
}

static void summary_and_exit(void)
{
	atomic_store(&fork_quit, true);  /* the forker kills its children and stops */
	for (int i = 0; opt.fork_stress && !atomic_load(&fork_done) && i < 1000; i++)
		usleep(1000);
	const char *dupper = dupper_state();
	pthread_mutex_lock(&out_lock);
	printf("summary served=%ld sigs=%ld accept_errors=%ld forks=%ld stuck=%ld dups=%ld "
	       "dupper=%s\n", atomic_load(&served), atomic_load(&sigs),
	       atomic_load(&accept_errors), atomic_load(&forks), atomic_load(&stuck),
	       atomic_load(&dups), dupper);
	fflush(stdout);
	_exit(0);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void escape(const char *p, size_t n, char *buf, size_t cap)
{
	size_t o = 0;
	buf[o++] = '"';
	for (size_t i = 0; i < n && o + 6 < cap; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch == '\r')
			o += (size_t)snprintf(buf + o, cap - o, "\\r");
		else if (ch == '\n')
			o += (size_t)snprintf(buf + o, cap - o, "\\n");
		else if (ch == '\\' || ch == '"')
			o += (size_t)snprintf(buf + o, cap - o, "\\%c", ch);
		else if (ch >= 0x20 && ch < 0x7f)
			buf[o++] = (char)ch;
		else
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

/* Reads (any blocking mode) until EOF, DATA_MAX bytes or idle_ms without data. */
static size_t read_data(int fd, char *data)
{
	size_t len = 0;
	long long last = now_ms();
	while (len < DATA_MAX) {
		ssize_t r = recv(fd, data + len, DATA_MAX - len, MSG_DONTWAIT);
		if (r > 0) {
			len += (size_t)r;
			last = now_ms();
			continue;
		}
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			break;
		long long left = opt.idle_ms - (now_ms() - last);
		if (left <= 0)
			break;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, (int)left);
	}
	return len;
}

static void reply(int fd, const char *peer)
{
	char buf[ADDR_STR + 8];
	int n = snprintf(buf, sizeof buf, "OK %s\n", peer);
	if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) < 0) {}
}

/* Serves fd (moved to -D first), prints the line, closes. */
static void serve(int fd, long nsigs)
{
	if (opt.dup_to >= 0) {
		if (dup2(fd, (int)opt.dup_to) < 0)
			die("dup2 to the -D fd");
		close(fd);
		fd = (int)opt.dup_to;
	}
	char data[DATA_MAX], esc[DATA_MAX * 4 + 8], peer[ADDR_STR], local[ADDR_STR];
	size_t len = read_data(fd, data);
	na_format_name(fd, true, peer, sizeof peer);
	na_format_name(fd, false, local, sizeof local);
	escape(data, len, esc, sizeof esc);
	out_line("conn fd=%d peer=%s local=%s data=%s sigs=%ld\n", fd, peer, local, esc, nsigs);
	reply(fd, peer);
	close(fd);
	if (opt.count && atomic_fetch_add(&served, 1) + 1 >= opt.count)
		summary_and_exit();
}

/* -1 to go on (EINTR, EAGAIN, EMFILE...: counted, backed off), or the fd. */
static int take(int flags, long *nsigs)
{
	long before = atomic_load(&sigs);
	int fd = accept4(lfd, NULL, NULL, flags);
	*nsigs = atomic_load(&sigs) - before;
	if (fd >= 0)
		return fd;
	if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
		return -1;
	if (errno == EBADF || errno == EINVAL || errno == ENOTSOCK) {
		if (stop) {  /* -K listener: the handler closed it */
			out_line("stopped\n");
			_exit(0);
		}
		die("accept4");
	}
	atomic_fetch_add(&accept_errors, 1);
	fprintf(stderr, "hsrv: accept4: %s\n", strerror(errno));
	usleep(10000);  /* EMFILE, ENFILE, ENOMEM, ENOBUFS: back off, as nginx does */
	return -1;
}

static void *accept_loop(void *arg)
{
	(void)arg;
	if (opt.mode == M_SPIN)
		fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	for (;;) {
		long n;
		int fd = take(opt.mode == M_BLOCK ? 0 : SOCK_CLOEXEC, &n);
		if (stop) {
			out_line("stopped\n");
			_exit(0);
		}
		if (fd >= 0)
			serve(fd, n);
	}
	return NULL;
}

/* As PostgreSQL's postmaster: a blocking listener, signals blocked except inside
 * pselect, accept only once pselect reported the listener readable. SIGTERM (no
 * SA_RESTART) stops it: "stopped" once it is back in its loop. */
static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void run_select(void)
{
	struct sigaction sa = {.sa_handler = on_stop};
	sigset_t block, open_mask;
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &open_mask);
	sigdelset(&open_mask, SIGTERM);
	/* A bitmap of lfd + 1 bits: any fd, past FD_SETSIZE too (with -O), as select
	 * allows. */
	const size_t bits = 8 * sizeof(unsigned long);
	size_t words = (size_t)lfd / bits + 1;
	unsigned long *rd = calloc(words, sizeof(*rd));
	if (!rd)
		die("calloc");
	for (;;) {
		memset(rd, 0, words * sizeof(*rd));
		rd[(size_t)lfd / bits] = 1ul << ((size_t)lfd % bits);
		int n = pselect(lfd + 1, (fd_set *)rd, NULL, NULL, NULL, &open_mask);
		if (stop) {
			out_line("stopped\n");
			_exit(0);
		}
		long nsigs;
		int fd = n > 0 && (rd[(size_t)lfd / bits] >> ((size_t)lfd % bits) & 1) ? take(0, &nsigs) : -1;
		if (fd >= 0)
			serve(fd, nsigs);
	}
}

/* The epoll loop serves each connection once its first bytes (or EOF) are there. */
static void run_epoll(void)
{
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = -1};
	int first = -1, last = -1, fd;
	while (opt.exhaust && (fd = fcntl(0, F_DUPFD_CLOEXEC, 0)) >= 0)
		first = first < 0 ? fd : first, last = fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");
	for (fd = first; first >= 0 && fd <= last; fd++)
		close(fd);
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, 50);
		if (stop) {
			out_line("stopped\n");
			_exit(0);
		}
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == -1) {
				long s;
				int fd;
				while ((fd = take(SOCK_NONBLOCK | SOCK_CLOEXEC, &s)) >= 0) {
					struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP,
								 .data.u64 = (uint64_t)fd << 32 | (uint32_t)s};
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce) < 0)
						die("epoll_ctl(conn)");
				}
			} else {
				int fd = (int)(evs[i].data.u64 >> 32);
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				serve(fd, (long)(uint32_t)evs[i].data.u64);
			}
		}
	}
}

/* ---- signals ---- */

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	atomic_fetch_add(&sigs, 1);
	if (opt.sigclose && !strcmp(opt.sigclose, "dup"))
		close((int)(opt.dup_stress >= 0 ? opt.dup_stress : opt.dup_to));
	errno = saved;
}

static void on_term(int sig)
{
	(void)sig;
	int saved = errno;
	stop = 1;
	close(lfd);
	errno = saved;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "hsrv: hard timeout (-T)\n";
	if (write(2, msg, sizeof msg - 1) < 0) {}
	_exit(3);
}

static void start_storm(void)
{
	struct sigaction sa = {.sa_handler = on_usr1};  /* no SA_RESTART */
	sigaction(SIGUSR1, &sa, NULL);
	struct sigevent se = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
	timer_t t;
	if (timer_create(CLOCK_MONOTONIC, &se, &t) < 0)
		die("timer_create");
	struct itimerspec its = {
		.it_value = {opt.storm_us / 1000000, opt.storm_us % 1000000 * 1000},
		.it_interval = {opt.storm_us / 1000000, opt.storm_us % 1000000 * 1000}};
	if (timer_settime(t, 0, &its, NULL) < 0)
		die("timer_settime");
}

/* ---- fork from a threaded process ---- */

/* What a forked child of a daemon does with the descriptors it inherited. */
static void child_after_fork(pid_t parent)
{
	/* A child stuck in a hook ends with the server, or after 5 s at the latest. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	alarm(5);
	for (int fd = 3; fd < 64; fd++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		getpeername(fd, (struct sockaddr *)&ss, &len);
	}
	if (opt.dup_stress >= 0)
		close((int)opt.dup_stress);
	closefrom(3);
	_exit(0);
}

static void *forker(void *arg)
{
	(void)arg;
	long long born[FORK_INFLIGHT] = {0};
	while (!atomic_load(&fork_quit)) {
		for (int i = 0; i < FORK_INFLIGHT; i++) {
			pid_t pid = atomic_load(&inflight[i]);
			int st;
			if (pid > 0 && waitpid(pid, &st, WNOHANG) == pid) {
				atomic_store(&inflight[i], 0);
			} else if (pid > 0 && now_ms() - born[i] > 2000) {
				atomic_fetch_add(&stuck, 1);
				out_line("fork-stuck pid=%d\n", (int)pid);
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				atomic_store(&inflight[i], 0);
			}
			if (atomic_load(&inflight[i]))
				continue;
			pid_t self = getpid();
			pid = fork();
			if (pid == 0)
				child_after_fork(self);
			if (pid < 0)
				continue;
			born[i] = now_ms();
			atomic_store(&inflight[i], pid);
			atomic_fetch_add(&forks, 1);
		}
		usleep(2000);  /* at most 8,000 forks a second */
	}
	for (int i = 0; i < FORK_INFLIGHT; i++) {  /* never leave a (stuck) child behind */
		pid_t pid = atomic_load(&inflight[i]);
		if (pid > 0 && kill(pid, SIGKILL) == 0)
			waitpid(pid, NULL, 0);
	}
	atomic_store(&fork_done, true);
	return NULL;
}

static void *dupper(void *arg)
{
	(void)arg;
	for (;;) {
		if (dup2(lfd, (int)opt.dup_stress) >= 0)
			close((int)opt.dup_stress);
		atomic_fetch_add(&dups, 1);
	}
	return NULL;
}

/* ---- vfork / posix_spawn children holding proxied connections ---- */

static void run_children(void)
{
	int fds[64];
	for (long i = 0; i < opt.vfork_n;) {
		long s;
		int fd = take(0, &s);
		if (fd >= 0)
			fds[i++] = fd;
	}
	pid_t pids[64];
	for (long i = 0; i < opt.vfork_n; i++) {
		char fdarg[16];
		snprintf(fdarg, sizeof fdarg, "%d", fds[i]);
		char *argv[] = {(char *)self_path, "-C", fdarg, NULL};
		if (!strcmp(opt.spawn, "spawn")) {
			int e = posix_spawn(&pids[i], self_path, NULL, NULL, argv, environ);
			if (e) {
				errno = e;
				die("posix_spawn");
			}
			continue;
		}
		pid_t pid = vfork();
		if (pid == 0) {
			execve(self_path, argv, environ);
			_exit(127);
		}
		if (pid < 0)
			die("vfork");
		pids[i] = pid;
	}
	for (long i = 0; i < opt.vfork_n; i++) {
		int st;
		waitpid(pids[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			out_line("child-failed status=%d\n", st);
		close(fds[i]);
	}
	out_line("parent done\n");
	exit(0);
}

static void child_mode(void)
{
	int fd = (int)opt.child_fd;
	char data[DATA_MAX], esc[DATA_MAX * 4 + 8], peer[ADDR_STR], local[ADDR_STR];
	size_t len = read_data(fd, data);
	na_format_name(fd, true, peer, sizeof peer);
	na_format_name(fd, false, local, sizeof local);
	escape(data, len, esc, sizeof esc);
	printf("child fd=%d peer=%s local=%s data=%s\n", fd, peer, local, esc);
	fflush(stdout);
	reply(fd, peer);
	exit(0);
}

/* ---- set-up ---- */

static void set_rlimit(void)
{
	struct rlimit rl = {(rlim_t)opt.rlimit, (rlim_t)opt.rlimit};
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		fprintf(stderr, "hsrv: setrlimit(RLIMIT_NOFILE, %ld): %s\n", opt.rlimit,
			strerror(errno));
		exit(4);
	}
}

static void open_up_to(void)
{
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0)
		die("/dev/null");
	int last = null;
	while (last < opt.open_to) {
		last = fcntl(null, F_DUPFD_CLOEXEC, last + 1);
		if (last < 0)
			die("filling the fd table (-O)");
	}
}

static void listen_on(void)
{
	struct sockaddr_storage ss;
	socklen_t len = na_parse(opt.laddr, 0, &ss);
	if (!len) {
		fprintf(stderr, "hsrv: bad listen address \"%s\"\n", opt.laddr);
		exit(1);
	}
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	int one = 1, zero = 0;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		bool any = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
		setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, any ? &zero : &one, sizeof one);
	}
	if (bind(lfd, (struct sockaddr *)&ss, len) < 0 || listen(lfd, 1024) < 0)
		die("bind/listen");
	len = sizeof ss;
	getsockname(lfd, (struct sockaddr *)&ss, &len);
	unsigned port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	if (opt.portfile) {
		char tmp[4096];
		snprintf(tmp, sizeof tmp, "%s.tmp", opt.portfile);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) || rename(tmp, opt.portfile))
			die("port file");
	}
}

static void start_thread(void *(*fn)(void *))
{
	pthread_t t;
	if (pthread_create(&t, NULL, fn, NULL))
		die("pthread_create");
	pthread_detach(t);
}

int main(int argc, char **argv)
{
	self_path = argv[0];
	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (opt.child_fd >= 0)
		child_mode();
	signal(SIGALRM, on_alarm);
	alarm((unsigned)opt.hard_timeout);
	if (opt.rlimit)
		set_rlimit();
	if (opt.open_to)
		open_up_to();
	listen_on();
	if (opt.sigclose && !strcmp(opt.sigclose, "listener")) {
		struct sigaction sa = {.sa_handler = on_term};
		sigaction(SIGTERM, &sa, NULL);
	}
	if (opt.storm_us)
		start_storm();
	if (opt.fork_stress)
		start_thread(forker);
	if (opt.dup_stress >= 0)
		start_thread(dupper);
	if (opt.vfork_n)
		run_children();
	if (opt.mode == M_EPOLL)
		run_epoll();
	if (opt.mode == M_SELECT)
		run_select();
	for (int i = 1; opt.mode == M_THREADS && i < opt.nthreads; i++)
		start_thread(accept_loop);
	accept_loop(NULL);
	return 0;
}
