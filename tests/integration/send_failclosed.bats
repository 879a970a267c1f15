#!/usr/bin/env bats
# Sending side fails closed: the PROXY header is written exactly once, before any
# application byte, on every path, and where a path cannot be covered the connection is
# reset with one log line, never "someone else sent it". rawsend (under the client
# shim) against testserver (no shim), whose data= shows exactly the bytes that arrived,
# in arrival order of the connections:
#   - bytes written past every interposer (stdio, dprintf: libc's internal __write)
#     after a non-blocking connect: the next hooked call sees the kernel's count of
#     written bytes differ from the header bytes the shim wrote, resets the connection
#     and fails;
#   - every hooked send call after a non-blocking connect sends the header first;
#   - a blocking connect interrupted by a signal (EINTR) and repeated connects
#     (EALREADY, 0, EISCONN) still get the header first;
#   - fork with the header pending: written once, by whichever process writes first,
#     even when the child's header is still queued (TCP_CORK); a full shared table fails
#     closed in the child; a socket every process closed (or exited with) unused gives
#     its slot back; stdio in the child is caught in the parent;
#   - exec with the header pending: finished before exec, or the connection reset.
# A slow server (testserver -D: backlog 0, late accept) plus a filler connection keeps
# a connect in progress for about 3 s (the SYN is dropped once, resent after 1 s).

load helpers
load daemons
load send

setup_file() {
	need_client
}

SRC=127.0.0.55:4321

# hdr VER: the escaped header rawsend's connection to $SERVER_PORT must start with.
hdr() { v$1 TCP4 127.0.0.55 127.0.0.1 4321 "$SERVER_PORT"; }

# data_of N: the data= field of the server's Nth connection line (unescaped quotes off).
data_of() {
	sed -n "${1}s/^conn .* data=//p" "$T/server.out" | sed 's/^"\(.*\)"$/\1/'
}

# rs NAME VER [RAWSEND-ARGS...] < stdin: rawsend under the client shim to $SERVER_PORT.
rs() {
	local name=$1 ver=$2
	shift 2
	run_client "$name" PROXYSHIM_SEND_TO="127.0.0.1:$SERVER_PORT" PROXYSHIM_SEND_VERSION="$ver" \
		PROXYSHIM_SEND_SOURCE=$SRC -- "$RAWSEND" "$@" 127.0.0.1 "$SERVER_PORT"
}

# log_lines NAME ERE: how many shim log lines in $T/NAME.err match ERE.
log_lines() { grep -Ec "^proxyshim\\[[0-9]+\\]: error: $2" "$T/$1.err" || true; }

@test "stdio and dprintf past the shim after a non-blocking connect, v1 and v2: reset, one log line, the next write fails, no header after the bytes" {
	local way ver
	for ver in 1 2; do
		for way in dprintf stdio; do
			plain_server -n 1 -I 300
			printf 'hello\nworld\n' >"$T/data"
			rs $way.$ver $ver -N -c 6 -m $way,write <"$T/data"
			((STATUS == 3)) || fail "$way v$ver: rawsend status $STATUS (3: a send failed)" "$(cat "$T/$way.$ver.err")"
			grep -q 'send failed after 6 of 12 bytes: Connection reset by peer' "$T/$way.$ver.err" ||
				fail "$way v$ver: the write after the bypass did not fail with ECONNRESET" "$(cat "$T/$way.$ver.err")"
			expect_eq "$(log_lines $way.$ver "fd [0-9]+ to 127\\.0\\.0\\.1:$SERVER_PORT: 6 bytes were written past the shim before its PROXY header .*: connection reset$")" 1 \
				"$way v$ver: log lines"
			server_done
			expect_eq "$(data_of 1)" 'hello\n' "$way v$ver: what arrived"
		done
	done
}

