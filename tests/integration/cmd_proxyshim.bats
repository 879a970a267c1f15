#!/usr/bin/env bats
# The proxyshim command: flags, --check, refusals, exec in place, install/uninstall.

setup() {
	PS_BUILD=${PS_BUILD:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/build}
	CMD=$PS_BUILD/proxyshim
	T=$(mktemp -d)
	ASAN=${PS_ASAN_RUNTIME:+$PS_ASAN_RUNTIME }
}

# shim_cmd [ARGS...]: becomes the command under test (or $CMD_PATH): call it with run or
# in the background, where its PID is then the command's own. Under make sanitize
# the ASan runtime must come first in LD_PRELOAD, and the command appends to it;
# EXTRA_PRELOAD stands for a user's own LD_PRELOAD.
shim_cmd() {
	local pre=${PS_ASAN_RUNTIME:-}
	[ -z "${EXTRA_PRELOAD:-}" ] || pre=${pre:+$pre }$EXTRA_PRELOAD
	exec env LD_PRELOAD="$pre" "${CMD_PATH:-$CMD}" "$@"
}

teardown() {
	[ -z "${SRV:-}" ] || kill "$SRV" 2>/dev/null || true
	rm -rf "$T"
}

@test "each flag sets its variable" {
	run shim_cmd --trust 127.0.0.1/32 --policy optional --untrusted reject --timeout 500 \
		--ports 80,8000-8010 --local header --log "$T/log" --log-level debug \
		--send-to '[::1]:80' --send-version 2 --send-source 127.0.0.9:99 \
		--udp-ports 53,5300-5310 --udp-mode first --udp-idle 1500 --send-udp every --both -- env
	[ "$status" -eq 0 ]
	for kv in PROXYSHIM_TRUSTED=127.0.0.1/32 PROXYSHIM_POLICY=optional \
		PROXYSHIM_UNTRUSTED=reject PROXYSHIM_TIMEOUT_MS=500 PROXYSHIM_PORTS=80,8000-8010 \
		PROXYSHIM_LOCAL=header "PROXYSHIM_LOG=$T/log" PROXYSHIM_LOG_LEVEL=debug \
		'PROXYSHIM_SEND_TO=[::1]:80' PROXYSHIM_SEND_VERSION=2 \
		PROXYSHIM_SEND_SOURCE=127.0.0.9:99 PROXYSHIM_UDP_PORTS=53,5300-5310 \
		PROXYSHIM_UDP_MODE=first PROXYSHIM_UDP_IDLE_MS=1500 PROXYSHIM_SEND_UDP=every; do
		grep -qxF "$kv" <<<"$output"
	done
}

@test "LD_PRELOAD: receiving library by default, client with --client, both with --both, appended" {
	run shim_cmd --trust 127.0.0.1 -- sh -c 'echo "$LD_PRELOAD"'
	[ "$output" = "$ASAN$PS_BUILD/libproxyshim.so" ]
	run shim_cmd --client --send-to 127.0.0.1 -- sh -c 'echo "$LD_PRELOAD"'
	[ "$output" = "$ASAN$PS_BUILD/libproxyshim-client.so" ]
	EXTRA_PRELOAD=/lib/x86_64-linux-gnu/libm.so.6 run shim_cmd --both --trust 127.0.0.1 \
		-- sh -c 'echo "$LD_PRELOAD"'
	[ "$output" = "$ASAN/lib/x86_64-linux-gnu/libm.so.6 $PS_BUILD/libproxyshim.so $PS_BUILD/libproxyshim-client.so" ]
}

@test "--check prints the effective configuration and runs nothing" {
	PROXYSHIM_TIMEOUT_MS=700 run shim_cmd --trust 10.0.0.0/8 --check
	[ "$status" -eq 0 ]
	[[ "$output" == *"PROXYSHIM_TRUSTED        10.0.0.0/8"* ]]
	[[ "$output" == *"PROXYSHIM_TIMEOUT_MS     700"* ]]
	[[ "$output" == *"PROXYSHIM_POLICY         require"* ]]
	[[ "$output" == *"PROXYSHIM_UDP_PORTS      (unset: UDP untouched)"* ]]
	[[ "$output" == *"PROXYSHIM_UDP_MODE       every"* ]]
}

