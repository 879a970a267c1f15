/* An inetd-style service: reports what the inherited connection looks like.
 * The connection is fd 0, or fd 3 when LISTEN_FDS is set (systemd Accept=yes).
 * Prints "peer=A local=L data=D" (data escaped, first read) to stdout and, when
 * stdout is the socket itself, also to the file named by $PEERINFO_OUT.
 * -x PROG: instead, exec PROG (state must survive exec); -r MODE: read with read
 * (default), recv, readv or recvmsg. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void fmt(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, len, "%s:%u", ip, port);
}

static ssize_t first_read(int fd, const char *mode, char *buf, size_t len)
{
	struct iovec iov = {buf, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (!strcmp(mode, "recv"))
		return recv(fd, buf, len, 0);
	if (!strcmp(mode, "readv"))
		return readv(fd, &iov, 1);
	if (!strcmp(mode, "recvmsg"))
		return recvmsg(fd, &mh, 0);
	return read(fd, buf, len);
}

int main(int argc, char **argv)
{
	const char *mode = "read", *prog = NULL;
	int opt, fd = getenv("LISTEN_FDS") ? 3 : 0;
	while ((opt = getopt(argc, argv, "x:r:")) != -1) {
		if (opt == 'x')
			prog = optarg;
		else
			mode = optarg;
	}
	if (prog) {
		execl(prog, prog, "-r", mode, (char *)NULL);
		perror("exec");
		return 1;
	}
	struct sockaddr_storage p = {0}, l = {0};
	socklen_t pl = sizeof(p), ll = sizeof(l);
	char ps[80] = "error", ls[80] = "error", buf[256], esc[1100];
	if (getpeername(fd, (struct sockaddr *)&p, &pl) == 0)
		fmt(&p, ps, sizeof(ps));
	if (getsockname(fd, (struct sockaddr *)&l, &ll) == 0)
		fmt(&l, ls, sizeof(ls));
	ssize_t n = first_read(fd, mode, buf, sizeof(buf));
	size_t k = 0;
	for (ssize_t i = 0; i < n; i++)
		k += (size_t)snprintf(esc + k, sizeof(esc) - k,
				      buf[i] >= 32 && buf[i] < 127 && buf[i] != '\\' ? "%c" : "\\x%02x",
				      (unsigned char)buf[i]);
	esc[k] = 0;
	char line[1400];
	int len = snprintf(line, sizeof(line), "peer=%s local=%s data=%s\n", ps, ls,
			   n < 0 ? "ERROR" : n == 0 ? "EOF" : esc);
	const char *out = getenv("PEERINFO_OUT");
	FILE *f = out ? fopen(out, "a") : NULL;
	if (f) {
		fputs(line, f);
		fclose(f);
	}
	if (write(fd == 0 ? 1 : fd, line, (size_t)len) < 0)
		return 1;
	return 0;
}
