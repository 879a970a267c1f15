/* The client library's side of the exec interposers (shim/hooks_exec.c, shared with
 * the receiving library, which carries socket state in the environment instead): the
 * environment passes unchanged, and pending headers are dealt with first. */
#include "inherit.h"
#include "send.h"

size_t ps_env_count(char *const *envp)
{
	size_t n = 0;
	while (envp && envp[n])
		n++;
	return n;
}

char *const *ps_child_env(char *const *envp, char **out, size_t cap, char *var)
{
	(void)out, (void)cap, (void)var;
	ps_send_exec();
	return envp;
}