@test "a bad value from a flag or the environment: one line, exit 1, nothing run" {
	run shim_cmd --trust 10.0.0.0/33 -- touch "$T/ran"
	[ "$status" -eq 1 ]
	[ "$output" = 'proxyshim: PROXYSHIM_TRUSTED: "10.0.0.0/33": prefix length must be 0..32' ]
	[ ! -e "$T/ran" ]
	PROXYSHIM_POLICY=maybe run shim_cmd --check
	[ "$status" -eq 1 ]
	[[ "$output" == 'proxyshim: PROXYSHIM_POLICY: "maybe": '* ]]
	run shim_cmd --udp-mode sometimes --check
	[ "$status" -eq 1 ]
	[ "$output" = 'proxyshim: PROXYSHIM_UDP_MODE: "sometimes": must be one of: every, first' ]
	run shim_cmd --send-udp on --check
	[ "$status" -eq 1 ]
	[ "$output" = 'proxyshim: PROXYSHIM_SEND_UDP: "on": must be one of: off, every' ]
}

@test "exec in place: the command keeps the PID, the exit status comes through" {
	shim_cmd --trust 127.0.0.1 -- sh -c 'echo $$ > "$0"; exit 7' "$T/pid" &
	pid=$!
	st=0
	wait "$pid" || st=$?
	[ "$st" -eq 7 ]
	[ "$(cat "$T/pid")" = "$pid" ]
}

@test "refuses setuid, setcap and static targets, and scripts run by them" {
	cp /bin/true "$T/suid" && chmod u+s "$T/suid"
	run shim_cmd --trust 127.0.0.1 -- "$T/suid"
	[ "$status" -eq 1 ]
	[[ "$output" == *"is setuid/setgid"* ]]
	cp /bin/true "$T/capped" && setcap cap_net_bind_service+ep "$T/capped"
	run shim_cmd --trust 127.0.0.1 -- "$T/capped"
	[ "$status" -eq 1 ]
	[[ "$output" == *"has file capabilities"* ]]
	printf 'int main(void){return 0;}\n' > "$T/s.c"
	cc -static -o "$T/static" "$T/s.c"
	run shim_cmd --trust 127.0.0.1 -- "$T/static"
	[ "$status" -eq 1 ]
	[[ "$output" == *"is statically linked"* ]]
	printf '#!%s\n' "$T/static" > "$T/script" && chmod +x "$T/script"
	run shim_cmd --trust 127.0.0.1 -- "$T/script"
	[ "$status" -eq 1 ]
	[[ "$output" == *"is statically linked"* ]]
	run shim_cmd --trust 127.0.0.1 -- /bin/true
	[ "$status" -eq 0 ]
}

@test "--force runs a setuid, setcap or static target after one warning line" {
	cp /bin/true "$T/suid" && chmod u+s "$T/suid"
	cp /bin/true "$T/capped" && setcap cap_net_bind_service+ep "$T/capped"
	printf 'int main(void){return 3;}\n' > "$T/s.c"
	cc -static -o "$T/static" "$T/s.c"
	run shim_cmd --trust 127.0.0.1 --force -- "$T/suid"
	[ "$status" -eq 0 ]
	[ "$output" = "proxyshim: warning: $T/suid is setuid/setgid: the loader ignores LD_PRELOAD for it (--force: running it anyway)" ]
	run shim_cmd --trust 127.0.0.1 --force -- "$T/capped"
	[ "$status" -eq 0 ]
	[[ "$output" == "proxyshim: warning: $T/capped has file capabilities"*"(--force: running it anyway)" ]]
	run shim_cmd --trust 127.0.0.1 --force -- "$T/static"
	[ "$status" -eq 3 ]
	[ "$output" = "proxyshim: warning: $T/static is statically linked: LD_PRELOAD cannot reach it (--force: running it anyway)" ]
}

