#!/usr/bin/env bats
# Proxied connections that a child inherits, on every way a child is started: the
# child reports the header's client where the parent's state reaches it (system(),
# popen(), posix_spawn, execve with many connections), and where it cannot (a program
# without the shim clearing the environment on the way) it leaves the connection
# untouched, because only the kernel's byte counts could prove its header unread.
# Either way a client's own bytes are never taken for a header and the parent keeps
# them, and no child waits for headers at start. build/fdedge is the server under the
# shim and the trusted proxy (127.0.0.10); it exits 1 when it sees a defect.

load helpers



# The client behind the proxy sends "PROXY TCP4 127.0.0.66 ..." as its first bytes.
@test "system(): the child sees the header's client; the client's own PROXY line stays the parent's" {
	edge spawn-system
	[[ $OUT == *"ok: the child sees the header's client"* ]]
	[[ $OUT == *"ok: the parent gets the client's bytes intact"* ]]
}

@test "popen(): the child sees the header's client; the client's own PROXY line stays the parent's" {
	edge spawn-popen
	[[ $OUT == *"ok: the child sees the header's client"* ]]
	[[ $OUT == *"ok: the parent gets the client's bytes intact"* ]]
}

@test "posix_spawn: the child sees the header's client; the client's own PROXY line stays the parent's" {
	edge spawn-posix
	[[ $OUT == *"ok: the child sees the header's client"* ]]
}

@test "state lost on the way (env -i in a program without the shim): untouched, logged, bytes intact" {
	edge spawn-lost
	[[ $OUT == *"ok: the child leaves the connection untouched"* ]]
	[[ $OUT == *"ok: the parent gets the client's bytes intact"* ]]
	[[ $OUT == *"arrived without the shim's state and was read before: left untouched"* ]]
}

@test "popen() with idle proxied connections open: the child starts without waiting for headers" {
	edge spawn-idle 3
	[[ $OUT == *"ok: a child never waits for headers at start"* ]]
}

@test "execve with 1,000 proxied connections: every one keeps its client in the new program" {
	ulimit -n 4096
	edge exec-many 1000
	[[ $OUT == *"1000 of 1000 connections kept their client across execve, 0 report"* ]]
}

@test "execve with 4,100 proxied connections, past the 4,000 carried: those keep their client, the other 100 report the proxy and are logged" {
	ulimit -n 10000 2>/dev/null || skip "RLIMIT_NOFILE cannot be raised to 10,000"
	edge PROXYSHIM_LOG_LEVEL=warn -- exec-many 4100
	[[ $OUT == *"4000 of 4100 connections kept their client across execve, 100 report the proxy"* ]]
	[[ $OUT == *"exec: the state of 100 proxied connections did not fit the environment"* ]]
}

@test "every exec flavour (execv, execvp, execvpe, execl, execlp, execle, fexecve, execveat, vfork+execv): the client crosses" {
	local how
	for how in execv execvp execvpe execl execlp execle fexecve execveat vfork; do
		edge exec-how "$how"
		[[ $OUT == *"ok: the new program sees the header's client"* ]] || fail "with $how"
	done
}

@test "a vfork child that closes a proxied connection, or every descriptor, before it exits: the parent's keep their clients, a kept one is still handed over" {
	edge vfork-close
	[[ $OUT == *"ok: the parent's connections keep their clients"* ]]
	edge vfork-close-range
	[[ $OUT == *"ok: the parent's connections keep their clients"* ]]
}

@test "a Python server runs subprocess.run() (vfork, every inherited descriptor closed in the child): its connection still reports the header's client" {
	local out
	out=$(under_shim PROXYSHIM_TRUSTED=$PROXY -- timeout 20 python3 "$BATS_TEST_DIRNAME/../helpers/spawnserver.py" 2>&1) ||
		fail "spawnserver.py failed:" "$out"
	echo "$out"
	[[ $out == *"before 127.0.0.77:5555"* ]] || fail "not the header's client at first"
	[[ $out == *"after 127.0.0.77:5555"* ]] || fail "the child's closes changed the parent's record"
}

@test "a proxied connection passed over a UNIX socket (SCM_RIGHTS): the receiver sees the real peer and every byte" {
	edge scm-rights
	[[ $OUT == *"ok: the receiver sees the real peer and every byte"* ]]
}

@test "popen streams as glibc's: fclose waits for the child, later popen calls work, every mode glibc takes" {
	edge popen-fclose
	[[ $OUT != *DEFECT* ]]
}
