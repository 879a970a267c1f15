/* proxyshim: run a command with the PROXY protocol shim preloaded.
 * Sets PROXYSHIM_* from flags, validates them with the libraries' own parser, appends
 * the library to LD_PRELOAD and execs the command: no process in between, so the PID,
 * signals and exit status stay the command's. */
#include "config.h"
#include "elfinfo.h"

#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef PS_VERSION
#error "PS_VERSION: the Makefile passes the VERSION file's string"
#endif

static const char usage[] =
	"usage: proxyshim [options] -- command [args...]\n"
	"       proxyshim --check [options]\n"
	"Receiving side (libproxyshim.so):\n"
	"  --trust CIDRS        PROXYSHIM_TRUSTED: proxies allowed to send headers\n"
	"  --policy P           PROXYSHIM_POLICY: require | optional\n"
	"  --untrusted U        PROXYSHIM_UNTRUSTED: pass | reject\n"
	"  --timeout MS         PROXYSHIM_TIMEOUT_MS: 1..600000\n"
	"  --ports LIST         PROXYSHIM_PORTS: listener ports or ranges\n"
	"  --local L            PROXYSHIM_LOCAL: real | header\n"
	"  --udp-ports LIST     PROXYSHIM_UDP_PORTS: UDP ports whose datagrams carry v2 headers\n"
	"  --udp-mode M         PROXYSHIM_UDP_MODE: every | first\n"
	"  --udp-idle MS        PROXYSHIM_UDP_IDLE_MS: a flow's idle time, 1..86400000\n"
	"Sending side (libproxyshim-client.so):\n"
	"  --send-to DESTS      PROXYSHIM_SEND_TO: ADDR, CIDR, ADDR:PORT, [V6]:PORT, *\n"
	"  --send-version V     PROXYSHIM_SEND_VERSION: 1 | 2\n"
	"  --send-source S      PROXYSHIM_SEND_SOURCE: local | accepted | ADDR:PORT\n"
	"  --send-udp U         PROXYSHIM_SEND_UDP: off | every (a v2 header on each datagram)\n"
	"  --client             preload only the sending library\n"
	"  --both               preload both libraries (a relay)\n"
	"Both:\n"
	"  --log TARGET         PROXYSHIM_LOG: stderr | syslog | /absolute/path\n"
	"  --log-level L        PROXYSHIM_LOG_LEVEL: error | warn | info | debug\n"
	"  --check              validate the configuration, print it, run nothing\n"
	"  --force              run a command the shim cannot reach (Go, static, setuid,\n"
	"                       another word size) with a warning instead of refusing it\n"
	"  --version, --help\n";

/* Flag → variable; the order of struct option entries below. */
static const char *const flag_var[] = {
	"PROXYSHIM_TRUSTED", "PROXYSHIM_POLICY", "PROXYSHIM_UNTRUSTED",
	"PROXYSHIM_TIMEOUT_MS", "PROXYSHIM_PORTS", "PROXYSHIM_LOCAL", "PROXYSHIM_LOG",
	"PROXYSHIM_LOG_LEVEL", "PROXYSHIM_SEND_TO", "PROXYSHIM_SEND_VERSION",
	"PROXYSHIM_SEND_SOURCE", "PROXYSHIM_UDP_PORTS", "PROXYSHIM_UDP_MODE",
	"PROXYSHIM_UDP_IDLE_MS", "PROXYSHIM_SEND_UDP",
};
enum { OPT_CLIENT = 100, OPT_BOTH, OPT_CHECK, OPT_VERSION, OPT_HELP, OPT_FORCE };

static const struct option options[] = {
	{"trust", 1, 0, 0}, {"policy", 1, 0, 1}, {"untrusted", 1, 0, 2}, {"timeout", 1, 0, 3},
	{"ports", 1, 0, 4}, {"local", 1, 0, 5}, {"log", 1, 0, 6}, {"log-level", 1, 0, 7},
	{"send-to", 1, 0, 8}, {"send-version", 1, 0, 9}, {"send-source", 1, 0, 10},
	{"udp-ports", 1, 0, 11}, {"udp-mode", 1, 0, 12}, {"udp-idle", 1, 0, 13},
	{"send-udp", 1, 0, 14},
	{"client", 0, 0, OPT_CLIENT}, {"both", 0, 0, OPT_BOTH}, {"check", 0, 0, OPT_CHECK},
	{"version", 0, 0, OPT_VERSION}, {"help", 0, 0, OPT_HELP}, {"force", 0, 0, OPT_FORCE},
	{0, 0, 0, 0},
};

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "proxyshim: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static const char *env(const char *name)
{
	return getenv(name);
}

