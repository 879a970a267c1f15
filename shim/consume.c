#include "consume.h"
#include "real.h"

#include <errno.h>
#include <poll.h>
#include <sys/mman.h>
#include <time.h>

/* Holds any v1 line and any v2 header without large TLVs; bigger ones get a mapping. */
#define SMALL_PEEK 512

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct peek {
	int fd;
	uint8_t *buf;
	size_t cap;
	uint8_t small[SMALL_PEEK];
	int lowat;     /* SO_RCVLOWAT currently set on fd */
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

/* Waits until at least 'want' bytes are queued, the peer hangs up or the deadline
 * passes. SO_RCVLOWAT makes poll() wake only then: a plain poll would return at once
 * for the bytes already peeked, and spin. Returns 0, or -1 at the deadline. */
static int wait_bytes(struct peek *p, size_t want, long long deadline, int *hup)
{
	long long left = deadline - now_ms();
	if (left <= 0)
		return -1;
	set_lowat(p, want > 1 ? (int)want : 1);
	struct pollfd pfd = {.fd = p->fd, .events = POLLIN | POLLRDHUP};
	int r = poll(&pfd, 1, (int)left);
	if (r > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		*hup = 1;
	return 0;
}

static enum ps_take take(struct peek *p, const struct ps_config *c, struct pp_header *h,
			 const char **why)
{
	long long deadline = now_ms() + c->timeout_ms;
	int hup = 0;
	for (;;) {
		ssize_t n = real_recv(p->fd, p->buf, p->cap, MSG_PEEK | MSG_DONTWAIT);
		size_t want = 1;
		if (n == 0) {
			*why = "connection closed before the header arrived";
			return c->policy == PS_POLICY_OPTIONAL ? PS_TAKE_NONE : PS_TAKE_BAD;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			*why = errno == ECONNRESET ? "connection reset before the header arrived"
						   : "receive error before the header arrived";
			return PS_TAKE_BAD;
		}
		if (n > 0) {
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
				want = h->need;
				break;
			}
			if (want > p->cap) {
				if (grow(p) < 0) {
					*why = "out of memory for a large header";
					return PS_TAKE_BAD;
				}
				continue;
			}
			if (hup) {
				*why = "connection closed in the middle of the header";
				return PS_TAKE_BAD;
			}
		}
		if (wait_bytes(p, want, deadline, &hup) < 0) {
			/* optional: bytes too few to be a signature may be the client's own. */
			if (c->policy == PS_POLICY_OPTIONAL &&
			    (n <= 0 || pp_signature(p->buf, (size_t)n) < 0))
				return PS_TAKE_NONE;
			*why = n > 0 ? "timed out in the middle of the header"
				     : "timed out waiting for the header";
			return PS_TAKE_BAD;
		}
	}
}

enum ps_take ps_take_header(int fd, const struct ps_config *c, struct pp_header *h,
			    const char **why)
{
	struct peek p = {.fd = fd, .cap = SMALL_PEEK, .lowat = 1};
	p.buf = p.small;
	int saved = errno;
	enum ps_take r = take(&p, c, h, why);
	set_lowat(&p, 1);
	if (p.buf != p.small)
		munmap(p.buf, PP_V2_MAX);
	errno = saved;
	return r;
}
