/* Logging: each line one write() to a descriptor the shim owns (O_CLOEXEC), checked
 * by identity before use because daemons close or reuse descriptors. No stdio, no
 * malloc, no lock; errno is preserved. */
#ifndef PS_LOG_H
#define PS_LOG_H

#include <stdbool.h>
#include "config.h"

void ps_log_init(const struct ps_config *c);

void ps_log(enum ps_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Like ps_log at warn level, but at most a burst per window; the count of lines
 * dropped is reported when the next window opens. For per-connection faults a peer
 * can provoke. */
void ps_log_limited(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool ps_log_enabled(enum ps_log_level level);

/* The application closed fd (or the range [first, last]): if it was ours, stop using it. */
void ps_log_fd_closed(unsigned first, unsigned last);

#endif
