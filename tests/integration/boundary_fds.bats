#!/usr/bin/env bats
# Descriptor boundaries the hooks do not see, or see late: a close behind the shim's
# back (fclose, a raw syscall), close_range over kept connections, a listener replaced
# by dup2, no descriptor left to keep a connection aside. Each scenario is one run of
# build/fdedge, which is both the server under the shim and the trusted proxy
# (127.0.0.10); it exits 1 when it sees the defect, 2 when its set-up failed.

load helpers

EDGE_TIMEOUT_MS=500  # fdedge's header timeout in this file (edge, helpers.bash)

# slow_edge SCENARIO: fdedge with build/slowcalls.so preloaded after the shim (it holds
# one chosen call of the shim's for 200 ms: the scenario arms it) and a 10 s timeout.
slow_edge() {
	local PS_PRELOAD="$PS_PRELOAD $PS_BUILD/slowcalls.so"
	edge PROXYSHIM_TIMEOUT_MS=10000 -- "$1"
}

@test "a number reused after fclose(fdopen(fd)) never reports the closed connection's client" {
	local port
	port=$(free_port)
	edge PROXYSHIM_PORTS="$port" -- stale-fclose "$port"
	[[ $OUT == *"ok: a reused number reports its real peer"* ]]
}

@test "a number reused after syscall(SYS_close, fd) never reports the closed connection's client" {
	local port
	port=$(free_port)
	edge PROXYSHIM_PORTS="$port" -- stale-rawclose "$port"
	[[ $OUT == *"ok: a reused number reports its real peer"* ]]
}

@test "close_range over a kept connection, number reused by the app's own socket: never read or returned" {
	edge closerange-socket
	[[ $OUT == *"ok: the app's own socket keeps every byte"* ]]
	[[ $OUT != *"accept returned"* ]]
}

@test "close_range over a kept connection, number reused by the app's own file: never closed" {
	edge closerange-file
	[[ $OUT == *"ok: the app's own descriptor is still open"* ]]
}

@test "dup2 of a new listener over one with kept connections: none handed over, the old ones closed" {
	edge dup2-listener
	[[ $OUT == *"ok: the new listener gets none"* ]]
	[[ $OUT == *"ok: the old listener's kept connection is closed"* ]]
}

@test "no descriptor left to keep a late header aside: non-blocking accept4 returns at once, refusal logged" {
	edge nofd-nonblocking
	[[ $OUT == *"no room to keep the connection aside"* ]]
}

@test "a kept connection's number closed and reused by another thread during accept: never returned, never given an address" {
	# build/slowcalls.so (after the shim) holds the shim's proof of the kept socket's
	# identity for 200 ms, while the other thread closes and reuses the number.
	local PS_PRELOAD="$PS_PRELOAD $PS_BUILD/slowcalls.so"
	edge keep-race
	[[ $OUT == *"closed by the application; forgotten"* ]]
}

@test "a kept connection's number closed and reused by another thread just after the shim proved it: the application's socket is never closed nor returned, its bytes kept" {
	# build/slowcalls.so holds the shim for 200 ms just after its proof of the kept
	# socket's identity, while the other thread closes and reuses the number.
	local PS_PRELOAD="$PS_PRELOAD $PS_BUILD/slowcalls.so"
	edge keep-race-after
	[[ $OUT == *"closed by the application; forgotten"* ]]
}

@test "two kept connections on one number (the first closed by fclose(fdopen())): the second is handed over as itself, the first one's deadline touches nothing" {
	edge stale-twin
	[[ $OUT == *"closed by the application; forgotten"* ]]
}

@test "a hang-up the set reported for a connection since closed never applies to a new kept connection on its number" {
	edge stale-event
}

@test "20 late headers progressing without completing and a 21st complete behind them: an edge-triggered server gets it" {
	edge PROXYSHIM_TIMEOUT_MS=10000 -- et-progress
}

@test "poll(): a low-numbered listener and one numbered 900, 200 descriptors between them, after 70 listeners with kept connections came and went: each is reported when its late header completes" {
	edge PROXYSHIM_TIMEOUT_MS=10000 -- poll-span
}

@test "select(): a low-numbered listener and one numbered 900, 200 descriptors between them, after 70 listeners with kept connections came and went: each is reported when its late header completes" {
	edge PROXYSHIM_TIMEOUT_MS=10000 -- select-span
}

@test "a listener polled for POLLRDNORM only: told (POLLRDNORM) when its kept connection's header completes" {
	edge PROXYSHIM_TIMEOUT_MS=10000 -- poll-rdnorm
}

@test "a listener in epoll for EPOLLRDNORM only: told when its kept connection's header completes" {
	edge PROXYSHIM_TIMEOUT_MS=10000 -- epoll-rdnorm
}

@test "select() extended past the caller's nfds for a kept connection's set: bits beyond nfds (a closed number, a writable socket) never make it fail or return early" {
	edge PROXYSHIM_TIMEOUT_MS=10000 -- select-nfds
}

@test "poll(): another thread keeps a connection while the call is being extended: a listener whose late header completed before the call is still reported" {
	# build/slowcalls.so holds the shim's mmap of the call's room for 200 ms, while the
	# other thread keeps a connection on a listener earlier in the array.
	slow_edge poll-keep-meanwhile
}

@test "select(): another thread keeps a connection while the call is being extended: a listener whose late header completed before the call is still reported" {
	slow_edge select-keep-meanwhile
}

@test "a fork while another thread's close destroys a listener's kept connections: the child's poll still sees the child's own kept connection" {
	# build/slowcalls.so holds the shim's close of the set's epoll instance for 200 ms,
	# after its kept connections were counted off: the fork lands there.
	slow_edge fork-in-destroy
}

@test "a fork just after another thread's close gave back a listener's array of kept connections: the child does not crash and its poll sees its own kept connection" {
	# build/slowcalls.so holds that thread for 200 ms just after the shim's munmap.
	slow_edge fork-after-unmap
}

@test "a fork while another thread's close of a listener is closing its kept connection: the child holds no copy, the client sees the close" {
	# build/slowcalls.so holds the shim's close of the kept connection for 200 ms.
	slow_edge fork-in-kept-close
}

@test "a poll array as long as RLIMIT_NOFILE (64, the listener and negative entries) while a header is late: never EINVAL, the kept connection is accepted" {
	edge poll-at-nofile
	[[ $OUT == *"ok: a full-length poll array still hears of the kept connection"* ]]
}

@test "an epoll instance made before fork: the child's kept connection makes the listener readable there" {
	edge fork-epoll
	[[ $OUT == *"ok: the child hears of its kept connection in the inherited instance"* ]]
}