/* The libraries sit in ../lib/proxyshim/ of the installed command, or beside it in a
 * build tree; never looked up in the current directory. */
/* PS_LIBDIR (a package: make PS_LIBDIR=/usr/lib/<triplet>/proxyshim): the libraries
 * are there and nowhere else. Otherwise they are found next to the command: ../lib/proxyshim
 * (make install, any PREFIX) or the command's own directory (a build tree). */
static void find_lib(const char *name, char *out, size_t len)
{
	char exe[PATH_MAX], found[PATH_MAX], *dir;
#ifdef PS_LIBDIR
	snprintf(out, len, "%s/%s", PS_LIBDIR, name);
	if (!realpath(out, found))
		die("library %s not found", out);
	snprintf(out, len, "%s", found);
	if (strpbrk(out, ": "))
		die("library path \"%s\" has a ':' or a space, which LD_PRELOAD cannot carry", out);
	return;
#endif
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		die("cannot find my own location: %s", strerror(errno));
	exe[n] = 0;
	dir = dirname(exe);
	snprintf(out, len, "%s/../lib/proxyshim/%s", dir, name);
	if (access(out, R_OK) != 0)
		snprintf(out, len, "%s/%s", dir, name);  /* a build tree */
	if (!realpath(out, found))
		die("library %s not found next to the proxyshim command", name);
	snprintf(out, len, "%s", found);
	if (strpbrk(out, ": "))
		die("library path \"%s\" has a ':' or a space, which LD_PRELOAD cannot carry", out);
}

static void add_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD");
	size_t len = strlen(lib) + (old ? strlen(old) + 1 : 0) + 1;
	char *v = malloc(len);
	if (!v)
		die("%s", strerror(ENOMEM));
	snprintf(v, len, "%s%s%s", old && *old ? old : "", old && *old ? " " : "", lib);
	setenv("LD_PRELOAD", v, 1);
	free(v);
}

/* The file the loader would run for cmd: PATH lookup, then one #! interpreter. */
static int resolve(const char *cmd, char *out, size_t len)
{
	if (strchr(cmd, '/'))
		return snprintf(out, len, "%s", cmd), access(out, X_OK);
	const char *path = getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin";
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		snprintf(out, len, "%.*s/%s", (int)n, n ? p : ".", cmd);
		if (access(out, X_OK) == 0)
			return 0;
		p += n + (p[n] == ':');
	}
	return -1;
}

static int force;

/* Refuses to run a target the shim cannot reach: one line saying why, exit 1. With
 * --force the line is a warning and the target runs (without the shim, or with a
 * shim that never sees its connections): the user asked for it, and is told. */
__attribute__((format(printf, 1, 2))) static void unreachable(const char *fmt, ...)
{
	char why[PATH_MAX + 200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (!force)
		die("%s", why);
	fprintf(stderr, "proxyshim: warning: %s (--force: running it anyway)\n", why);
}

/* The facts ps_elf_inspect finds in this command's own file: the libraries were
 * built alongside it, so a target of another class or machine cannot load them. */
static struct ps_elf self_elf;

static enum ps_elf_result inspect(const char *path, struct ps_elf *e)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	enum ps_elf_result r = PS_ELF_NOT_ELF;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return PS_ELF_BAD;
	}
	void *map = st.st_size > 0 ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
					  fd, 0)
				   : MAP_FAILED;
	close(fd);
	if (map != MAP_FAILED) {
		r = ps_elf_inspect(map, (size_t)st.st_size, e);
		munmap(map, (size_t)st.st_size);
	}
	return r;
}

