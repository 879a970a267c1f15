/* Helpers shared by the check_*.c unit tests (static: each test is one program). */
#ifndef PS_UNIT_H
#define PS_UNIT_H

#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* An address from its text: IPv4 text gives AF_INET, anything else AF_INET6. */
static inline struct ps_addr mkaddr(const char *ip, uint16_t port)
{
	struct ps_addr a;

	memset(&a, 0, sizeof a);
	a.port = port;
	if (inet_pton(AF_INET, ip, a.ip) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, ip, a.ip) == 1)
		a.family = AF_INET6;
	else
		ck_abort_msg("bad test address %s", ip);
	return a;
}

/* One case per table row: _i indexes the table, and each row runs (and fails) alone. */
static inline void add_loop(Suite *s, const char *name, const TTest *t, int n)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, t, 0, n);
	suite_add_tcase(s, tc);
}

static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