# fzf is a Go program linked against libc (cgo), shfmt a static one: both as Debian
# builds them with its Go toolchain.
@test "refuses a Go program, dynamically linked or static, naming it; --force runs it" {
	local prog want why
	for prog in /usr/bin/fzf /usr/bin/shfmt; do
		[ -x "$prog" ] || { echo "missing $prog: run scripts/install-deps" >&2; return 1; }
		cp "$prog" "$T/goprog"
		why="$T/goprog is a Go program: its runtime makes system calls directly, so the shim never sees its connections"
		run shim_cmd --trust 127.0.0.1 -- "$T/goprog" --version
		[ "$status" -eq 1 ]
		[ "$output" = "proxyshim: $why" ]
		want=$("$T/goprog" --version)
		run shim_cmd --trust 127.0.0.1 --force -- "$T/goprog" --version
		[ "$status" -eq 0 ]
		[ "${lines[0]}" = "proxyshim: warning: $why (--force: running it anyway)" ]
		[ "${lines[1]}" = "$want" ]
		[ "${#lines[@]}" -eq 2 ]
	done
	# Behind a #! line as well.
	printf '#!%s\n' "$T/goprog" > "$T/script" && chmod +x "$T/script"
	run shim_cmd --trust 127.0.0.1 -- "$T/script"
	[ "$status" -eq 1 ]
	[ "$output" = "proxyshim: $why" ]
}

@test "refuses a program of another word size, which the loader could not preload into" {
	# An i386 ELF header: refused before anything runs, so no 32-bit toolchain needed.
	python3 -c 'import struct, sys; sys.stdout.buffer.write(b"\x7fELF\x01\x01\x01" + bytes(9) + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0, 0, 0, 0, 52, 32, 0, 40, 0, 0))' > "$T/elf32"
	chmod +x "$T/elf32"
	run shim_cmd --trust 127.0.0.1 -- "$T/elf32"
	[ "$status" -eq 1 ]
	[ "$output" = "proxyshim: $T/elf32 is a 32-bit program and the library 64-bit: the loader cannot preload it" ]
}

# log_chain LEVEL: a server started through two `sh -c` (as a start script does) under
# the shim at LEVEL, one proxied connection; its log in $T/log, the first sh's PID in
# $T/sh.pid.
log_chain() {
	rm -f "$T/log" "$T/port"
	shim_cmd --trust 127.0.0.10 --log "$T/log" --log-level "$1" -- sh -c \
		'echo $$ > "$0"; sh -c "exec \"\$0\" -n 1 -P \"\$1\"" "$1" "$2"; :' \
		"$T/sh.pid" "$PS_BUILD/testserver" "$T/port" > "$T/out" &
	SRV=$!
	for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
	printf 'PROXY TCP4 127.0.0.44 127.0.0.1 4444 80\r\nhi' |
		timeout 5 "$PS_BUILD/rawsend" -s 127.0.0.10 -r 127.0.0.1 "$(cat "$T/port")"
	wait "$SRV"
	SRV=
	grep -q 'accept=127.0.0.44:4444' "$T/out"
}

@test "--log-level info: the shim is announced once per chain, then each listener and connection" {
	PROXYSHIM_CHAIN=1 log_chain info  # a stale value from outside: the command's own chain
	port=$(cat "$T/port")
	sed 's/^proxyshim\[[0-9]*\]: //' "$T/log" > "$T/lines"
	[ "$(wc -l < "$T/lines")" -eq 3 ]
	[[ "$(sed -n 1p "$T/lines")" == "info: active in sh: 1 trusted networks, policy require"* ]]
	[ "$(sed -n 2p "$T/lines")" = "info: testserver: listening on port $port" ]
	[[ "$(sed -n 3p "$T/lines")" == "info: proxy 127.0.0.10:"*" -> client 127.0.0.44:4444" ]]
	# debug has the rest: every program of the chain, and which chain it belongs to
	log_chain debug
	first=$(cat "$T/sh.pid")
	grep -q "info: active in sh: " "$T/log"
	grep -q "debug: active in testserver, in the chain of pid $first: " "$T/log"
	[ "$(grep -c 'active in' "$T/log")" -ge 2 ]
}