static void check_elf(const char *path, const struct ps_elf *e)
{
	if (self_elf.elf_class && e->elf_class != self_elf.elf_class)
		unreachable("%s is a %d-bit program and the library %d-bit: the loader cannot "
			    "preload it", path, e->elf_class == ELFCLASS32 ? 32 : 64,
			    self_elf.elf_class == ELFCLASS32 ? 32 : 64);
	else if (self_elf.elf_class && e->machine != self_elf.machine)
		unreachable("%s is built for another machine (ELF machine %u, the library's %u): "
			    "the loader cannot preload it", path, e->machine, self_elf.machine);
	else if (e->go)
		unreachable("%s is a Go program: its runtime makes system calls directly, so "
			    "the shim never sees its connections", path);
	else if (!e->dynamic)
		unreachable("%s is statically linked: LD_PRELOAD cannot reach it", path);
}

/* Refuses a target the loader would run without LD_PRELOAD, or one whose connections
 * never pass through libc. */
static void check_target(const char *cmd, int depth)
{
	char path[PATH_MAX], line[PATH_MAX];
	struct stat st;
	struct ps_elf e;
	if (resolve(cmd, path, sizeof(path)) < 0 || stat(path, &st) < 0)
		die("%s: command not found", cmd);
	if (st.st_mode & (S_ISUID | S_ISGID))
		unreachable("%s is setuid/setgid: the loader ignores LD_PRELOAD for it", path);
	if (getxattr(path, "security.capability", NULL, 0) >= 0)
		unreachable("%s has file capabilities (setcap): the loader ignores LD_PRELOAD "
			    "for it", path);
	enum ps_elf_result r = inspect(path, &e);
	if (r == PS_ELF_OK)
		return check_elf(path, &e);
	if (r == PS_ELF_BAD)
		return unreachable("%s: cannot read it as a program (unreadable, or ELF headers "
				   "that do not parse)", path);
	FILE *f = fopen(path, "rb");
	char *got = f ? fgets(line, sizeof(line), f) : NULL;
	if (f)
		fclose(f);
	if (got && !strncmp(line, "#!", 2) && depth == 0) {
		char *interp = strtok(line + 2, " \t\n");
		if (interp)
			check_target(interp, 1);
	}
}

static void print_config(void)
{
	static const char *const defaults[] = {"(unset: inert)", "require", "pass", "3000",
					       "(every TCP listener)", "real", "stderr", "warn",
					       "(unset: inert)", "1", "local",
					       "(unset: UDP untouched)", "every", "30000", "off"};
	for (size_t i = 0; i < sizeof(flag_var) / sizeof(flag_var[0]); i++) {
		const char *v = getenv(flag_var[i]);
		printf("%-24s %s\n", flag_var[i], v ? v : defaults[i]);
	}
	const char *pre = getenv("LD_PRELOAD");
	printf("%-24s %s\n", "LD_PRELOAD", pre ? pre : "");
}

int main(int argc, char **argv)
{
	int opt, check = 0, client = 0, both = 0;
	char err[400], lib[PATH_MAX];
	struct ps_config cfg;
	while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		if (opt >= 0 && opt < (int)(sizeof(flag_var) / sizeof(flag_var[0])))
			setenv(flag_var[opt], optarg, 1);
		else if (opt == OPT_CLIENT)
			client = 1;
		else if (opt == OPT_BOTH)
			both = 1;
		else if (opt == OPT_CHECK)
			check = 1;
		else if (opt == OPT_FORCE)
			force = 1;
		else if (opt == OPT_VERSION)
			return puts("proxyshim " PS_VERSION) < 0;
		else if (opt == OPT_HELP)
			return fputs(usage, stdout) < 0;
		else
			return fputs(usage, stderr), 2;
	}
	if (ps_config_parse(&cfg, env, err, sizeof(err)) < 0)
		die("%s", err);
	if (!check && optind >= argc)
		return fputs(usage, stderr), 2;
	if (!client || both) {
		find_lib("libproxyshim.so", lib, sizeof(lib));
		add_preload(lib);
	}
	if (client || both) {
		find_lib("libproxyshim-client.so", lib, sizeof(lib));
		add_preload(lib);
	}
	if (check) {
		print_config();
		return 0;
	}
	if (inspect("/proc/self/exe", &self_elf) != PS_ELF_OK)
		self_elf.elf_class = 0;  /* no /proc: the word size and machine go unchecked */
	check_target(argv[optind], 0);
	unsetenv(PS_CHAIN_VAR);  /* the command starts a chain of its own */
	execvp(argv[optind], argv + optind);
	die("cannot run it: %s", strerror(errno));
}
