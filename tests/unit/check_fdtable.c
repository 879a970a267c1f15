/* Unit tests for the fd table (shim/rt/fdtable.h), linked with the runtime: entries,
 * range clears across leaves, concurrent writers and readers (never a torn entry), a
 * signal handler writing the slot its own thread is writing, and a fork child while
 * another thread writes. Uses descriptor numbers only; no socket is needed. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdtable.h"
#include "unit.h"

/* An entry whose every byte after the kind says 'v': a torn read mixes values. */
static struct ps_fdinfo pattern(uint8_t v)
{
	struct ps_fdinfo e;
	memset(&e, v, sizeof e);
	e.kind = PS_FD_HANDLED;
	return e;
}

static bool uniform(const struct ps_fdinfo *e)
{
	const uint8_t *b = (const uint8_t *)e;
	for (size_t i = 2; i < sizeof *e; i++)
		if (b[i] != b[1])
			return false;
	return true;
}

START_TEST(test_set_get_clear)
{
	struct ps_fdinfo e = pattern(7), got;
	ck_assert(!ps_fd_get(100, &got));
	ck_assert_int_eq(got.kind, PS_FD_NONE);
	ck_assert(ps_fd_set(100, &e));
	ck_assert(ps_fd_get(100, &got));
	ck_assert(!memcmp(&e, &got, sizeof e));
	/* the head: the first two words; the rest of the caller's struct is not written */
	memset(&got, 0xA5, sizeof got);
	ck_assert(ps_fd_get_head(100, &got));
	ck_assert(!memcmp(&e, &got, offsetof(struct ps_fdinfo, cookie) + sizeof e.cookie));
	ck_assert(got.cookie == e.cookie && got.slot == e.slot && got.src.family == 0xA5A5);
	ck_assert(!ps_fd_get_head(99, &got) && got.kind == PS_FD_NONE);
	ps_fd_copy(100, 101);
	ck_assert(ps_fd_get(101, &got) && !memcmp(&e, &got, sizeof e));
	ps_fd_clear(100, 100);
	ck_assert(!ps_fd_get(100, &got));
	ck_assert(ps_fd_get(101, &got));
	ck_assert(!ps_fd_set(-1, &e));
	ck_assert(!ps_fd_set((int)PS_FD_LIMIT, &e));
	ck_assert(!ps_fd_get((int)PS_FD_LIMIT, &got));
}
END_TEST

/* Clears of ranges that cross leaves (1,024 descriptors each), and of everything. */
START_TEST(test_range_clears)
{
	struct ps_fdinfo e = pattern(3), got;
	static const int fds[] = {3, 1022, 1023, 1024, 1025, 4095, 4096, 70000};
	for (size_t i = 0; i < N(fds); i++)
		ck_assert(ps_fd_set(fds[i], &e));
	ps_fd_clear(1023, 1024);
	for (size_t i = 0; i < N(fds); i++)
		ck_assert_msg(ps_fd_get(fds[i], &got) == (fds[i] != 1023 && fds[i] != 1024),
			      "fd %d", fds[i]);
	ps_fd_clear(1025, ~0u);  /* closefrom(1025) */
	for (size_t i = 0; i < N(fds); i++)
		ck_assert_msg(ps_fd_get(fds[i], &got) == (fds[i] < 1023), "fd %d", fds[i]);
	ps_fd_clear(0, ~0u);
	for (size_t i = 0; i < N(fds); i++)
		ck_assert(!ps_fd_get(fds[i], &got));
}
END_TEST

/* Time-bounded, not round-bounded: the same test runs emulated (qemu-user), where each
 * round costs a hundred times more. */
#define THREADS 4
#define RUN_NS 1000000000LL
static atomic_int torn;
static atomic_bool stop_threads;

