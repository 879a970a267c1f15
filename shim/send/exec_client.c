/* The client library's side of the exec interposers (shim/rt/hooks_exec.c, shared with
 * the receiving library, which carries socket state in the environment instead): the
 * environment passes unchanged, and pending headers are dealt with first. */
#include "inherit.h"
#include "send.h"

size_t ps_exec_prepare(void)
{
	ps_send_exec();
	return 0;
}

bool ps_exec_active(void)
{
	return ps_send_active() != NULL;
}

/* Never called: ps_exec_prepare asks for no room. */
size_t ps_child_env_vars(size_t room)
{
	(void)room;
	return 0;
}

char *const *ps_child_env(char *const *envp, char **out, size_t cap, char *buf,
			  size_t room)
{
	(void)out, (void)cap, (void)buf, (void)room;
	return envp;
}
