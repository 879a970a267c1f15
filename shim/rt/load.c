/* The first step of both libraries' constructors: resolve libc, then parse every
 * PROXYSHIM_* variable. A bad value stops the process: a security control never
 * silently degrades. */
#include "real.h"
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>

static const char *env(const char *name)
{
	return secure_getenv(name);
}

void ps_load(struct ps_config *c)
{
	char err[400], line[480];
	ps_real_resolve();
	if (ps_config_parse(c, env, err, sizeof(err)) < 0) {
		int n = snprintf(line, sizeof(line), "proxyshim: %s\n", err);
		if (real_write(2, line, (size_t)n) < 0) {}
		_exit(1);
	}
}