@test "--version and --help" {
	run shim_cmd --version
	[[ "$output" =~ ^proxyshim\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
	run shim_cmd --help
	[[ "$output" == *"--trust CIDRS"* ]]
}

@test "one version: --version, both libraries' 'active in' lines, debian/changelog, CHANGELOG.md and the man pages name the VERSION file's" {
	root=$BATS_TEST_DIRNAME/../..
	want=$(cat "$root/VERSION")
	[[ $want =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]
	run shim_cmd --version
	[ "$output" = "proxyshim $want" ]
	run shim_cmd --trust 127.0.0.1 --log stderr --log-level info -- true
	[[ "$output" == *"info: active in true: "*", proxyshim $want"* ]]
	run shim_cmd --client --send-to 127.0.0.1 --log stderr --log-level info -- true
	[[ "$output" == *"info: client active in true: "*", proxyshim $want"* ]]
	[ "$(sed -n '1s/^proxyshim (\([^)]*\)).*/\1/p' "$root/debian/changelog")" = "$want" ]
	grep -q "^## $want " "$root/CHANGELOG.md"
	grep -q "^\.TH PROXYSHIM 1 .* \"proxyshim $want\"" "$root/man/proxyshim.1"
	grep -q "^\.TH PROXYSHIM 7 .* \"proxyshim $want\"" "$root/man/proxyshim.7"
}

@test "make install into DESTDIR, a server run through the installed command, uninstall leaves nothing" {
	root=$BATS_TEST_DIRNAME/../..
	make -C "$root" -s install BUILD="$PS_BUILD" DESTDIR="$T/dest" PREFIX=/usr >/dev/null
	[ -x "$T/dest/usr/bin/proxyshim" ]
	[ -f "$T/dest/usr/lib/proxyshim/libproxyshim.so" ]
	man -l "$T/dest/usr/share/man/man1/proxyshim.1" >/dev/null
	man -l "$T/dest/usr/share/man/man7/proxyshim.7" >/dev/null
	CMD_PATH=$T/dest/usr/bin/proxyshim run shim_cmd --trust 127.0.0.1 --check
	[[ "$output" == *"LD_PRELOAD               $ASAN$T/dest/usr/lib/proxyshim/libproxyshim.so"* ]]
	CMD_PATH=$T/dest/usr/bin/proxyshim shim_cmd --trust 127.0.0.10 -- \
		"$PS_BUILD/testserver" -n 1 -P "$T/port" > "$T/out" &
	SRV=$!
	for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
	printf 'PROXY TCP4 127.0.0.44 127.0.0.1 4444 80\r\nhi' |
		timeout 5 "$PS_BUILD/rawsend" -s 127.0.0.10 -r 127.0.0.1 "$(cat "$T/port")"
	wait "$SRV"
	grep -q 'accept=127.0.0.44:4444' "$T/out"
	make -C "$root" -s uninstall DESTDIR="$T/dest" PREFIX=/usr
	[ -z "$(find "$T/dest" -type f)" ]
}

@test "make dist: the tarball builds and passes the unit tests from scratch" {
	root=$BATS_TEST_DIRNAME/../..
	git -C "$root" rev-parse --git-dir >/dev/null 2>&1 || skip "not a git checkout"
	v=$(cat "$root/VERSION")
	make -C "$root" -s dist BUILD="$T/b" >/dev/null
	tar -C "$T" -xzf "$T/b/proxyshim-$v.tar.gz"
	make -C "$T/proxyshim-$v" -s all check-unit > "$T/dist.log" 2>&1
	[ "$(grep -c '100%: Checks' "$T/dist.log")" -ge 3 ]
	[ -x "$T/proxyshim-$v/build/libproxyshim.so" ]
	[ "$("$T/proxyshim-$v/build/proxyshim" --version)" = "proxyshim $v" ]
}
