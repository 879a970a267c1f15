/* Receiving-side configuration from PROXYSHIM_* variables. */
#include "config.h"

#include <stdio.h>
#include <string.h>

/* Writes `NAME: "value": reason` into err and returns -1. */
static int fail(char *err, size_t errlen, const char *name, const char *val,
		const char *reason)
{
	snprintf(err, errlen, "%s: \"%s\": %s", name, val, reason);
	return -1;
}

/* Index of the variable's value in a NULL-terminated word list, def when unset, -1
 * with the message in err if it is none of them. */
static int pick(ps_getenv_fn get, const char *name, const char *const words[], int def,
		char *err, size_t errlen)
{
	char reason[128] = "must be one of:";
	const char *val = get(name);
	if (!val)
		return def;
	for (int i = 0; words[i]; i++) {
		if (!strcmp(val, words[i]))
			return i;
		strncat(reason, i ? ", " : " ", sizeof(reason) - strlen(reason) - 1);
		strncat(reason, words[i], sizeof(reason) - strlen(reason) - 1);
	}
	return fail(err, errlen, name, val, reason);
}

/* A whole number of milliseconds in 1..max; def when unset. */
/* A whole number in min..max of 'what' (milliseconds, connections…); def when unset. */
static int parse_num(ps_getenv_fn get, const char *name, const char *what, unsigned long min,
		     unsigned long max, unsigned def, unsigned *out, char *err, size_t errlen)
{
	char reason[96];
	const char *val = get(name);
	unsigned long v = 0;
	*out = def;
	if (!val)
		return 0;
	snprintf(reason, sizeof(reason), "must be a whole number of %s, %lu..%lu", what, min, max);
	for (const char *p = val; *p; p++)
		if (*p < '0' || *p > '9' || (v = v * 10 + (unsigned long)(*p - '0')) > max)
			return fail(err, errlen, name, val, reason);
	if (!*val || v < min)
		return fail(err, errlen, name, val, reason);
	*out = (unsigned)v;
	return 0;
}

static int parse_ms(ps_getenv_fn get, const char *name, unsigned long max, unsigned def,
		    unsigned *out, char *err, size_t errlen)
{
	return parse_num(get, name, "milliseconds", 1, max, def, out, err, errlen);
}

static int parse_log(struct ps_config *c, ps_getenv_fn get, char *err, size_t errlen)
{
	const char *val = get("PROXYSHIM_LOG");
	c->log_target = PS_LOG_STDERR;
	if (!val || !strcmp(val, "stderr"))
		return 0;
	if (!strcmp(val, "syslog")) {
		c->log_target = PS_LOG_SYSLOG;
		return 0;
	}
	if (val[0] != '/' || strlen(val) >= sizeof(c->log_path))
		return fail(err, errlen, "PROXYSHIM_LOG", val,
			    "must be stderr, syslog or an absolute file path");
	c->log_target = PS_LOG_FILE;
	strcpy(c->log_path, val);
	return 0;
}

/* A list variable: unset leaves the default; a parse error names variable and value. */
static int parse_list(ps_getenv_fn get, const char *name, void *out,
		      int (*parse)(void *, const char *, char *, size_t), char *err,
		      size_t errlen)
{
	char reason[200];
	const char *val = get(name);
	if (!val)
		return 0;
	if (!*val)
		return fail(err, errlen, name, val, "empty list");
	if (parse(out, val, reason, sizeof(reason)))
		return fail(err, errlen, name, val, reason);
	return 0;
}

static int destlist_parse(void *l, const char *s, char *err, size_t errlen)
{
	return ps_destlist_parse(l, s, err, errlen);
}

static int parse_source(struct ps_config *c, ps_getenv_fn get, char *err, size_t errlen)
{
	char reason[100];
	const char *val = get("PROXYSHIM_SEND_SOURCE");
	c->send_source = PS_SOURCE_LOCAL;
	if (!val || !strcmp(val, "local"))
		return 0;
	if (!strcmp(val, "accepted")) {
		c->send_source = PS_SOURCE_ACCEPTED;
		return 0;
	}
	if (ps_addrport_parse(&c->send_fixed, val, reason, sizeof(reason)) < 0)
		return fail(err, errlen, "PROXYSHIM_SEND_SOURCE", val,
			    "must be local, accepted or ADDR:PORT");
	c->send_source = PS_SOURCE_FIXED;
	return 0;
}

