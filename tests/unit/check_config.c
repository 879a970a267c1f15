/* Unit tests for the receiving-side configuration (shim/proto/config.h), with a fake
 * environment in place of secure_getenv. */
#include <stdio.h>

#include "config.h"
#include "unit.h"
#define TRUSTED "PROXYSHIM_TRUSTED"

/* The fake environment: the case's own variable first, then a valid TRUSTED so that
 * the library is active. A NULL name is an unused slot. */
static struct {
	const char *name, *value;
} env[2];

static const char *fake_getenv(const char *name)
{
	for (size_t i = 0; i < N(env); i++)
		if (env[i].name && strcmp(env[i].name, name) == 0)
			return env[i].value;
	return NULL;
}

static void set_env(const char *name, const char *value, bool with_trusted)
{
	env[0].name = name;
	env[0].value = value;
	env[1].name = with_trusted ? TRUSTED : NULL;
	env[1].value = "192.0.2.0/24";
}

static struct ps_config cfg;
static char err[8192];

/* Poisoned first, so a field the parser forgets to set shows up. */
static int parse(void)
{
	memset(&cfg, 0xA5, sizeof cfg);
	memset(err, 0, sizeof err);
	return ps_config_parse(&cfg, fake_getenv, err, sizeof err);
}

enum field { F_ACTIVE, F_POLICY, F_UNTRUSTED, F_TIMEOUT, F_LOCAL, F_LOG, F_LEVEL, F_UDP,
	     F_UDP_FIRST, F_UDP_IDLE, F_SEND_UDP, F_KEEP_MAX, F_UDP_FLOWS };

static long field(enum field f)
{
	switch (f) {
	case F_ACTIVE: return cfg.active;
	case F_POLICY: return cfg.policy;
	case F_UNTRUSTED: return cfg.untrusted;
	case F_TIMEOUT: return cfg.timeout_ms;
	case F_LOCAL: return cfg.local;
	case F_LOG: return cfg.log_target;
	case F_LEVEL: return cfg.log_level;
	case F_UDP: return cfg.udp_active;
	case F_UDP_FIRST: return cfg.udp_first;
	case F_UDP_IDLE: return cfg.udp_idle_ms;
	case F_SEND_UDP: return cfg.send_udp;
	case F_KEEP_MAX: return cfg.keep_max;
	case F_UDP_FLOWS: return cfg.udp_flows;
	}
	return -1;
}

static const struct {
	enum field f;
	long want;
} defaults[] = {
	{ F_POLICY, PS_POLICY_REQUIRE }, { F_UNTRUSTED, PS_UNTRUSTED_PASS },
	{ F_TIMEOUT, 3000 }, { F_LOCAL, PS_LOCAL_REAL }, { F_LOG, PS_LOG_STDERR },
	{ F_LEVEL, PS_LOG_WARN }, { F_UDP, false }, { F_UDP_FIRST, false },
	{ F_UDP_IDLE, 30000 }, { F_SEND_UDP, false }, { F_KEEP_MAX, 4096 },
	{ F_UDP_FLOWS, 4096 },
};

/* _i 0: nothing set (inert); _i 1: only TRUSTED set (active, rest default). */
START_TEST(test_defaults)
{
	set_env(NULL, NULL, _i == 1);
	ck_assert_msg(parse() == 0, "rejected: %s", err);
	ck_assert_int_eq(cfg.active, _i == 1);
	for (size_t k = 0; k < N(defaults); k++)
		ck_assert_msg(field(defaults[k].f) == defaults[k].want, "field %d is %ld, want %ld",
			      defaults[k].f, field(defaults[k].f), defaults[k].want);
	ck_assert(ps_portset_has(&cfg.ports, 0));
	ck_assert(ps_portset_has(&cfg.ports, 3306));
	ck_assert(ps_portset_has(&cfg.ports, 65535));
}
END_TEST

