#!/usr/bin/env bats
# Process model: fork from a threaded server while other threads accept; signal
# handlers that close descriptors; vfork+exec (and posix_spawn) from a server holding
# proxied connections; RLIMIT_NOFILE of 1,048,576 and connections on very high fds.
# (Calls from another library's constructor before the shim's: lib_loading.bats.)
# The server is build/hsrv (-h for its options).

load helpers
load hostile

# summary_field KEY: a number (or word) from hsrv's summary line.
summary_field() {
	sed -n "s/^summary.* $1=\([^ ]*\).*/\1/p" "$T/server.out"
}

# ---- fork ----

@test "fork in a loop from one thread while 4 threads accept (blocking): no child hangs" {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY -- -m threads:4 -f -n 1500
	hit_bg split "$PROXY" "$GOOD_HDR$REQ" -n 500 -j 4 -c 10 -d 5 -t 10000
	hit whole "$PROXY" "$GOOD_HDR$REQ" -n 1000 -j 4 -t 10000
	wait_clients 30
	server_done 10
	expect_served_all whole 1000 "$GOOD_PEER"
	expect_served_all split 500 "$GOOD_PEER"
	(($(summary_field forks) >= 50)) || fail "only $(summary_field forks) forks"
	[[ $(summary_field stuck) == 0 ]] || fail "children stuck after fork:" "$(grep -v '^conn' "$T/server.out")"
}

@test "fork in a loop while the epoll server keeps incomplete connections aside" {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY -- -m epoll -f -n 1000
	hit split "$PROXY" "$GOOD_HDR$REQ" -n 1000 -j 32 -c 10 -d 10 -t 10000
	server_done 10
	expect_served_all split 1000 "$GOOD_PEER"
	(($(summary_field forks) >= 50)) || fail "only $(summary_field forks) forks"
	[[ $(summary_field stuck) == 0 ]] || fail "children stuck after fork:" "$(grep -v '^conn' "$T/server.out")"
}

# Amplifies the window of the previous tests: one thread dup2()s the listener onto fd
# 500 and closes it in a loop (each call updates the shim's entry for fd 500), another
# forks children that close() fd 500 and closefrom(3). A child forked while the entry
# was being written must still be able to close it.
@test "fork while another thread updates the same fd's entry (dup2/close loop): no child hangs" {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY -- -m threads:2 -f -Z 500 -n 400
	hit whole "$PROXY" "$GOOD_HDR$REQ" -n 400 -j 2 -c 10 -d 2 -t 10000
	server_done 20
	[[ $(summary_field stuck) == 0 ]] ||
		fail "$(summary_field stuck) of $(summary_field forks) fork children stuck (spinning in close)"
}

# ---- signal handlers that close descriptors ----

# A SIGTERM handler that closes the listening socket (a common way to stop accepting)
# while the server polls accept4 on its non-blocking listener with incomplete
# connections kept aside by the shim. Ten rounds, each signalled after 300 ms of load;
# each server must print "stopped" and exit 0 within 3 s.
@test "SIGTERM handler closing the listener during accept with kept connections: exits" {
	local i
	for i in $(seq 1 10); do
		start_hsrv PROXYSHIM_TRUSTED=$PROXY -- -m spin -K listener -I 50
		hit_bg "load$i" "$PROXY" "$GOOD_HDR$REQ" -n 100000 -j 64 -1 -d 20 -t 3000
		sleep 0.3
		kill -TERM "$SERVER_PID"
		wait_exit "$SERVER_PID" 3 ||
			fail "round $i: the server did not stop within 3 s (status $?)" \
				"$(grep -E 'State|Threads' "/proc/$SERVER_PID/status" 2>/dev/null)"
		[[ $(tail -n 1 "$T/server.out") == stopped ]]
		kill -TERM "${CLIENT_PIDS[@]}" 2>/dev/null || true
		wait "${CLIENT_PIDS[@]}" 2>/dev/null || true
		forget_pids "$SERVER_PID" "${CLIENT_PIDS[@]}"
		CLIENT_PIDS=()
		rm -f "$T/server.port"
	done
}