static long long ns_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *writer_reader(void *arg)
{
	uint8_t me = (uint8_t)(uintptr_t)arg;
	struct ps_fdinfo e = pattern(me), got;
	for (long i = 0; !atomic_load_explicit(&stop_threads, memory_order_relaxed); i++) {
		if (i & 1)
			ps_fd_set(500, &e);                  /* the shared slot */
		else
			ps_fd_set(600 + me, &e);             /* this thread's own */
		if (ps_fd_get(500, &got) && !uniform(&got))
			atomic_fetch_add(&torn, 1);
		if (ps_fd_get_head(500, &got) && got.cookie != (uint64_t)got.family * 0x0001000100010001u)
			atomic_fetch_add(&torn, 1);  /* the head alone: never two writers' halves */
		if (!ps_fd_get(600 + me, &got) || !uniform(&got) || got.family != e.family)
			atomic_fetch_add(&torn, 1);
	}
	return NULL;
}

START_TEST(test_threads_never_torn)
{
	pthread_t t[THREADS];
	/* qemu-user: five emulated threads spinning on one slot over two host CPUs make no
	 * progress worth a test (the native run is the check). */
	if (getenv("PS_UNIT_EMULATED"))
		return;
	for (uintptr_t i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, writer_reader, (void *)(i + 1)), 0);
	usleep(RUN_NS / 1000);
	atomic_store(&stop_threads, true);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(atomic_load(&torn), 0);
}
END_TEST

/* A handler that writes the slot the interrupted code is writing: it must not wait for
 * itself (the write is skipped or done), and the thread must go on. */
static atomic_long handler_writes;

static void rewrite(int sig)
{
	(void)sig;
	struct ps_fdinfo e = pattern(9), got;
	ps_fd_set(700, &e);
	if (ps_fd_get(700, &got) && uniform(&got))
		atomic_fetch_add(&handler_writes, 1);
}

START_TEST(test_signal_handler_reenters_a_write)
{
	struct sigaction sa = {.sa_handler = rewrite};
	struct itimerval it = {{0, 20}, {0, 20}};
	struct ps_fdinfo e = pattern(5), got;
	ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
	ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	long rounds = 0;
	for (long long end = ns_now() + RUN_NS; ns_now() < end; rounds++) {
		ps_fd_set(700, &e);
		if (ps_fd_get(700, &got))
			ck_assert(uniform(&got));
	}
	it = (struct itimerval){0};
	setitimer(ITIMER_REAL, &it, NULL);
	/* A write that waited for itself would never come back: rounds stop at one. */
	ck_assert_msg(atomic_load(&handler_writes) > 0, "the handler never ran");
	ck_assert_msg(rounds > 1000, "only %ld writes in a second", rounds);
}
END_TEST

/* fork while another thread writes: the child's table never waits for that thread. */
static atomic_bool stop_writing;

static void *busy_writer(void *arg)
{
	(void)arg;
	struct ps_fdinfo e = pattern(4);
	while (!atomic_load(&stop_writing))
		ps_fd_set(800, &e);
	return NULL;
}

START_TEST(test_fork_child_never_waits_for_a_writer)
{
	pthread_t t;
	if (getenv("PS_UNIT_EMULATED"))  /* qemu-user: a forked child hangs there */
		return;
	ck_assert_int_eq(pthread_create(&t, NULL, busy_writer, NULL), 0);
	for (int i = 0; i < 100; i++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct ps_fdinfo e = pattern(6), got;
			alarm(2);  /* a wait for the parent's writer would end here */
			ps_fd_fork_child();
			bool ok = ps_fd_set(800, &e) && ps_fd_get(800, &got) && uniform(&got) &&
				  got.family == e.family;
			_exit(ok ? 0 : 1);
		}
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %d", i, st);
	}
	atomic_store(&stop_writing, true);
	pthread_join(t, NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fdtable");
	TCase *tc = tcase_create("fdtable");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_set_get_clear);
	tcase_add_test(tc, test_range_clears);
	tcase_add_test(tc, test_threads_never_torn);
	tcase_add_test(tc, test_signal_handler_reenters_a_write);
	tcase_add_test(tc, test_fork_child_never_waits_for_a_writer);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