@test "every hooked send call after a non-blocking connect (write writev send sendto sendmsg sendmmsg sendfile splice), v1 and v2: one header, then the bytes" {
	local way ver
	printf 'hello\nworld\n' >"$T/data"
	for ver in 1 2; do
		for way in write writev send sendto sendmsg sendmmsg sendfile splice; do
			plain_server -n 1 -I 300
			rs $way.$ver $ver -N -c 6 -m $way <"$T/data"
			expect_ok $way.$ver
			server_done
			expect_eq "$(data_of 1)" "$(hdr $ver)hello\\nworld\\n" "$way v$ver"
		done
	done
}

@test "blocking connect interrupted by a signal (EINTR), v1 and v2: the connection completes in the kernel and the header goes before the first write" {
	local ver
	printf 'hello\n' >"$T/data"
	for ver in 1 2; do
		plain_server -n 2 -I 300 -D 1500
		rs eintr.$ver $ver -v -f -A 200 -t 8000 <"$T/data"
		expect_ok eintr.$ver
		grep -q '^rawsend: connect=EINTR$' "$T/eintr.$ver.err" || fail "connect was not interrupted" "$(cat "$T/eintr.$ver.err")"
		server_done 15
		expect_eq "$(data_of 2)" "$(hdr $ver)hello\\n" "v$ver"
	done
}

@test "connect repeated after EINTR and after EINPROGRESS (EALREADY, then 0, then EISCONN), v1 and v2: exactly one header" {
	local how ver
	printf 'hello\n' >"$T/data"
	for ver in 1 2; do
		for how in -A200 -N; do
			plain_server -n 2 -I 300 -D 1500
			rs again$how.$ver $ver -f "$how" -R -t 8000 <"$T/data"
			expect_ok again$how.$ver
			expect_eq "$(sed -n 's/^rawsend: again=//p' "$T/again$how.$ver.err" | tr '\n' ' ')" "EALREADY 0 EISCONN " \
				"$how v$ver: what connect() returned"
			server_done 15
			expect_eq "$(data_of 2)" "$(hdr $ver)hello\\n" "$how v$ver"
		done
	done
}

@test "fork with the header pending and TCP_CORK (the child's header still queued when the parent writes), v1 and v2: one header" {
	local ver
	printf 'child\nparent\n' >"$T/data"
	for ver in 1 2; do
		plain_server -n 1 -I 300
		rs cork.$ver $ver -N -C -F -c 6 <"$T/data"
		expect_ok cork.$ver
		grep -q '^rawsend: child=0$' "$T/cork.$ver.err" || fail "child failed" "$(cat "$T/cork.$ver.err")"
		server_done
		expect_eq "$(data_of 1)" "$(hdr $ver)child\\nparent\\n" "v$ver"
	done
}

@test "fork, the child writes through stdio first, v1 and v2: the parent's write resets the connection (one log line), no header after application bytes" {
	local ver
	printf 'child\nparent\n' >"$T/data"
	for ver in 1 2; do
		plain_server -n 1 -I 300
		rs fstdio.$ver $ver -N -F -c 6 -m stdio,send <"$T/data"
		((STATUS == 3)) || fail "v$ver: rawsend status $STATUS (3: the parent's send failed)" "$(cat "$T/fstdio.$ver.err")"
		expect_eq "$(log_lines fstdio.$ver "fd [0-9]+ to 127\\.0\\.0\\.1:$SERVER_PORT: 6 bytes were written past the shim")" 1 "v$ver: log lines"
		server_done
		expect_eq "$(data_of 1)" 'child\n' "v$ver"
	done
}

