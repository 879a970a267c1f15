/* hammer: many connections at once from one source address, each sending stdin's bytes
 * (at most 1 MiB) whole, split in two writes, or one byte at a time, then ending the
 * write side in a chosen way; reports how each connection ended. One thread, poll.
 * Run with -h.
 *
 * Results: served (reply bytes came), closed (EOF, no reply), reset (ECONNRESET, no
 * reply), timeout (neither within -t), connfail (no connection), rst (we reset it
 * ourselves with -e rst; not watched further). Output: with -v one line per
 * connection, "conn I split=K port=P result=R bytes=B ms=T reply=ESCAPED", then always
 * "summary served=N closed=N reset=N timeout=N connfail=N rst=N".
 * Exit status: 0 after every connection ended, 1 usage or set-up error. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELPER_NAME "hammer"
#include "clientloop.h"

#define PAYLOAD_MAX (1 << 20)
#define REPLY_SHOWN 64   /* reply bytes shown with -v */

enum end { END_SHUT, END_KEEP, END_RST };
enum result { R_SERVED, R_CLOSED, R_RESET, R_TIMEOUT, R_CONNFAIL, R_RST, R_COUNT };
static const char *const result_name[] = {"served", "closed", "reset", "timeout",
					  "connfail", "rst"};

static struct {
	const char *src;
	long count, parallel, split, delay_ms, partial, timeout_ms;
	bool sweep, trickle, verbose;
	enum end end;
} opt = {NULL, 1, 1, 0, 20, -1, 5000, false, false, false, END_SHUT};

static unsigned char payload[PAYLOAD_MAX];
static size_t plen;       /* bytes to send (after -p) */
static struct sockaddr_storage dst, src;
static socklen_t dlen, slen;
static long counts[R_COUNT];

struct conn {
	struct cl_conn cl;    /* t0: connect started, then connected */
	size_t split;         /* end of the first write (plen: one write) */
	unsigned port;
};

static void usage(FILE *f)
{
	fputs("usage: hammer [-s SRC] [-n COUNT] [-j PARALLEL] [-c SPLIT] [-S] [-1] [-d MS]\n"
	      "              [-p BYTES] [-e shut|keep|rst] [-t MS] [-v] [-M] [-h] HOST PORT\n"
	      "  -s SRC     bind to SRC (port 0) before connecting\n"
	      "  -n COUNT   connections in all (default 1)\n"
	      "  -j N       at most N connections open at once (default 1)\n"
	      "  -c K       two writes: the first K bytes, then after -d ms the rest\n"
	      "  -S         sweep: connection I splits at byte K + I (with -c K)\n"
	      "  -1         trickle: one byte every -d ms\n"
	      "  -d MS      pause between the writes (default 20)\n"
	      "  -p BYTES   send only the first BYTES bytes of stdin\n"
	      "  -e END     after sending: shut (shutdown SHUT_WR, default), keep (write side\n"
	      "             left open), rst (SO_LINGER 0 and close: a reset, not watched)\n"
	      "  -t MS      bound on each connection's reply or close, from connect (default 5000)\n"
	      "  -v         one line per connection (see the header comment)\n"
	      "  -M         print CLOCK_MONOTONIC in seconds (the shim's log clock) and exit\n", f);
}


static void parse_args(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "s:n:j:c:S1d:p:e:t:vMh")) != -1) {
		switch (c) {
		case 's': opt.src = optarg; break;
		case 'n': opt.count = parse_num(optarg, 1, 10000000, "count"); break;
		case 'j': opt.parallel = parse_num(optarg, 1, 100000, "parallel"); break;
		case 'c': opt.split = parse_num(optarg, 0, PAYLOAD_MAX, "split"); break;
		case 'S': opt.sweep = true; break;
		case '1': opt.trickle = true; break;
		case 'd': opt.delay_ms = parse_num(optarg, 0, 600000, "delay"); break;
		case 'p': opt.partial = parse_num(optarg, 0, PAYLOAD_MAX, "partial"); break;
		case 'e':
			if (!strcmp(optarg, "shut"))
				opt.end = END_SHUT;
			else if (!strcmp(optarg, "keep"))
				opt.end = END_KEEP;
			else if (!strcmp(optarg, "rst"))
				opt.end = END_RST;
			else
				die("bad end: \"%s\"", optarg);
			break;
		case 't': opt.timeout_ms = parse_num(optarg, 1, 3600000, "timeout"); break;
		case 'v': opt.verbose = true; break;
		case 'M':
			printf("%lld.%03lld\n", now_ms() / 1000, now_ms() % 1000);
			exit(0);
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		exit(1);
	}
	dlen = na_parse(argv[optind], (unsigned)parse_num(argv[optind + 1], 1, 65535, "port"), &dst);
	if (!dlen)
		die("bad host: \"%s\"", argv[optind]);
	if (opt.src && !(slen = na_parse(opt.src, 0, &src)))
		die("bad source: \"%s\"", opt.src);
}

