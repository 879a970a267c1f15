#!/usr/bin/env bats
# Faults: the shim never aborts or wedges the host on EMFILE, EINTR (signals during the
# header wait), a reset in the middle of a header, a peer that half-closes after part of
# a header; and connections that trickle their header until the timeout leave no
# descriptor or memory behind. Blocking and epoll servers.

load helpers
load hostile

TRICKLE_HDR=$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)

# ---- EMFILE ----

@test "EMFILE, epoll server: connections kept by the shim exhaust the fds; survives, serves, frees" {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=1000 PROXYSHIM_LOG="$T/shim.log" \
		-- -m epoll -r 40 -I 1000
	good_served
	local base
	base=$(fd_count "$SERVER_PID")
	# 120 headers trickling 1 byte every 300 ms (44 bytes: 13 s to complete), kept
	# aside by the shim until their 1 s timeout, more than the 40 fds allow; good
	# connections meanwhile.
	hit_bg trickle "$PROXY" "$TRICKLE_HDR$REQ" -n 120 -j 120 -1 -d 300 -e keep -t 12000
	sleep 0.5
	hit good "$PROXY" "$GOOD_HDR$REQ" -n 30 -j 2 -t 15000
	wait_clients 20
	alive "$SERVER_PID" || fail "server died:" "$(cat "$T/server.err")"
	expect_served_all good 30 "$GOOD_PEER"
	expect_refused_all trickle 120
	grep -q 'accept4: Too many open files' "$T/server.err" ||
		fail "EMFILE never happened (the test did not test it)"
	wait_until 5 test "$(fd_count "$SERVER_PID")" -le "$base" ||
		fail "fds: $base before, $(fd_count "$SERVER_PID") after"
	good_served
	(($(count_matching "$T/server.out" "peer=127\.0\.0\.11") == 0)) ||
		fail "a trickled connection reached the application"
}

@test "EMFILE, threaded blocking server: threads holding connections exhaust the fds" {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOG="$T/shim.log" \
		-- -m threads:16 -r 20 -I 500
	# Clients keep their write side open: each thread holds its connection 500 ms.
	hit good "$PROXY" "$GOOD_HDR$REQ" -n 60 -j 60 -e keep -t 20000
	alive "$SERVER_PID" || fail "server died:" "$(cat "$T/server.err")"
	expect_served_all good 60 "$GOOD_PEER"
	grep -q 'accept4: Too many open files' "$T/server.err" ||
		fail "EMFILE never happened (the test did not test it)"
	good_served
}

@test "EMFILE for a moment while the epoll server registers its listener" {
	# hsrv -E takes every free fd while it adds the listener to its epoll set and
	# gives them back right after. The shim cannot create its own descriptors for the
	# listener at that moment; later connections whose header comes in two writes must
	# still be served (or at least closed at the timeout), never left hanging.
	start_hsrv PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=2000 PROXYSHIM_LOG="$T/shim.log" \
		-- -m epoll -E -I 300
	hit split "$PROXY" "$GOOD_HDR$REQ" -n 3 -j 3 -c 10 -d 200 -t 6000
	alive "$SERVER_PID" || fail "server died:" "$(cat "$T/server.err")"
	expect_served_all split 3 "$GOOD_PEER"
	good_served
}

# ---- EINTR ----

# eintr MODE MIN: SIGUSR1 every 2 ms (handler without SA_RESTART) while headers
# trickle in; every connection is served with the header's address and at least MIN
# signals landed during the accepts that took them; a header that never completes is
# still closed (timeout 800 ms, signals do not extend it), and the next connection is
# served. A blocking accept waiting for a late header returns EINTR to such a handler,
# as the kernel's accept would: there the signals land between accepts (MIN 0). So in a
# threaded server when the thread the signals go to (the main thread, one of the
# acceptors) is the one that waits, as a loaded machine's scheduling may make it for
# every connection: MIN 0 there too.
eintr() {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=800 PROXYSHIM_LOG="$T/shim.log" \
		-- -m "$1" -s 2000 -I 300
	hit slow "$PROXY" "$GOOD_HDR$REQ" -n 6 -j 1 -c 20 -d 150 -t 5000
	expect_served_all slow 6 "$GOOD_PEER"
	hit stuck "$PROXY" "$GOOD_HDR$REQ" -p 20 -e keep -t 5000
	expect_refused_all stuck 1
	good_served
	alive "$SERVER_PID" || fail "server died:" "$(cat "$T/server.err")"
	(($(count_matching "$T/server.out" "^conn .*peer=$GOOD_PEER") == 7))
	local total
	total=$(($(sed -n 's/.* sigs=\([0-9]*\)$/\1/p' "$T/server.out" | paste -sd+)))
	((total >= $2)) || fail "only $total signals landed during accept calls"
	grep -q "proxy 127\.0\.0\.10:$(ports_of stuck):.*timed out" "$T/shim.log" ||
		fail "the stuck header was not closed at its timeout:" "$(cat "$T/shim.log")"
}

@test "EINTR: signals during the header wait, blocking server" {
	eintr block 0
}

@test "EINTR: signals during the header wait, threaded blocking server" {
	eintr threads:4 0
}