@test "fork limit: 65 headers pending at fork, 64 shared slots: 64 connections get one header and both processes' bytes; on the 65th the child fails (EPIPE, one log line) and the parent sends the header alone" {
	local i full=0 alone=0 d
	printf 'child\nparent\n' >"$T/data"
	plain_server -n 65 -I 1000
	rs limit 1 -N -F -M 65 -c 6 <"$T/data"
	expect_ok limit
	grep -q '^rawsend: child=3$' "$T/limit.err" || fail "the child did not fail" "$(cat "$T/limit.err")"
	grep -q 'send failed after 0 of 13 bytes: Broken pipe' "$T/limit.err" || fail "not EPIPE" "$(cat "$T/limit.err")"
	expect_eq "$(log_lines limit "fd [0-9]+ to 127\\.0\\.0\\.1:$SERVER_PORT: PROXY header pending at fork and no shared slot free \\(64\\)")" 1 "log lines"
	server_done 20
	for ((i = 1; i <= 65; i++)); do
		d=$(data_of $i)
		if [[ $d == "$(hdr 1)child\\nparent\\n" ]]; then
			((++full))
		elif [[ $d == "$(hdr 1)parent\\n" ]]; then
			((++alone))
		else
			fail "connection $i: $d"
		fi
	done
	expect_eq "$full $alone" "64 1" "connections with both writers' bytes, with the parent's alone"
}

@test "sockets closed by every process with the header pending at fork free their shared slot: after 70 abandoned, a fork child still shares the next header" {
	local i
	printf 'child\nparent\n' >"$T/data"
	plain_server -n 71 -I 1000
	rs abandon 1 -N -L 70 -F -c 6 <"$T/data"
	expect_ok abandon
	grep -q '^rawsend: abandoned=70$' "$T/abandon.err" || fail "not abandoned" "$(cat "$T/abandon.err")"
	grep -q '^rawsend: child=0$' "$T/abandon.err" || fail "the child failed" "$(cat "$T/abandon.err")"
	expect_eq "$(log_lines abandon 'PROXY header pending at fork and no shared slot free')" 0 "log lines"
	server_done 20
	# nothing is written for a connection no one used; the last one gets one header
	for ((i = 1; i <= 70; i++)); do
		expect_eq "$(data_of $i)" EOF "abandoned connection $i"
	done
	expect_eq "$(data_of 71)" "$(hdr 1)child\nparent\n" "the last connection"
}

@test "fork children that exec (the socket closed on exec) and live on do not hold the shared slot: after 70, a fork child still shares the next header" {
	printf 'child\nparent\n' >"$T/data"
	plain_server -n 71 -I 1000
	rs abandonx 1 -N -L 70 -l 'exec sleep 3' -F -c 6 <"$T/data"
	expect_ok abandonx
	grep -q '^rawsend: child=0$' "$T/abandonx.err" || fail "the child failed" "$(cat "$T/abandonx.err")"
	expect_eq "$(log_lines abandonx 'PROXY header pending at fork and no shared slot free')" 0 "log lines"
	server_done 20
	expect_eq "$(data_of 71)" "$(hdr 1)child\nparent\n" "the last connection"
}

@test "exec with the header pending on an inherited socket (connection up), v1 and v2: the header is written before exec, then the new program's bytes" {
	local ver
	for ver in 1 2; do
		plain_server -n 1 -I 500
		rs exec.$ver $ver -N -x 'printf hello >&9' </dev/null
		expect_ok exec.$ver
		server_done
		expect_eq "$(data_of 1)" "$(hdr $ver)hello" "v$ver"
	done
}

@test "exec while the connect is still in progress: the connection is reset before exec (one log line), the new program's write fails, nothing arrives" {
	plain_server -n 2 -I 300 -D 1000 -T 8
	rs execnow 1 -f -N -X 'sleep 3.5; printf hello >&9 && echo wrote || echo failed' </dev/null
	expect_eq "$OUT" failed "the new program's write"
	expect_eq "$(log_lines execnow "fd 9 to 127\\.0\\.0\\.1:$SERVER_PORT: PROXY header still pending at exec and not writable without waiting: connection reset$")" 1 "log lines"
	# only the filler connection ever reaches the server
	wait_exit "$SERVER_PID" 10 || true
	expect_eq "$(grep -c '^conn ' "$T/server.out")" 1 "connections served"
}