static void read_payload(void)
{
	ssize_t r;
	while (plen < PAYLOAD_MAX && (r = read(0, payload + plen, PAYLOAD_MAX - plen)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die_errno("stdin");
		plen += (size_t)r;
	}
	if (opt.partial >= 0 && (size_t)opt.partial < plen)
		plen = (size_t)opt.partial;
}

/* After the last byte: end the write side as asked. */
/* Writes what is due now. */

/* ---- the hooks of the client engine ---- */

static socklen_t prepare(struct cl_conn *cl, struct sockaddr_storage *to)
{
	struct conn *c = (struct conn *)cl;
	c->split = opt.split ? (size_t)opt.split + (opt.sweep ? (size_t)cl->idx : 0) : plen;
	if (c->split > plen)
		c->split = plen;
	cl->out = payload;
	cl->outlen = plen;
	*to = dst;
	return dlen;
}

static int bind_source(struct cl_conn *cl)
{
	if (opt.src && bind(cl->fd, (struct sockaddr *)&src, slen) < 0)
		die_errno("bind");
	return 0;
}

static void connected(struct cl_conn *cl)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(cl->fd, (struct sockaddr *)&ss, &len) == 0)
		((struct conn *)cl)->port = na_port(&ss);
	cl->t0 = cl->next;   /* the timeout runs from the connect */
}

/* One byte (-1), the first -c bytes, or the rest. */
static size_t write_end(const struct cl_conn *cl)
{
	size_t split = ((const struct conn *)cl)->split;
	size_t upto = opt.trickle ? cl->sent + 1 : cl->sent < split ? split : cl->outlen;
	return upto < cl->outlen ? upto : cl->outlen;
}

static long pause_ms(const struct cl_conn *cl)
{
	(void)cl;
	return opt.delay_ms;
}

/* After the last byte: end the write side as asked. */
static void sent_all(struct cl_conn *cl)
{
	if (opt.end == END_SHUT) {
		shutdown(cl->fd, SHUT_WR);
	} else if (opt.end == END_RST) {
		struct linger lg = {1, 0};
		setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		cl_end(cl, CL_OWN);
	}
}

static void ended(struct cl_conn *cl, int how)
{
	struct conn *c = (struct conn *)cl;
	enum result r = how == CL_EOF ? R_CLOSED : how == CL_RESET ? R_RESET
		      : how == CL_TIMEOUT ? R_TIMEOUT : how == CL_CONNFAIL ? R_CONNFAIL : R_RST;
	if ((r == R_CLOSED || r == R_RESET) && cl->got)
		r = R_SERVED;
	counts[r]++;
	if (opt.verbose) {
		char rep[REPLY_SHOWN * 4 + 1];
		escape_bytes(cl->reply, cl->got < REPLY_SHOWN ? cl->got : REPLY_SHOWN, rep,
			     sizeof rep, ESC_NL);
		printf("conn %ld split=%zu port=%u result=%s bytes=%zu ms=%lld reply=%s\n", cl->idx,
		       c->split, c->port, result_name[r], cl->got, now_ms() - cl->t0, rep);
	}
}

static const struct cl_ops ops = {prepare, bind_source, connected, write_end, pause_ms,
				  sent_all, ended};

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	read_payload();
	setvbuf(stdout, NULL, _IOLBF, 0);
	cl_run(&ops, sizeof(struct conn), opt.parallel, opt.count, 0, opt.timeout_ms);
	printf("summary served=%ld closed=%ld reset=%ld timeout=%ld connfail=%ld rst=%ld\n",
	       counts[R_SERVED], counts[R_CLOSED], counts[R_RESET], counts[R_TIMEOUT],
	       counts[R_CONNFAIL], counts[R_RST]);
	return 0;
}
