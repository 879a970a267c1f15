/* The client engine of hammer and soakgen: COUNT TCP connections, at most PARALLEL open
 * at once, one thread, poll. Each connection connects (non-blocking), writes its bytes
 * in one or more writes with pauses between them, then waits for the server to end it;
 * a connection still open timeout_ms after it started (or after whatever start time
 * the program's hooks set) is ended. Header-only, after common.h.
 *
 * A program's connection is a struct that starts with a struct cl_conn; the engine
 * calls the program's hooks (struct cl_ops) with a pointer to it:
 *   prepare    at the start of connection idx (cl_conn zeroed, idx set): fills dst and
 *              returns its length, sets out/outlen (the bytes to send; may grow later)
 *   bind       (may be NULL) after socket(): the source address; < 0: the connection
 *              fails (CL_CONNFAIL)
 *   connected  (may be NULL) once connected, before the first write
 *   write_end  the end of the next write (> sent, <= outlen)
 *   pause_ms   after a write that reached write_end but not outlen: the pause before
 *              the next
 *   sent_all   (may be NULL) after the last byte (the phase is CL_WAITING by then)
 *   ended      once the connection is closed: how is CL_EOF (server closed), CL_RESET
 *              (reset or another read error), CL_TIMEOUT, CL_CONNFAIL, or a value of
 *              the program's own (>= CL_OWN) given to cl_end. */
#ifndef PS_TEST_CLIENTLOOP_H
#define PS_TEST_CLIENTLOOP_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#ifndef CL_REPLY_KEEP
#define CL_REPLY_KEEP 96   /* reply bytes kept; got counts them all */
#endif

enum cl_phase { CL_CONNECTING, CL_SENDING, CL_WAITING };
enum { CL_EOF, CL_RESET, CL_TIMEOUT, CL_CONNFAIL, CL_OWN };

struct cl_conn {
	int fd;
	long idx;
	enum cl_phase phase;
	long long t0;                /* start (ms); the timeout runs from it */
	long long next;              /* earliest time of the next write */
	const unsigned char *out;    /* the bytes to send */
	size_t outlen, sent;
	size_t got;                  /* reply bytes received */
	char reply[CL_REPLY_KEEP];   /* the first of them */
};

struct cl_ops {
	socklen_t (*prepare)(struct cl_conn *c, struct sockaddr_storage *dst);
	int (*bind)(struct cl_conn *c);
	void (*connected)(struct cl_conn *c);
	size_t (*write_end)(const struct cl_conn *c);
	long (*pause_ms)(const struct cl_conn *c);
	void (*sent_all)(struct cl_conn *c);
	void (*ended)(struct cl_conn *c, int how);
};

static const struct cl_ops *cl_ops;
static long cl_done;   /* connections ended */

/* Closes c and reports how it ended. */
static inline void cl_end(struct cl_conn *c, int how)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	cl_done++;
	cl_ops->ended(c, how);
}

static inline void cl_start(struct cl_conn *c, size_t size, long idx)
{
	struct sockaddr_storage dst;
	memset(c, 0, size);
	c->fd = -1;
	c->idx = idx;
	c->t0 = now_ms();
	socklen_t dlen = cl_ops->prepare(c, &dst);
	c->fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die_errno("socket");
	if (cl_ops->bind && cl_ops->bind(c) < 0) {
		cl_end(c, CL_CONNFAIL);
		return;
	}
	c->phase = CL_CONNECTING;
	if (connect(c->fd, (struct sockaddr *)&dst, dlen) < 0 && errno != EINPROGRESS)
		cl_end(c, CL_CONNFAIL);
}

static inline void cl_connected(struct cl_conn *c)
{
	int err = 0;
	socklen_t len = sizeof err;
	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		cl_end(c, CL_CONNFAIL);
		return;
	}
	c->phase = CL_SENDING;
	c->next = now_ms();
	if (cl_ops->connected)
		cl_ops->connected(c);
}

/* Writes what is due now. */
static inline void cl_send_due(struct cl_conn *c, long long now)
{
	while (c->fd >= 0 && c->phase == CL_SENDING && now >= c->next) {
		if (c->sent >= c->outlen) {
			c->phase = CL_WAITING;
			if (cl_ops->sent_all)
				cl_ops->sent_all(c);
			return;
		}
		size_t upto = cl_ops->write_end(c);
		ssize_t w = send(c->fd, c->out + c->sent, upto - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (w < 0) {  /* the server is gone: see how it ended */
			c->phase = CL_WAITING;
			return;
		}
		c->sent += (size_t)w;
		if (c->sent == upto && c->sent < c->outlen)
			c->next = now + cl_ops->pause_ms(c);
	}
}

static inline void cl_read(struct cl_conn *c)
{
	char buf[4096];
	for (;;) {
		ssize_t r = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r > 0) {
			for (ssize_t i = 0; i < r && c->got + (size_t)i < CL_REPLY_KEEP; i++)
				c->reply[c->got + (size_t)i] = buf[i];
			c->got += (size_t)r;
			continue;
		}
		if (r == 0)
			cl_end(c, CL_EOF);
		else if (errno != EAGAIN && errno != EINTR)
			cl_end(c, CL_RESET);
		return;
	}
}

/* Runs connections first .. first+count-1, at most parallel at once, each in a struct
 * of size bytes (starting with a struct cl_conn), until all have ended. */
static inline void cl_run(const struct cl_ops *ops, size_t size, long parallel, long count,
			  long first, long timeout_ms)
{
	cl_ops = ops;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(parallel);
	char *slots = calloc((size_t)parallel, size);
	struct pollfd *pfd = calloc((size_t)parallel, sizeof *pfd);
	if (!slots || !pfd)
		die("out of memory");
#define CL_SLOT(i) ((struct cl_conn *)(slots + (size_t)(i) * size))
	for (long i = 0; i < parallel; i++)
		CL_SLOT(i)->fd = -1;
	long started = 0;
	while (cl_done < count) {
		long long now = now_ms();
		int wait = 100;
		for (long i = 0; i < parallel; i++) {
			struct cl_conn *c = CL_SLOT(i);
			while (c->fd < 0 && started < count)   /* a connect may fail at once */
				cl_start(c, size, first + started++);
			if (c->fd >= 0 && now - c->t0 >= timeout_ms)
				cl_end(c, c->phase == CL_CONNECTING ? CL_CONNFAIL : CL_TIMEOUT);
			if (c->fd >= 0 && c->phase == CL_SENDING)
				cl_send_due(c, now);
			pfd[i] = (struct pollfd){.fd = c->fd};
			if (c->fd < 0)
				continue;
			pfd[i].events = c->phase == CL_CONNECTING ? POLLOUT : POLLIN;
			if (c->phase == CL_SENDING && c->next > now && c->next - now < wait)
				wait = (int)(c->next - now);
			if (c->phase == CL_SENDING && c->next <= now)
				pfd[i].events |= POLLOUT;
		}
		if (poll(pfd, (nfds_t)parallel, wait) < 0 && errno != EINTR)
			die_errno("poll");
		for (long i = 0; i < parallel; i++) {
			struct cl_conn *c = CL_SLOT(i);
			if (c->fd < 0 || !pfd[i].revents)
				continue;
			if (c->phase == CL_CONNECTING)
				cl_connected(c);
			else if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				cl_read(c);
		}
	}
#undef CL_SLOT
	free(slots);
	free(pfd);
}

#endif