static const struct {
	const char *var, *value;
	enum field f;
	long want;
} good[] = {
	{ "PROXYSHIM_POLICY", "require", F_POLICY, PS_POLICY_REQUIRE },
	{ "PROXYSHIM_POLICY", "optional", F_POLICY, PS_POLICY_OPTIONAL },
	{ "PROXYSHIM_UNTRUSTED", "pass", F_UNTRUSTED, PS_UNTRUSTED_PASS },
	{ "PROXYSHIM_UNTRUSTED", "reject", F_UNTRUSTED, PS_UNTRUSTED_REJECT },
	{ "PROXYSHIM_TIMEOUT_MS", "1", F_TIMEOUT, 1 },
	{ "PROXYSHIM_TIMEOUT_MS", "3000", F_TIMEOUT, 3000 },
	{ "PROXYSHIM_TIMEOUT_MS", "600000", F_TIMEOUT, 600000 },
	{ "PROXYSHIM_LOCAL", "real", F_LOCAL, PS_LOCAL_REAL },
	{ "PROXYSHIM_LOCAL", "header", F_LOCAL, PS_LOCAL_HEADER },
	{ "PROXYSHIM_LOG", "stderr", F_LOG, PS_LOG_STDERR },
	{ "PROXYSHIM_LOG", "syslog", F_LOG, PS_LOG_SYSLOG },
	{ "PROXYSHIM_LOG", "/var/log/proxyshim.log", F_LOG, PS_LOG_FILE },
	{ "PROXYSHIM_LOG_LEVEL", "error", F_LEVEL, PS_LOG_ERROR },
	{ "PROXYSHIM_LOG_LEVEL", "warn", F_LEVEL, PS_LOG_WARN },
	{ "PROXYSHIM_LOG_LEVEL", "info", F_LEVEL, PS_LOG_INFO },
	{ "PROXYSHIM_LOG_LEVEL", "debug", F_LEVEL, PS_LOG_DEBUG },
	{ TRUSTED, "*", F_ACTIVE, true },
	{ TRUSTED, "10.0.0.0/8,2001:db8::/32,::1", F_ACTIVE, true },
	{ "PROXYSHIM_UDP_PORTS", "53,5300-5310", F_UDP, true },
	{ "PROXYSHIM_UDP_MODE", "every", F_UDP_FIRST, false },
	{ "PROXYSHIM_UDP_MODE", "first", F_UDP_FIRST, true },
	{ "PROXYSHIM_UDP_IDLE_MS", "1", F_UDP_IDLE, 1 },
	{ "PROXYSHIM_UDP_IDLE_MS", "86400000", F_UDP_IDLE, 86400000 },
	{ "PROXYSHIM_SEND_UDP", "off", F_SEND_UDP, false },
	{ "PROXYSHIM_SEND_UDP", "every", F_SEND_UDP, true },
	{ "PROXYSHIM_KEEP_MAX", "1", F_KEEP_MAX, 1 },
	{ "PROXYSHIM_KEEP_MAX", "1000000", F_KEEP_MAX, 1000000 },
	{ "PROXYSHIM_UDP_FLOWS", "16", F_UDP_FLOWS, 16 },
	{ "PROXYSHIM_UDP_FLOWS", "1000000", F_UDP_FLOWS, 1000000 },
};

START_TEST(test_good)
{
	set_env(good[_i].var, good[_i].value, strcmp(good[_i].var, TRUSTED) != 0);
	ck_assert_msg(parse() == 0, "%s=\"%s\" rejected: %s", good[_i].var, good[_i].value,
		      err);
	ck_assert_msg(field(good[_i].f) == good[_i].want, "%s=\"%s\": field is %ld, want %ld",
		      good[_i].var, good[_i].value, field(good[_i].f), good[_i].want);
}
END_TEST

START_TEST(test_trusted_stored)
{
	struct ps_addr in = { .family = AF_INET, .ip = { 192, 0, 2, 77 } };
	struct ps_addr out = { .family = AF_INET, .ip = { 198, 51, 100, 1 } };

	set_env(NULL, NULL, true);
	ck_assert_msg(parse() == 0, "rejected: %s", err);
	ck_assert(ps_netlist_match(&cfg.trusted, &in));
	ck_assert(!ps_netlist_match(&cfg.trusted, &out));
	set_env(TRUSTED, "*", false);
	ck_assert_msg(parse() == 0, "rejected: %s", err);
	ck_assert(cfg.trusted.any);
}
END_TEST

