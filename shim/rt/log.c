#include "log.h"
#include "lock.h"
#include "real.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#define LIMIT_WINDOW_S 10
#define LIMIT_BURST 20

static const struct ps_config *cfg;
static _Atomic int log_fd = -1;
static dev_t log_dev;
static ino_t log_ino;

/* Rate limiter state for ps_log_limited. */
static _Atomic long window;
static _Atomic unsigned in_window, dropped;

static int open_target(void)
{
	switch (cfg->log_target) {
	case PS_LOG_FILE:
		return open(cfg->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	case PS_LOG_SYSLOG: {
		struct sockaddr_un sun = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
		int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && real_connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			real_close(fd);
			fd = -1;
		}
		return fd;
	}
	default:
		/* A copy of stderr as it is now: the daemon may close or reuse fd 2 later. */
		return real_fcntl(2, F_DUPFD_CLOEXEC, 3);
	}
}

static void adopt(int fd)
{
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		log_dev = st.st_dev;
		log_ino = st.st_ino;
	}
	atomic_store(&log_fd, fd);
}

void ps_log_init(const struct ps_config *c)
{
	cfg = c;
	adopt(open_target());
}

/* The log descriptor if it is still the one we opened; reopened for a file or syslog
 * after the application closed it (stderr cannot be reopened). */
static int usable_fd(void)
{
	struct stat st;
	int fd = atomic_load(&log_fd);
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == log_dev && st.st_ino == log_ino)
		return fd;
	if (cfg->log_target == PS_LOG_STDERR)
		return -1;
	int nfd = open_target();
	int expected = fd;
	if (nfd >= 0 && !atomic_compare_exchange_strong(&log_fd, &expected, nfd)) {
		real_close(nfd);  /* another thread reopened first */
		return expected;
	}
	adopt(nfd);
	return nfd;
}

bool ps_log_enabled(enum ps_log_level level)
{
	return cfg && level <= cfg->log_level;
}

static void vlog(enum ps_log_level level, const char *fmt, va_list ap)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	static const int syslog_sev[] = {3, 4, 6, 7};
	char line[512];
	int n = 0, saved = errno;
	if (cfg->log_target == PS_LOG_SYSLOG)
		n = snprintf(line, sizeof(line), "<%d>", 3 * 8 + syslog_sev[level]);
	n += snprintf(line + n, sizeof(line) - (size_t)n, "proxyshim[%d]: %s: ", (int)getpid(),
		      names[level]);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	int fd = usable_fd();
	if (fd >= 0 && real_write(fd, line, (size_t)n) < 0) {}
	errno = saved;
}

void ps_log(enum ps_log_level level, const char *fmt, ...)
{
	va_list ap;
	if (!ps_log_enabled(level))
		return;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

void ps_log_limited(const char *fmt, ...)
{
	va_list ap;
	if (!ps_log_enabled(PS_LOG_WARN))
		return;
	long now = (long)(ps_now_ms_coarse() / 1000) / LIMIT_WINDOW_S, seen = atomic_load(&window);
	if (now != seen && atomic_compare_exchange_strong(&window, &seen, now)) {
		atomic_store(&in_window, 0);
		unsigned lost = atomic_exchange(&dropped, 0);
		if (lost)
			ps_log(PS_LOG_WARN, "%u similar warnings suppressed", lost);
	}
	if (atomic_fetch_add(&in_window, 1) >= LIMIT_BURST) {
		atomic_fetch_add(&dropped, 1);
		return;
	}
	va_start(ap, fmt);
	vlog(PS_LOG_WARN, fmt, ap);
	va_end(ap);
}

void ps_log_fd_closed(unsigned first, unsigned last)
{
	int fd = atomic_load(&log_fd);
	if (fd >= 0 && (unsigned)fd >= first && (unsigned)fd <= last)
		atomic_compare_exchange_strong(&log_fd, &fd, -1);
}
