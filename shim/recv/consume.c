#include "consume.h"
#include "lock.h"
#include "real.h"

#include <errno.h>
#include <poll.h>
#include <sys/mman.h>
#include <time.h>

/* Holds any v1 line and any v2 header without large TLVs; bigger ones get a mapping. */
#define SMALL_PEEK 512

struct peek {
	int fd;
	uint8_t *buf;
	size_t cap;
	size_t want;   /* after PS_TAKE_MORE: total bytes needed */
	ssize_t got;   /* bytes seen by the last peek */
	int lowat;     /* SO_RCVLOWAT currently set on fd (1 = unknown/default) */
	uint8_t small[SMALL_PEEK];
};


static void set_lowat(struct peek *p, int bytes)
{
	if (p->lowat != bytes &&
	    setsockopt(p->fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) == 0)
		p->lowat = bytes;
}

static int grow(struct peek *p)
{
	void *m = mmap(NULL, PP_V2_MAX, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (m == MAP_FAILED)
		return -1;
	p->buf = m;
	p->cap = PP_V2_MAX;
	return 0;
}

/* Removes exactly len peeked bytes from the socket. */
static int consume(struct peek *p, size_t len)
{
	while (len) {
		ssize_t n = real_recv(p->fd, p->buf, len, MSG_DONTWAIT);
		if (n <= 0 && errno != EINTR)
			return -1;
		if (n > 0)
			len -= (size_t)n;
	}
	return 0;
}

/* TCP urgent data (MSG_OOB) with a header: the kernel counts it toward readiness while
 * a peek never shows it, so the header would never complete and the socket would stay
 * readable (a spin). No proxy sends it. */
static bool urgent(int fd)
{
	char c;
	return real_recv(fd, &c, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT) >= 0;
}

/* One peek and parse. */
static enum ps_take attempt(struct peek *p, const struct ps_config *c, struct pp_header *h,
			    const char **why, bool hup)
{
	for (;;) {
		ssize_t n = p->got = real_recv(p->fd, p->buf, p->cap, MSG_PEEK | MSG_DONTWAIT);
		p->want = 1;
		if (n == 0) {
			*why = "connection closed before the header arrived";
			return c->policy == PS_POLICY_OPTIONAL ? PS_TAKE_NONE : PS_TAKE_BAD;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return PS_TAKE_MORE;
			*why = errno == ECONNRESET ? "connection reset before the header arrived"
						   : "receive error before the header arrived";
			return PS_TAKE_BAD;
		}
		if (c->policy == PS_POLICY_OPTIONAL && pp_signature(p->buf, (size_t)n) == 0)
			return PS_TAKE_NONE;
		switch (pp_parse(p->buf, (size_t)n, h)) {
		case PP_DONE:
			if (consume(p, h->len) == 0)
				return PS_TAKE_OK;
			*why = "connection lost while removing the header";
			return PS_TAKE_BAD;
		case PP_INVALID:
			*why = h->reason;
			return PS_TAKE_BAD;
		case PP_NEED_MORE:
			p->want = h->need;
			break;
		}
		if (p->want <= p->cap) {
			if (urgent(p->fd)) {
				*why = "urgent data with the header";
				return PS_TAKE_BAD;
			}
			break;
		}
		if (grow(p) < 0) {
			*why = "out of memory for a large header";
			return PS_TAKE_BAD;
		}
	}
	if (hup) {
		*why = "connection closed in the middle of the header";
		return PS_TAKE_BAD;
	}
	return PS_TAKE_MORE;
}

/* The deadline passed with the header incomplete. optional: bytes too few to be a
 * signature may be the client's own, so the connection is handed over. */
static enum ps_take expire(const struct peek *p, const struct ps_config *c, const char **why)
{
	if (c->policy == PS_POLICY_OPTIONAL &&
	    (p->got <= 0 || pp_signature(p->buf, (size_t)p->got) < 0))
		return PS_TAKE_NONE;
	*why = p->got > 0 ? "timed out in the middle of the header"
			  : "timed out waiting for the header";
	return PS_TAKE_BAD;
}

/* Waits until at least p->want bytes are queued, the peer hangs up or the deadline
 * passes. SO_RCVLOWAT makes poll() wake only then: a plain poll would return at once
 * for the bytes already peeked, and spin. Returns -1 at the deadline. */
static int wait_bytes(struct peek *p, long long deadline, bool *hup)
{
	long long left = deadline - ps_now_ms();
	if (left <= 0)
		return -1;
	set_lowat(p, p->want > 1 ? (int)p->want : 1);
	struct pollfd pfd = {.fd = p->fd, .events = POLLIN | POLLRDHUP};
	if (real_poll(&pfd, 1, (int)left) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		*hup = true;
	return 0;
}

static enum ps_take take(struct peek *p, const struct ps_config *c, struct pp_header *h,
			 const char **why, long long deadline)
{
	bool hup = false;
	for (;;) {
		enum ps_take r = attempt(p, c, h, why, hup);
		if (r != PS_TAKE_MORE)
			return r;
		if (wait_bytes(p, deadline, &hup) < 0)
			return expire(p, c, why);
	}
}

static void release(struct peek *p)
{
	if (p->buf != p->small)
		munmap(p->buf, PP_V2_MAX);
}

enum ps_take ps_take_header(int fd, const struct ps_config *c, struct pp_header *h,
			    const char **why)
{
	return ps_take_header_within(fd, c, h, why, c->timeout_ms);
}

enum ps_take ps_take_header_within(int fd, const struct ps_config *c, struct pp_header *h,
				   const char **why, long long ms)
{
	/* SO_RCVLOWAT unknown (0): a ps_try_header before may have raised it, and it must
	 * be back at 1 when the application gets the socket. Slow path only. */
	struct peek p = {.fd = fd, .cap = SMALL_PEEK, .lowat = 0};
	p.buf = p.small;
	int saved = errno;
	enum ps_take r = take(&p, c, h, why, ps_now_ms() + ms);
	set_lowat(&p, 1);
	release(&p);
	errno = saved;
	return r;
}

enum ps_take ps_try_header(int fd, const struct ps_config *c, struct pp_header *h,
			   const char **why, int flags, bool *raised)
{
	struct peek p = {.fd = fd, .cap = SMALL_PEEK, .lowat = flags & PS_TRY_KEPT ? 0 : 1};
	p.buf = p.small;
	int saved = errno;
	enum ps_take r = attempt(&p, c, h, why, flags & PS_TRY_HUP);
	if (r == PS_TAKE_MORE && (flags & PS_TRY_EXPIRED))
		r = expire(&p, c, why);
	set_lowat(&p, r == PS_TAKE_MORE && p.want > 1 ? (int)p.want : 1);
	if (raised)
		*raised = p.lowat != 1;  /* unknown (a failed reset) counts as raised */
	release(&p);
	errno = saved;
	return r;
}