START_TEST(test_ports_stored)
{
	set_env("PROXYSHIM_PORTS", "3306,8000-8010", true);
	ck_assert_msg(parse() == 0, "rejected: %s", err);
	ck_assert(!cfg.ports.all);
	ck_assert(ps_portset_has(&cfg.ports, 3306));
	ck_assert(ps_portset_has(&cfg.ports, 8010));
	ck_assert(!ps_portset_has(&cfg.ports, 3307));
	ck_assert(!ps_portset_has(&cfg.ports, 80));
}
END_TEST

/* "/" followed by 'a's, total length n. */
static char *long_path(size_t n)
{
	char *p = malloc(n + 1);

	ck_assert(p != NULL);
	memset(p, 'a', n);
	p[0] = '/';
	p[n] = '\0';
	return p;
}

/* The longest path log_path can hold is kept whole; one byte more is an error, never a
 * silently truncated file name. */
START_TEST(test_log_path)
{
	char *fits = long_path(PS_PATH_MAX - 1), *over = long_path(PS_PATH_MAX);
	int rc_fits, rc_over;
	bool same;

	set_env("PROXYSHIM_LOG", fits, true);
	rc_fits = parse();
	same = strcmp(cfg.log_path, fits) == 0;
	set_env("PROXYSHIM_LOG", over, true);
	rc_over = parse();
	free(fits);
	free(over);
	ck_assert_msg(rc_fits == 0 && same, "%d-byte path not kept", PS_PATH_MAX - 1);
	ck_assert_msg(rc_over == -1, "%d-byte path accepted", PS_PATH_MAX);
	ck_assert(strncmp(err, "PROXYSHIM_LOG: \"/aaa", 20) == 0);
}
END_TEST

START_TEST(test_log_file_path)
{
	set_env("PROXYSHIM_LOG", "/var/log/proxyshim.log", true);
	ck_assert_msg(parse() == 0, "rejected: %s", err);
	ck_assert_str_eq(cfg.log_path, "/var/log/proxyshim.log");
}
END_TEST