# A handler (SIGUSR1 every 50 us) that close()s fd 500 while another thread dup2()s the
# listener onto fd 500 in a loop: both are async-signal-safe calls; neither the thread
# the handler interrupts nor the server may hang.
@test "signal handler closing an fd that another thread dup2()s onto: no thread hangs" {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY -- -m threads:2 -Z 500 -s 50 -K dup -n 200 -T 10
	hit whole "$PROXY" "$GOOD_HDR$REQ" -n 200 -j 20 -t 3000
	server_done 12
	expect_served_all whole 200 "$GOOD_PEER"
	[[ $(summary_field dupper) == running ]] || fail "the dup2 thread is stuck"
}

# ---- vfork / posix_spawn + exec ----

# children_get_state HOW: hsrv holds three proxied connections (clients 127.0.0.71..73)
# and starts 'hsrv -C FD' for each with HOW (vfork+execve, posix_spawn); each child
# reports the original client of the connection it inherited.
children_get_state() {
	local i want=()
	start_hsrv PROXYSHIM_TRUSTED=$PROXY -- -V 3 -X "$1" -I 300
	for i in 1 2 3; do
		client_bg "c$i" "$PROXY" "$(v1 TCP4 127.0.0.7$i 127.0.0.2 1007$i 8443)$REQ"
		want+=("child fd=[0-9]+ peer=127\.0\.0\.7$i:1007$i local=127\.0\.0\.1:$SERVER_PORT data=\"GET / HTTP/1\.0\\\\r\\\\n\"")
	done
	wait_clients 10
	server_done 10
	for i in 1 2 3; do
		[[ $(<"$T/reply.c$i") == "OK 127.0.0.7$i:1007$i" ]] ||
			fail "client $i got '$(<"$T/reply.c$i")'"
		grep -Eq "^${want[i - 1]}$" "$T/server.out" || fail "no line /${want[i - 1]}/"
	done
	grep -qx 'parent done' "$T/server.out"
	! grep -q child-failed "$T/server.out"
}

@test "vfork+execve from a server holding proxied connections: children get the clients" {
	children_get_state vfork
}

@test "posix_spawn from a server holding proxied connections: children get the clients" {
	children_get_state spawn
}

# ---- very high descriptors ----

# high_fds LIMIT FILL DUP MODE: hsrv with RLIMIT_NOFILE LIMIT, fds up to FILL taken
# first (so accepted connections, and the shim's kept ones, land above FILL), each
# connection served on fd DUP (dup2, original closed); headers whole and in two writes.
high_fds() {
	start_hsrv PROXYSHIM_TRUSTED=$PROXY -- -r "$1" -O "$2" -D "$3" -m "$4" -n 4
	good_served
	hit split "$PROXY" "$GOOD_HDR$REQ" -n 3 -j 3 -c 10 -d 100
	server_done 10
	expect_served_all split 3 "$GOOD_PEER"
	(($(count_matching "$T/server.out" "^conn fd=$3 peer=$GOOD_PEER ") == 4)) ||
		fail "not served on fd $3 as $GOOD_PEER:" "$(cat "$T/server.out")"
}

@test "RLIMIT_NOFILE 1,048,576: connections accepted above fd 65,536 and moved to fd 1,048,575" {
	(ulimit -Hn 1048576) 2>/dev/null ||
		skip "cannot raise RLIMIT_NOFILE to 1048576 here (hard limit $(ulimit -Hn), no CAP_SYS_RESOURCE)"
	high_fds 1048576 70000 1048575 epoll
}

@test "RLIMIT_NOFILE 1,048,576: blocking server, connection dup2()ed to fd 70,000" {
	(ulimit -Hn 1048576) 2>/dev/null ||
		skip "cannot raise RLIMIT_NOFILE to 1048576 here (hard limit $(ulimit -Hn), no CAP_SYS_RESOURCE)"
	high_fds 1048576 66000 70000 block
}

@test "the highest fds this environment allows: epoll server, accepted and dup2()ed near the limit" {
	local hard
	hard=$(ulimit -Hn)
	[[ $hard == unlimited ]] && hard=1048576
	((hard > 1100)) || skip "hard RLIMIT_NOFILE $hard"
	high_fds "$hard" $((hard - 64)) $((hard - 1)) epoll
}

@test "the highest fds this environment allows: blocking server" {
	local hard
	hard=$(ulimit -Hn)
	[[ $hard == unlimited ]] && hard=1048576
	((hard > 1100)) || skip "hard RLIMIT_NOFILE $hard"
	high_fds "$hard" $((hard - 64)) $((hard - 1)) block
}
