/* Unit tests for taking a header off a stream (shim/recv/consume.h), linked with the
 * runtime, on a real socketpair: exactly the header's bytes are removed, application
 * bytes stay, a partial header is left where it is, bad and silent peers are decided. */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "consume.h"
#include "unit.h"

static int sv[2];
static struct ps_config cfg;

static void setup(void)
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(&cfg, 0, sizeof cfg);
	cfg.policy = PS_POLICY_REQUIRE;
	cfg.timeout_ms = 1000;
}

static void teardown(void)
{
	close(sv[0]);
	close(sv[1]);
}

static void put(const void *b, size_t n)
{
	ck_assert_int_eq(write(sv[1], b, n), (ssize_t)n);
}

/* What is still queued on the receiving end (peeked, not taken). */
static size_t queued(char *buf, size_t cap)
{
	ssize_t n = recv(sv[0], buf, cap, MSG_PEEK | MSG_DONTWAIT);
	return n < 0 ? 0 : (size_t)n;
}

static long long ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static const char V1[] = "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n";
static const char DATA[] = "GET / HTTP/1.0\r\n\r\n";

START_TEST(test_v1_then_data_exactly)
{
	char all[256], rest[256];
	struct pp_header h;
	const char *why = NULL;
	snprintf(all, sizeof all, "%s%s", V1, DATA);
	put(all, strlen(all));
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, 0, NULL), PS_TAKE_OK);
	ck_assert_int_eq(h.src.port, 40000);
	ck_assert_uint_eq(queued(rest, sizeof rest), strlen(DATA));
	ck_assert(!memcmp(rest, DATA, strlen(DATA)));
}
END_TEST

START_TEST(test_v2_then_data_exactly)
{
	static const unsigned char v2[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
		0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 0x01, 0xbb};
	char rest[256];
	struct pp_header h;
	const char *why = NULL;
	put(v2, sizeof v2);
	put(DATA, strlen(DATA));
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, 0, NULL), PS_TAKE_OK);
	ck_assert_int_eq(h.src.port, 40000);
	ck_assert_uint_eq(queued(rest, sizeof rest), strlen(DATA));
	ck_assert(!memcmp(rest, DATA, strlen(DATA)));
}
END_TEST

/* Part of a header: nothing taken; the rest completes it. */
START_TEST(test_partial_left_in_place)
{
	char rest[256];
	struct pp_header h;
	const char *why = NULL;
	put(V1, 12);
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, 0, NULL), PS_TAKE_MORE);
	ck_assert_uint_eq(queued(rest, sizeof rest), 12);
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, PS_TRY_KEPT, NULL), PS_TAKE_MORE);
	put(V1 + 12, strlen(V1) - 12);
	put(DATA, strlen(DATA));
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, PS_TRY_KEPT, NULL), PS_TAKE_OK);
	ck_assert_uint_eq(queued(rest, sizeof rest), strlen(DATA));
}
END_TEST

static int lowat(void)
{
	int v = -1;
	socklen_t l = sizeof(v);
	ck_assert_int_eq(getsockopt(sv[0], SOL_SOCKET, SO_RCVLOWAT, &v, &l), 0);
	return v;
}

/* *raised says whether SO_RCVLOWAT is left above 1: not for a peer that sent nothing
 * yet (the common late header: no system call then), yes for part of a header, and
 * back at 1 once the header is taken. */
START_TEST(test_raised_reports_rcvlowat)
{
	struct pp_header h;
	const char *why = NULL;
	bool raised = true;
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, 0, &raised), PS_TAKE_MORE);
	ck_assert(!raised);
	ck_assert_int_eq(lowat(), 1);
	put(V1, 12);
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, 0, &raised), PS_TAKE_MORE);
	ck_assert(raised);
	ck_assert_int_gt(lowat(), 12);
	put(V1 + 12, strlen(V1) - 12);
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, PS_TRY_KEPT, &raised), PS_TAKE_OK);
	ck_assert(!raised);
	ck_assert_int_eq(lowat(), 1);
}
END_TEST

START_TEST(test_malformed_is_bad)
{
	struct pp_header h;
	const char *why = NULL;
	static const char bad[] = "PROXY TCP4 192.0.2.1 198.51.100.2 40000 99999\r\nGET";
	put(bad, strlen(bad));
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, 0, NULL), PS_TAKE_BAD);
	ck_assert_ptr_nonnull(why);
}
END_TEST

/* optional: plain application bytes are no header, and all of them stay. */
START_TEST(test_optional_plain_data_untouched)
{
	char rest[256];
	struct pp_header h;
	const char *why = NULL;
	cfg.policy = PS_POLICY_OPTIONAL;
	put(DATA, strlen(DATA));
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, 0, NULL), PS_TAKE_NONE);
	ck_assert_uint_eq(queued(rest, sizeof rest), strlen(DATA));
}
END_TEST

/* A silent peer: the bounded wait ends near its limit, never long after. */
START_TEST(test_silent_peer_times_out)
{
	struct pp_header h;
	const char *why = NULL;
	long long t0 = ms_now();
	ck_assert_int_eq(ps_take_header_within(sv[0], &cfg, &h, &why, 150), PS_TAKE_BAD);
	long long took = ms_now() - t0;
	ck_assert_msg(took >= 140 && took < 1000, "took %lld ms", took);
	ck_assert_ptr_nonnull(why);
}
END_TEST

/* Part of a header, then the peer is gone: decided at once, not at the deadline. */
START_TEST(test_hangup_mid_header_decided_at_once)
{
	struct pp_header h;
	const char *why = NULL;
	put(V1, 20);
	shutdown(sv[1], SHUT_WR);
	long long t0 = ms_now();
	ck_assert_int_eq(ps_take_header_within(sv[0], &cfg, &h, &why, 5000), PS_TAKE_BAD);
	ck_assert_msg(ms_now() - t0 < 1000, "waited for a peer that hung up");
}
END_TEST

/* Past its deadline a partial header is decided (bad), never 'more'. */
START_TEST(test_expired_partial_is_decided)
{
	struct pp_header h;
	const char *why = NULL;
	put(V1, 20);
	ck_assert_int_eq(ps_try_header(sv[0], &cfg, &h, &why, PS_TRY_KEPT | PS_TRY_EXPIRED, NULL),
			 PS_TAKE_BAD);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("consume");
	TCase *tc = tcase_create("consume");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_v1_then_data_exactly);
	tcase_add_test(tc, test_v2_then_data_exactly);
	tcase_add_test(tc, test_partial_left_in_place);
	tcase_add_test(tc, test_raised_reports_rcvlowat);
	tcase_add_test(tc, test_malformed_is_bad);
	tcase_add_test(tc, test_optional_plain_data_untouched);
	tcase_add_test(tc, test_silent_peer_times_out);
	tcase_add_test(tc, test_hangup_mid_header_decided_at_once);
	tcase_add_test(tc, test_expired_partial_is_decided);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