/* mention: what the reason must contain, when the contract fixes it. */
static const struct {
	const char *var, *value, *mention;
} bad[] = {
	{ TRUSTED, "10.0.0.0/33", "0..32" },
	{ TRUSTED, "2001:db8::/129", "0..128" },
	{ TRUSTED, "", NULL },
	{ TRUSTED, "bogus", NULL },
	{ TRUSTED, "10.0.0.0/", NULL },
	{ TRUSTED, ",,", NULL },
	{ "PROXYSHIM_POLICY", "Require", NULL },
	{ "PROXYSHIM_POLICY", "strict", NULL },
	{ "PROXYSHIM_POLICY", "", NULL },
	{ "PROXYSHIM_UNTRUSTED", "drop", NULL },
	{ "PROXYSHIM_UNTRUSTED", "PASS", NULL },
	{ "PROXYSHIM_UNTRUSTED", "", NULL },
	{ "PROXYSHIM_TIMEOUT_MS", "0", NULL },
	{ "PROXYSHIM_TIMEOUT_MS", "600001", NULL },
	{ "PROXYSHIM_TIMEOUT_MS", "", NULL },
	{ "PROXYSHIM_TIMEOUT_MS", "abc", NULL },
	{ "PROXYSHIM_TIMEOUT_MS", "-1", NULL },
	{ "PROXYSHIM_TIMEOUT_MS", "10s", NULL },
	{ "PROXYSHIM_TIMEOUT_MS", "0x10", NULL },
	{ "PROXYSHIM_KEEP_MAX", "0", NULL },
	{ "PROXYSHIM_KEEP_MAX", "1000001", NULL },
	{ "PROXYSHIM_KEEP_MAX", "", NULL },
	{ "PROXYSHIM_KEEP_MAX", "1k", NULL },
	{ "PROXYSHIM_UDP_FLOWS", "15", NULL },
	{ "PROXYSHIM_UDP_FLOWS", "1000001", NULL },
	{ "PROXYSHIM_UDP_FLOWS", "-5", NULL },
	{ "PROXYSHIM_TIMEOUT_MS", "4294967297", NULL },  /* 2^32 + 1 */
	{ "PROXYSHIM_TIMEOUT_MS", "18446744073709551617", NULL },  /* 2^64 + 1 */
	{ "PROXYSHIM_PORTS", "70000", NULL },
	{ "PROXYSHIM_PORTS", "10-5", NULL },
	{ "PROXYSHIM_PORTS", "", NULL },
	{ "PROXYSHIM_PORTS", "a", NULL },
	{ "PROXYSHIM_LOCAL", "peer", NULL },
	{ "PROXYSHIM_LOCAL", "REAL", NULL },
	{ "PROXYSHIM_LOCAL", "", NULL },
	{ "PROXYSHIM_LOG", "relative/path.log", NULL },
	{ "PROXYSHIM_LOG", "proxyshim.log", NULL },
	{ "PROXYSHIM_LOG", "./proxyshim.log", NULL },
	{ "PROXYSHIM_LOG", "", NULL },
	{ "PROXYSHIM_LOG", "STDERR", NULL },
	{ "PROXYSHIM_LOG_LEVEL", "WARN", NULL },
	{ "PROXYSHIM_LOG_LEVEL", "warning", NULL },
	{ "PROXYSHIM_LOG_LEVEL", "trace", NULL },
	{ "PROXYSHIM_LOG_LEVEL", "3", NULL },
	{ "PROXYSHIM_LOG_LEVEL", "", NULL },
	{ "PROXYSHIM_UDP_PORTS", "", NULL },
	{ "PROXYSHIM_UDP_PORTS", "0", NULL },
	{ "PROXYSHIM_UDP_PORTS", "53,", NULL },
	{ "PROXYSHIM_UDP_MODE", "all", "every, first" },
	{ "PROXYSHIM_UDP_MODE", "", NULL },
	{ "PROXYSHIM_UDP_IDLE_MS", "0", "1..86400000" },
	{ "PROXYSHIM_UDP_IDLE_MS", "86400001", NULL },
	{ "PROXYSHIM_UDP_IDLE_MS", "30s", NULL },
	{ "PROXYSHIM_UDP_IDLE_MS", "", NULL },
	{ "PROXYSHIM_SEND_UDP", "on", "off, every" },
	{ "PROXYSHIM_SEND_UDP", "first", NULL },
	{ "PROXYSHIM_SEND_UDP", "", NULL },
};

/* err is exactly `VAR: "value": reason`, one line, with a non-empty reason. */
START_TEST(test_bad)
{
	char want[256];
	size_t n;

	set_env(bad[_i].var, bad[_i].value, strcmp(bad[_i].var, TRUSTED) != 0);
	n = (size_t)snprintf(want, sizeof want, "%s: \"%s\": ", bad[_i].var, bad[_i].value);
	ck_assert_msg(parse() == -1, "%s=\"%s\" accepted", bad[_i].var, bad[_i].value);
	ck_assert_msg(strncmp(err, want, n) == 0, "message \"%s\" does not start with \"%s\"",
		      err, want);
	ck_assert_msg(err[n] != '\0', "message \"%s\" has no reason", err);
	ck_assert_msg(strchr(err, '\n') == NULL, "message \"%s\" spans lines", err);
	if (bad[_i].mention)
		ck_assert_msg(strstr(err + n, bad[_i].mention) != NULL,
			      "reason \"%s\" does not mention %s", err + n, bad[_i].mention);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");

	add_loop(s, "defaults", test_defaults, 2);
	add_loop(s, "good values", test_good, N(good));
	add_loop(s, "trusted list", test_trusted_stored, 1);
	add_loop(s, "ports", test_ports_stored, 1);
	add_loop(s, "log file path", test_log_file_path, 1);
	add_loop(s, "log path length", test_log_path, 1);
	add_loop(s, "bad values", test_bad, N(bad));
	return run_suite(s);
}
