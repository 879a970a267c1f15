# Helpers for the smoke run of another architecture's build (make cross-test ARCH=...):
# the integration helpers (tests/integration/*.bash), with every test program of
# PS_BUILD (that architecture's build) run under qemu-user, and the shim given to the
# emulated program only: QEMU_SET_ENV=LD_PRELOAD=... (a plain LD_PRELOAD would also reach
# the emulator and any host program, whose loader cannot use the library). HAProxy,
# nginx and socat are this machine's own.
#
# Without binfmt_misc the kernel cannot exec another architecture's program, so a
# wrapper script per program runs it under the emulator; an emulated program that
# starts another one is given that wrapper (fdedge's FDEDGE_SELF).
#
# Two gaps of qemu-user 7.2 (Debian 12) shape the run. It does not emulate SO_COOKIE,
# the socket identity the shim checks before it trusts recorded state (without it the
# shim stays safe: inherited and UDP state is not believed), so build/qemucookie.so,
# preloaded after the libraries, answers it from the socket's inode number. And a fork
# in an emulated program hangs on this machine's kernel (the child spins), so nothing
# here forks in the emulator: unit tests run with CK_FORK=no, exec inheritance is an
# execv in place (fdedge exec-self).

[[ -n ${PS_CROSS_ARCH:-} && -n ${PS_BUILD:-} ]] ||
	{
		echo "cross.bash: PS_CROSS_ARCH and PS_BUILD are set by make cross-test" >&2
		return 1
	}
QEMU=qemu-$PS_CROSS_ARCH
QEMU_PREFIX=/usr/$PS_CROSS_ARCH-linux-gnu

load ../integration/helpers
load ../integration/daemons
load ../integration/send
load ../integration/udp

# qwrap NAME: prints the wrapper that runs PS_BUILD/NAME under the emulator (made once
# per bats run, under its temp dir).
qwrap() {
	local d=${BATS_RUN_TMPDIR:-/tmp}/qemu-$PS_CROSS_ARCH
	if [[ ! -x $d/$1 ]]; then
		mkdir -p "$d"
		printf '#!/bin/sh\nexec %s -L %s %s "$@"\n' "$QEMU" "$QEMU_PREFIX" "$PS_BUILD/$1" >"$d/$1.new"
		chmod 755 "$d/$1.new"
		mv -f "$d/$1.new" "$d/$1"
	fi
	printf '%s\n' "$d/$1"
}

PS_PRELOAD="$PS_BUILD/libproxyshim.so $PS_BUILD/qemucookie.so"
PS_CLIENT_PRELOAD="$PS_BUILD/libproxyshim-client.so $PS_BUILD/qemucookie.so"

TESTSERVER=$(qwrap testserver)
RAWSEND=$(qwrap rawsend)
UDPSRV=$(qwrap udpsrv)
UDPSEND=$(qwrap udpsend)
FDEDGE=$(qwrap fdedge)

# helpers.bash's shim_argv gives the shim to the emulated program only.
preload_var() { printf 'QEMU_SET_ENV=LD_PRELOAD=%s\n' "$PS_PRELOAD"; }

start_server() { run_server "$TESTSERVER" 30 QEMU_SET_ENV="LD_PRELOAD=$PS_PRELOAD" "$@"; }

# The build's architecture, as file(1) would check it: these tests must not pass by
# running this machine's programs.
expect_foreign() {
	local m
	m=$(od -An -tx1 -j18 -N2 "$PS_BUILD/$1" | tr -d ' ')
	[[ $m != 3e00 ]] || fail "$PS_BUILD/$1 is an x86-64 program"
}