@test "EINTR: signals during the header wait, epoll server" {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=800 PROXYSHIM_LOG="$T/shim.log" \
		-- -m epoll -s 2000 -I 300
	hit slow "$PROXY" "$GOOD_HDR$REQ" -n 6 -j 3 -1 -d 10 -t 5000
	expect_served_all slow 6 "$GOOD_PEER"
	hit stuck "$PROXY" "$GOOD_HDR$REQ" -p 20 -e keep -t 5000
	expect_refused_all stuck 1
	good_served
	alive "$SERVER_PID" || fail "server died:" "$(cat "$T/server.err")"
	grep -q "proxy 127\.0\.0\.10:$(ports_of stuck):.*timed out" "$T/shim.log"
}

# ---- reset and half-close in the middle of a header ----

# mid_header MODE END: connections from $PROXY send the first P bytes of a v1 and of
# a v2 header (P = 0, 1, 5, 10, 20, 27 / 43) and then END (rst: a reset; shut: FIN).
# The shim's timeout is 10 s; every connection is closed before 3 s (not waited out),
# logged once, for a reason other than a timeout; after each, the next is served.
mid_header() {
	local mode=$1 end=$2 p hdr n=0
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=10000 \
		PROXYSHIM_LOG="$T/shim.log" -- -m "$mode" -I 300
	for hdr in "$TRICKLE_HDR" "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443)"; do
		for p in 0 1 5 10 20 27 43; do
			(($(emit "$hdr" | wc -c) > p)) || continue
			n=$((n + 1))
			hit "cut$n" "$PROXY" "$hdr$REQ" -p "$p" -e "$end" -t 3000
			[[ $end == rst ]] || expect_refused_all "cut$n" 1
			good_served
		done
	done
	# Each was logged before the next (good) connection was served: the log holds
	# them in sending order, one line each (a client port may come back in a later
	# cut: the sequence of ports is compared, not a count per port).
	local i want=() got
	for ((i = 1; i <= n; i++)); do
		[[ $end == rst ]] && ! grep -q "proxy 127\.0\.0\.10:$(ports_of "cut$i"):" "$T/shim.log" &&
			continue  # a reset before the accept: the kernel may drop it silently
		want+=("$(ports_of "cut$i")")
	done
	got=$(sed -n 's/.*proxy 127\.0\.0\.10:\([0-9]*\):.*/\1/p' "$T/shim.log" | paste -sd' ')
	[[ $got == "${want[*]}" ]] || fail "log order: got '$got', sent '${want[*]}'"
	! grep -q 'timed out' "$T/shim.log" || fail "waited out instead of closed:" "$(cat "$T/shim.log")"
	(($(count_matching "$T/server.out" "peer=$GOOD_PEER") == n))
	(($(wc -l <"$T/server.out") == n)) || fail "something else reached the app:" "$(cat "$T/server.out")"
}

@test "ECONNRESET mid-header, blocking server" {
	mid_header block rst
}

@test "ECONNRESET mid-header, epoll server" {
	mid_header epoll rst
}

@test "half-close after part of a header, blocking server: closed promptly" {
	mid_header block shut
}

@test "half-close after part of a header, epoll server: closed promptly" {
	mid_header epoll shut
}

@test "100 resets at every point of a header, 8 at a time, epoll server" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=10000 \
		PROXYSHIM_LOG="$T/shim.log" -- -m epoll
	local p
	for p in 3 17 29 41; do
		hit "rst$p" "$PROXY" "$TRICKLE_HDR$REQ" -n 25 -j 8 -p "$p" -e rst
	done
	good_served
	alive "$SERVER_PID"
	! grep -q 'timed out' "$T/shim.log"
	expect_output "$(conn_line "$GOOD_PEER" "$REQ")"
}

# ---- 1,000 trickling connections ----

# trickle_rounds MODE PARALLEL: two rounds of 1,000 connections from $PROXY, each
# trickling a header one byte every 200 ms (timeout 500 ms: never complete); the
# first round warms up (log, kept set, fd table leaves, thread stacks), the second
# must leave the server's descriptor count the same and VmRSS within 256 KiB.
trickle_rounds() {
	local mode=$1 par=$2 fd1 fd2 rss1 rss2
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=500 \
		PROXYSHIM_LOG="$T/shim.log" -- -m "$mode" -T 120
	hit warm "$PROXY" "$TRICKLE_HDR$REQ" -n 1000 -j "$par" -1 -d 200 -e keep -t 30000
	expect_refused_all warm 1000
	good_served
	sleep 0.2
	fd1=$(fd_count "$SERVER_PID") rss1=$(rss_kb "$SERVER_PID")
	hit round "$PROXY" "$TRICKLE_HDR$REQ" -n 1000 -j "$par" -1 -d 200 -e keep -t 30000
	expect_refused_all round 1000
	good_served
	sleep 0.2
	fd2=$(fd_count "$SERVER_PID") rss2=$(rss_kb "$SERVER_PID")
	echo "# $mode: fds $fd1 -> $fd2, VmRSS $rss1 -> $rss2 kB" >&3
	((fd2 == fd1)) || fail "fds: $fd1 after the first 1,000, $fd2 after the second" \
		"$(ls -l "/proc/$SERVER_PID/fd")"
	((rss2 - rss1 <= 256)) || fail "VmRSS grew from $rss1 kB to $rss2 kB"
	expect_output "$(conn_line "$GOOD_PEER" "$REQ")" "$(conn_line "$GOOD_PEER" "$REQ")"
}

@test "1,000 trickling headers, epoll server: no fd or memory left after their timeouts" {
	trickle_rounds epoll 1000
}

@test "1,000 trickling headers, threaded blocking server: no fd or memory left" {
	trickle_rounds threads:64 128
}