static int netlist_parse(void *l, const char *s, char *err, size_t errlen)
{
	return ps_netlist_parse(l, s, err, errlen);
}

static int portset_parse(void *p, const char *s, char *err, size_t errlen)
{
	return ps_portset_parse(p, s, err, errlen);
}

int ps_config_parse(struct ps_config *c, ps_getenv_fn get, char *err, size_t errlen)
{
	static const char *const policy[] = {"require", "optional", NULL};
	static const char *const untrusted[] = {"pass", "reject", NULL};
	static const char *const local[] = {"real", "header", NULL};
	static const char *const version[] = {"1", "2", NULL};
	static const char *const udp_mode[] = {"every", "first", NULL};
	static const char *const send_udp[] = {"off", "every", NULL};
	/* In enum ps_log_level order. */
	static const char *const level[] = {"error", "warn", "info", "debug", NULL};
	int p, u, l, v, sv, um, su;
	memset(c, 0, sizeof(*c));
	c->ports.all = true;
	c->active = get("PROXYSHIM_TRUSTED") != NULL;
	c->send_active = get("PROXYSHIM_SEND_TO") != NULL;
	if (parse_list(get, "PROXYSHIM_TRUSTED", &c->trusted, netlist_parse, err, errlen) ||
	    parse_list(get, "PROXYSHIM_PORTS", &c->ports, portset_parse, err, errlen) ||
	    (p = pick(get, "PROXYSHIM_POLICY", policy, 0, err, errlen)) < 0 ||
	    (u = pick(get, "PROXYSHIM_UNTRUSTED", untrusted, 0, err, errlen)) < 0 ||
	    (l = pick(get, "PROXYSHIM_LOCAL", local, 0, err, errlen)) < 0 ||
	    (v = pick(get, "PROXYSHIM_LOG_LEVEL", level, PS_LOG_WARN, err, errlen)) < 0 ||
	    parse_ms(get, "PROXYSHIM_TIMEOUT_MS", 600000, 3000, &c->timeout_ms, err, errlen) ||
	    parse_num(get, "PROXYSHIM_KEEP_MAX", "connections", 1, PS_KEEP_MAX_LIMIT, 4096,
		      &c->keep_max, err, errlen) ||
	    parse_log(c, get, err, errlen) ||
	    parse_list(get, "PROXYSHIM_UDP_PORTS", &c->udp_ports, portset_parse, err, errlen) ||
	    (um = pick(get, "PROXYSHIM_UDP_MODE", udp_mode, 0, err, errlen)) < 0 ||
	    parse_ms(get, "PROXYSHIM_UDP_IDLE_MS", 86400000, 30000, &c->udp_idle_ms, err,
		     errlen) ||
	    parse_num(get, "PROXYSHIM_UDP_FLOWS", "flows", 16, PS_UDP_FLOWS_LIMIT, 4096,
		      &c->udp_flows, err, errlen) ||
	    (su = pick(get, "PROXYSHIM_SEND_UDP", send_udp, 0, err, errlen)) < 0 ||
	    parse_list(get, "PROXYSHIM_SEND_TO", &c->send_to, destlist_parse, err, errlen) ||
	    (sv = pick(get, "PROXYSHIM_SEND_VERSION", version, 0, err, errlen)) < 0 ||
	    parse_source(c, get, err, errlen))
		return -1;
	c->send_version = (unsigned)sv + 1;
	c->udp_active = get("PROXYSHIM_UDP_PORTS") != NULL;
	c->udp_first = um == 1;
	c->send_udp = su == 1;
	c->policy = p ? PS_POLICY_OPTIONAL : PS_POLICY_REQUIRE;
	c->untrusted = u ? PS_UNTRUSTED_REJECT : PS_UNTRUSTED_PASS;
	c->local = l ? PS_LOCAL_HEADER : PS_LOCAL_REAL;
	c->log_level = (enum ps_log_level)v;
	return 0;
}
