# proxyshim — no configure step. Users' CFLAGS/LDFLAGS are added to ours, never replace them.
CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
CFLAGS  ?= -O2 -g
# The one version string (VERSION): the command's --version, the libraries' 'active in'
# log line, make dist and debian/changelog (checked by tests/integration/cmd_proxyshim.bats).
VERSION := $(shell cat VERSION)
PS_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC -DPS_VERSION='"$(VERSION)"' $(CFLAGS)
SO_FLAGS = -shared -fvisibility=hidden -Wl,-z,relro,-z,now,-z,noexecstack,-z,defs

# One folder per part (docs/architecture.md), one wildcard each:
#   shim/proto  pure code (protocol, addresses, configuration, flows): no libc interposed,
#               compiled with its own folder as the only include path, so that it cannot
#               reach the runtime; linked into the libraries, the command, unit tests, fuzzers
#   shim/rt     the runtime both libraries share (libc layer, fd table, lock, log, fd and
#               exec hooks)
#   shim/recv   the receiving library      shim/send   the sending library
PURE_SRC   = $(wildcard shim/proto/*.c)
RT_SRC     = $(wildcard shim/rt/*.c)
LIB_SRC    = $(PURE_SRC) $(RT_SRC) $(wildcard shim/recv/*.c)
CLIENT_SRC = $(PURE_SRC) $(RT_SRC) $(wildcard shim/send/*.c)
PURE_INC   = -Ishim/proto
LIB_INC    = -Ishim/proto -Ishim/rt -Ishim/recv
CLIENT_INC = -Ishim/proto -Ishim/rt -Ishim/send
# Pure code of the command (ELF facts about its target): in the command and its tests.
CMD_PURE_SRC = cmd/elfinfo.c
HDRS     = $(wildcard shim/*/*.h)

