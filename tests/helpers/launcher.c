/* launcher: a systemd Accept=yes style socket activator for the tests. Listens on
 * 127.0.0.1:PORT (0: a port the kernel picks), accepts one connection, and starts
 * PROG with it as fd 3, LISTEN_FDS=1, LISTEN_FDNAMES=connection and LISTEN_PID set to
 * the child's own pid (set in the child after fork, as systemd does). The listener
 * stays open in the launcher until the child ends, as systemd keeps it. Run with -h.
 * Exit status: the child's (128+N if killed by signal N); 1 usage or set-up error;
 * 124 no connection or child still running within -t. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELPER_NAME "launcher"
#include "common.h"

static void usage(FILE *f)
{
	fputs("usage: launcher [-p PORT] [-P PORTFILE] [-t SECONDS] PROG [ARGS...]\n"
	      "  -p PORT      listen on 127.0.0.1:PORT (default 0: the kernel picks one)\n"
	      "  -P FILE      write the listening port to FILE once listening\n"
	      "  -t SECONDS   bound on waiting for the connection and for the child (default 20)\n"
	      "PROG gets the accepted connection as fd 3 with LISTEN_FDS=1, LISTEN_PID=its pid,\n"
	      "LISTEN_FDNAMES=connection.\n", f);
}

int main(int argc, char **argv)
{
	long port = 0, timeout_s = 20;
	const char *portfile = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "+p:P:t:h")) != -1) {
		switch (opt) {
		case 'p': port = parse_num(optarg, 0, 65535, "port"); break;
		case 'P': portfile = optarg; break;
		case 't': timeout_s = parse_num(optarg, 1, 3600, "timeout"); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 1;
	}

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	socklen_t sl = sizeof(sin);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 16) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl)) {
		perror("launcher: listen");
		return 1;
	}
	if (portfile) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", portfile);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%u\n", ntohs(sin.sin_port)) < 0 || fclose(f) ||
		    rename(tmp, portfile)) {
			perror("launcher: port file");
			return 1;
		}
	}

	long long deadline = now_ms() + timeout_s * 1000L;
	struct pollfd pfd = {.fd = lfd, .events = POLLIN};
	int r;
	do
		r = poll(&pfd, 1, (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0));
	while (r < 0 && errno == EINTR);
	if (r <= 0) {
		fputs("launcher: no connection in time\n", stderr);
		return 124;
	}
	int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (cfd < 0) {
		perror("launcher: accept");
		return 1;
	}

	pid_t pid = fork();
	if (pid < 0) {
		perror("launcher: fork");
		return 1;
	}
	if (pid == 0) {
		char buf[32];
		/* fd 3 without FD_CLOEXEC: dup2 onto 3 clears it; if it already is 3, clear it. */
		if (cfd == 3) {
			if (fcntl(3, F_SETFD, 0) < 0)
				_exit(127);
		} else if (dup2(cfd, 3) < 0) {
			_exit(127);
		}
		snprintf(buf, sizeof(buf), "%ld", (long)getpid());
		if (setenv("LISTEN_FDS", "1", 1) || setenv("LISTEN_PID", buf, 1) ||
		    setenv("LISTEN_FDNAMES", "connection", 1))
			_exit(127);
		execvp(argv[optind], argv + optind);
		perror("launcher: exec");
		_exit(127);
	}
	close(cfd);

	int st;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			perror("launcher: waitpid");
			return 1;
		}
		if (now_ms() > deadline) {
			fputs("launcher: child still running, killing it\n", stderr);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return 124;
		}
		usleep(10000);
	}
	close(lfd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
