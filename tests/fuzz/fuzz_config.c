/* libFuzzer: the configuration parsers (networks, ports, destinations, addr:port, and
 * every PROXYSHIM_* variable) on arbitrary text. Failures must explain themselves. */
#include "cidr.h"
#include "config.h"

#include <stdlib.h>
#include <string.h>

static char text[4096];
static const char *var_name;

static const char *get(const char *name)
{
	return !strcmp(name, var_name) ? text : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const vars[] = {
		"PROXYSHIM_TRUSTED", "PROXYSHIM_POLICY", "PROXYSHIM_UNTRUSTED",
		"PROXYSHIM_TIMEOUT_MS", "PROXYSHIM_PORTS", "PROXYSHIM_LOCAL", "PROXYSHIM_LOG",
		"PROXYSHIM_LOG_LEVEL", "PROXYSHIM_SEND_TO", "PROXYSHIM_SEND_VERSION",
		"PROXYSHIM_SEND_SOURCE", "PROXYSHIM_UDP_PORTS", "PROXYSHIM_UDP_MODE",
		"PROXYSHIM_UDP_IDLE_MS", "PROXYSHIM_SEND_UDP"};
	static struct ps_config c;
	static struct ps_netlist l;
	static struct ps_portset p;
	char err[400];
	struct ps_addr a = {0};
	if (size == 0 || size >= sizeof(text))
		return 0;
	var_name = vars[data[0] % (sizeof(vars) / sizeof(vars[0]))];
	memcpy(text, data + 1, size - 1);
	text[size - 1] = 0;
	err[0] = 0;
	if (ps_config_parse(&c, get, err, sizeof(err)) < 0 && strncmp(err, var_name, strlen(var_name)))
		abort();  /* the message names the variable */
	if (ps_netlist_parse(&l, text, err, sizeof(err)) == 0)
		ps_netlist_match(&l, &a);
	ps_portset_parse(&p, text, err, sizeof(err));
	ps_destlist_parse(&l, text, err, sizeof(err));
	ps_addrport_parse(&a, text, err, sizeof(err));
	return 0;
}