UNIT_TESTS = $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(wildcard tests/unit/check_*.c))
HELPERS    = $(patsubst tests/helpers/%.c,$(BUILD)/%,$(wildcard tests/helpers/*.c)) \
             $(patsubst tests/helpers/preload/%.c,$(BUILD)/%.so,$(wildcard tests/helpers/preload/*.c))
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

.PHONY: all test deps demo bench soak memcheck check-symbols check-unit check-integration sanitize fuzz install uninstall dist clean \
        cross-deps cross-build cross-test deb-deps deb deb-test
PRODUCT = $(BUILD)/libproxyshim.so $(BUILD)/libproxyshim-client.so $(BUILD)/proxyshim
all: $(PRODUCT) $(HELPERS)

# PS_LIBDIR: a fixed directory the command takes the libraries from (the Debian package);
# empty: next to the command (make install, a build tree).
PS_LIBDIR ?=
CMD_DEFS = $(if $(PS_LIBDIR),-DPS_LIBDIR='"$(PS_LIBDIR)"')
$(BUILD)/proxyshim: VERSION cmd/proxyshim.c $(CMD_PURE_SRC) $(PURE_SRC) $(HDRS) cmd/elfinfo.h
	@mkdir -p $(@D)
	$(CC) $(PS_CFLAGS) $(CPPFLAGS) $(CMD_DEFS) $(PURE_INC) -Wl,-z,relro,-z,now -o $@ cmd/proxyshim.c \
	  $(CMD_PURE_SRC) $(PURE_SRC) $(LDFLAGS)

$(BUILD)/libproxyshim.so: VERSION $(LIB_SRC) $(HDRS) shim/recv/exports.map
	@mkdir -p $(@D)
	$(CC) $(PS_CFLAGS) $(LIB_INC) $(SO_FLAGS) -Wl,--version-script=shim/recv/exports.map \
	  -Wl,-soname,libproxyshim.so -o $@ $(LIB_SRC) -ldl $(LDFLAGS)

$(BUILD)/libproxyshim-client.so: VERSION $(CLIENT_SRC) $(HDRS) shim/send/exports-client.map
	@mkdir -p $(@D)
	$(CC) $(PS_CFLAGS) $(CLIENT_INC) $(SO_FLAGS) -Wl,--version-script=shim/send/exports-client.map \
	  -Wl,-soname,libproxyshim-client.so -o $@ $(CLIENT_SRC) -ldl $(LDFLAGS)

# (forgeinherit checks its entry layout against the fd table's.)
$(BUILD)/%: tests/helpers/%.c $(wildcard tests/helpers/*.h)
	@mkdir -p $(@D)
	$(CC) $(PS_CFLAGS) $(PURE_INC) -Ishim/rt -o $@ $< -lpthread $(LDFLAGS)

$(BUILD)/%.so: tests/helpers/preload/%.c
	@mkdir -p $(@D)
	$(CC) $(PS_CFLAGS) -shared -o $@ $< $(LDFLAGS)

$(BUILD)/unit/%: tests/unit/%.c tests/unit/unit.h $(PURE_SRC) $(CMD_PURE_SRC) $(HDRS) cmd/elfinfo.h
	@mkdir -p $(@D)
	$(CC) $(PS_CFLAGS) $(PURE_INC) -Icmd -o $@ $< $(PURE_SRC) $(CMD_PURE_SRC) $(CHECK_LIBS) $(LDFLAGS)

# Unit tests of runtime parts (the fd table, taking a header off a socket): linked with
# the runtime they test, not with the interposers.
RT_UNIT = $(BUILD)/unit/check_fdtable $(BUILD)/unit/check_consume
RT_UNIT_SRC = $(PURE_SRC) shim/rt/fdtable.c shim/rt/lock.c shim/rt/real.c shim/rt/log.c \
              shim/recv/consume.c
$(RT_UNIT): $(BUILD)/unit/%: tests/unit/%.c tests/unit/unit.h $(RT_UNIT_SRC) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(PS_CFLAGS) $(LIB_INC) -o $@ $< $(RT_UNIT_SRC) $(CHECK_LIBS) -ldl -lpthread $(LDFLAGS)

# Installs missing build and test dependencies (Debian), then builds and runs everything.
test: deps
	$(MAKE) all check-symbols check-unit check-integration

deps:
	@scripts/install-deps

# HAProxy + MariaDB + nginx on loopback, without and with the shim, side by side.
demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/libproxyshim.so
	@PS_BUILD=$(abspath $(BUILD)) scripts/demo

# Benchmarks: connections/s against nginx, the test servers and MariaDB with
# and without the shim, syscalls, instructions, bulk throughput, state, UDP, scale (held
# connections, listeners, poll/select servers against native support); one table, also
# written to $(BUILD)/bench.txt. Run on a quiet machine; BENCH_* variables: scripts/bench.
bench: all
	@PS_BUILD=$(abspath $(BUILD)) scripts/bench

# Soak: SOAK_CONNS mixed connections (valid v1/v2, LOCAL, untrusted, malformed,
# slow, never completed) through HAProxy and directly at the threaded and epoll test
# servers under the shim; checks addresses, accounting, fds and RSS. SOAK_* variables:
# scripts/soak. CI runs SOAK_CONNS=5000.
SOAK_CONNS ?= 100000
soak: all
	@PS_BUILD=$(abspath $(BUILD)) SOAK_CONNS=$(SOAK_CONNS) scripts/soak

# valgrind memcheck: part of the integration suite and a short soak with the
# servers (test servers, nginx, redis) under valgrind; "clean" or the errors.
memcheck: deps
	@$(MAKE) --no-print-directory all
	@PS_BUILD=$(abspath $(BUILD)) scripts/memcheck

# No library calls its own interposers (a documented list aside): scripts/check-symbols.
check-symbols: $(BUILD)/libproxyshim.so $(BUILD)/libproxyshim-client.so
	@scripts/check-symbols $^

check-unit: $(UNIT_TESTS)
	@rc=0; for t in $(UNIT_TESTS); do echo "== $$t"; $$t || rc=1; done; exit $$rc

check-integration: all
	PS_BUILD=$(abspath $(BUILD)) bats tests/integration

# The whole suite again with ASan+UBSan in the library and the test programs. The
# ASan runtime must come first in LD_PRELOAD (tests/integration/helpers.bash does it).
SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
sanitize: deps
	$(MAKE) BUILD=$(BUILD)/san CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
	  SO_FLAGS="-shared -fvisibility=hidden -Wl,-z,relro,-z,now,-z,noexecstack" \
	  all check-unit
	PS_BUILD=$(abspath $(BUILD))/san PS_ASAN_RUNTIME=$$($(CC) -print-file-name=libasan.so) \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  bats tests/integration

# libFuzzer targets (clang); FUZZ_SECONDS each. Seeds: tests/fuzz/seeds/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_FLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined $(PURE_INC) -Icmd

$(BUILD)/fuzz/%: tests/fuzz/%.c $(PURE_SRC) $(CMD_PURE_SRC) $(HDRS)
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -o $@ $< $(PURE_SRC) $(CMD_PURE_SRC)

fuzz: deps $(addprefix $(BUILD)/fuzz/,$(FUZZ_TARGETS))
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(BUILD)/fuzz/corpus-$$t; \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  st=0; $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -max_len=70000 -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus-$$t \
	    tests/fuzz/seeds/$$t >$(BUILD)/fuzz/$$t.log 2>&1 || st=$$?; \
	  grep -E '^(stat::number_of_executed_units|==|SUMMARY|Done)' $(BUILD)/fuzz/$$t.log; \
	  if [ $$st -ne 0 ]; then \
	    echo "fuzz: $$t failed (status $$st): $(BUILD)/fuzz/$$t.log"; \
	    grep -E -A12 '^==[0-9]+== ?ERROR' $(BUILD)/fuzz/$$t.log; rc=1; \
	  fi; \
	done; exit $$rc

LIBDIR  = $(PREFIX)/lib/proxyshim
MANDIR  = $(PREFIX)/share/man
INSTALLED = $(LIBDIR)/libproxyshim.so $(LIBDIR)/libproxyshim-client.so \
            $(PREFIX)/bin/proxyshim $(MANDIR)/man1/proxyshim.1 $(MANDIR)/man7/proxyshim.7

# Copies to a new file, then renames: a library mapped by a running daemon is never
# overwritten in place.
define put
install -D -m $(1) $(2) $(DESTDIR)$(3).new && mv -f $(DESTDIR)$(3).new $(DESTDIR)$(3)
endef

install: $(PRODUCT)
	$(call put,0755,$(BUILD)/libproxyshim.so,$(LIBDIR)/libproxyshim.so)
	$(call put,0755,$(BUILD)/libproxyshim-client.so,$(LIBDIR)/libproxyshim-client.so)
	$(call put,0755,$(BUILD)/proxyshim,$(PREFIX)/bin/proxyshim)
	$(call put,0644,man/proxyshim.1,$(MANDIR)/man1/proxyshim.1)
	$(call put,0644,man/proxyshim.7,$(MANDIR)/man7/proxyshim.7)

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(LIBDIR) 2>/dev/null

# A tarball of the tracked files that builds and tests from scratch.
dist:
	@mkdir -p $(BUILD)
	git archive --prefix=proxyshim-$(VERSION)/ -o $(BUILD)/proxyshim-$(VERSION).tar.gz HEAD
	@echo $(BUILD)/proxyshim-$(VERSION).tar.gz

# ---- other architectures and the Debian package ----
# ARCH: a GNU (aarch64, x86_64) or Debian (arm64, amd64) name; empty: this machine's.
ARCH ?=
HOST_DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
deb_arch = $(or $(patsubst aarch64,arm64,$(patsubst x86_64,amd64,$(1))),$(HOST_DEB_ARCH))
gnu_arch = $(patsubst arm64,aarch64,$(patsubst amd64,x86_64,$(1)))
DEB_ARCH ?= $(call deb_arch,$(ARCH))
CROSS_ARCH = $(call gnu_arch,$(or $(ARCH),aarch64))
CROSS_BUILD = $(BUILD)/$(CROSS_ARCH)
CROSS_CC = $(CROSS_ARCH)-linux-gnu-gcc
CROSS_CHECK_LIBS = $(shell PKG_CONFIG_LIBDIR=/usr/lib/$(CROSS_ARCH)-linux-gnu/pkgconfig \
                     pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

# Cross toolchain, qemu-user and the check library of ARCH (scripts/install-deps-cross).
cross-deps:
	@scripts/install-deps-cross $(call deb_arch,$(CROSS_ARCH))

# The product, the test helpers and the unit tests for ARCH (default aarch64) into
# $(BUILD)/ARCH, with ARCH's cross compiler.
cross-build: cross-deps
	$(MAKE) BUILD=$(CROSS_BUILD) CC=$(CROSS_CC) CHECK_LIBS="$(CROSS_CHECK_LIBS)" \
	  all $(patsubst $(BUILD)/%,$(CROSS_BUILD)/%,$(UNIT_TESTS))

# Runs ARCH's unit tests and an integration smoke run (tests/cross) under qemu-user,
# behind this machine's HAProxy and nginx. The host's test helpers are not needed.
cross-test: cross-build
	@scripts/cross-test $(CROSS_ARCH) $(abspath $(CROSS_BUILD))

# debhelper, lintian and, for another DEB_ARCH, its cross toolchain.
deb-deps:
	@scripts/install-deps-cross --deb $(DEB_ARCH)

# proxyshim_<version>_<DEB_ARCH>.deb in $(BUILD)/deb from a copy of the tree (debian/ is
# kept in the repository; dpkg-buildpackage writes next to the tree it builds), then
# lintian, which must report no error or warning. Another DEB_ARCH is cross-built
# without its unit tests (nocheck: they need that machine or qemu; make cross-test runs them).
DEB_SRC = $(BUILD)/deb/proxyshim-$(VERSION)
DEB_FILE = $(BUILD)/deb/proxyshim_$(VERSION)_$(DEB_ARCH).deb
DEB_CROSS = $(if $(filter-out $(HOST_DEB_ARCH),$(DEB_ARCH)),-a$(DEB_ARCH) -Pcross$(,)nocheck)
, := ,
deb: deb-deps
	rm -rf $(DEB_SRC) && mkdir -p $(DEB_SRC)
	tar -c --exclude=./.git --exclude=./$(BUILD) --exclude=./debian/build . | tar -x -C $(DEB_SRC)
	cd $(DEB_SRC) && $(if $(DEB_CROSS),DEB_BUILD_OPTIONS=nocheck) \
	  dpkg-buildpackage -us -uc -b $(DEB_CROSS) >../build-$(DEB_ARCH).log 2>&1 || \
	  { tail -40 ../build-$(DEB_ARCH).log; exit 1; }
	lintian --fail-on error,warning $(DEB_FILE)
	@echo $(DEB_FILE)

# Installs the package built by make deb (this machine's architecture), runs MariaDB
# behind HAProxy through the installed paths only, purges it, checks nothing is left.
deb-test:
	@scripts/deb-smoke $(abspath $(BUILD)/deb/proxyshim_$(VERSION)_$(HOST_DEB_ARCH).deb)

clean:
	rm -rf $(BUILD)
