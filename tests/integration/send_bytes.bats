#!/usr/bin/env bats
# Sending side, byte for byte: a listener that records exactly what it
# received (socat -u TCP-LISTEN … CREATE:file) shows that
#   - connections to destinations not in PROXYSHIM_SEND_TO are untouched (cmp with what
#     the client sent), including a listed address with another port;
#   - a listed destination gets exactly one header, the exact bytes of a v1 / v2 header
#     (built independently by helpers.bash's v1 / v2), then the application bytes
#     unchanged;
# and, through HAProxy `accept-proxy` in front of a server that speaks first (HAProxy
# connects to it only once it has the header), that a client which reads before it ever
# writes sends the header in time, whichever call it makes first after a non-blocking
# connect.

load helpers
load daemons
load send

setup_file() {
	need_client socat curl haproxy perl
	probe_curl
}

FIXED=127.0.0.55:4321

# send_data NAME HOST [VAR=VALUE...]: rawsend under the client shim sends $T/data to the
# recorder at HOST:$REC_PORT; waits for the recorder to finish.
send_data() {
	local name=$1 host=$2
	shift 2
	run_client "$name" "$@" -- "$RAWSEND" -v -t 5000 "$host" "$REC_PORT" <"$T/data"
	expect_ok "$name"
	recorder_done
}

# expected HEADER-ESCAPED: $T/expected = the header's bytes, then $T/data.
expected() {
	emit "$1" >"$T/expected"
	cat "$T/data" >>"$T/expected"
}

other_port() { echo $(($1 == 65535 ? 1 : $1 + 1)); }

@test "unlisted destinations are untouched byte for byte (200 KB of random bytes, rawsend)" {
	local to
	head -c 200000 /dev/urandom >"$T/data"
	for to in 127.0.0.2 "127.0.0.2:@P" "127.0.0.1:@Q" 10.0.0.0/8 127.0.1.0/24 "[::1]:@P" \
		2001:db8::/32 "127.0.0.1:@Q,127.0.0.2,::1"; do
		recorder_start rec
		to=${to//@P/$REC_PORT}
		to=${to//@Q/$(other_port "$REC_PORT")}
		send_data send 127.0.0.1 PROXYSHIM_SEND_TO="$to" PROXYSHIM_SEND_SOURCE=$FIXED
		expect_same_bytes "$T/data" "$T/rec.bin" || fail "PROXYSHIM_SEND_TO='$to'"
	done
}

@test "unlisted destination (listed address, other port) untouched: socat" {
	head -c 100000 /dev/urandom >"$T/data"
	recorder_start rec
	run_client socat PROXYSHIM_SEND_TO="127.0.0.1:$(other_port "$REC_PORT")" -- \
		socat -u - "TCP:127.0.0.1:$REC_PORT" <"$T/data"
	expect_ok socat
	recorder_done
	expect_same_bytes "$T/data" "$T/rec.bin"
}

@test "unlisted destination (listed address, other port) untouched: curl" {
	need_curl
	# curl (non-blocking connect): the same request as curl without any preload
	recorder_start plain
	curl -s -m 1 -H 'Host: x' "http://127.0.0.1:$REC_PORT/" >/dev/null 2>&1 || true
	recorder_done
	recorder_start shimmed
	run_client curl PROXYSHIM_SEND_TO="127.0.0.1:$(other_port "$REC_PORT")" -- \
		curl -s -m 1 -H 'Host: x' "http://127.0.0.1:$REC_PORT/"
	recorder_done
	[[ -s $T/plain.bin ]] || fail "curl sent nothing"
	expect_same_bytes "$T/plain.bin" "$T/shimmed.bin"
}

@test "listed destination, v1 and v2, fixed source: exactly one header, exact bytes, then the data" {
	local ver
	head -c 200000 /dev/urandom >"$T/data"
	for ver in 1 2; do
		recorder_start rec.$ver
		send_data send.$ver 127.0.0.1 PROXYSHIM_SEND_TO="127.0.0.1:$REC_PORT" \
			PROXYSHIM_SEND_VERSION=$ver PROXYSHIM_SEND_SOURCE=$FIXED
		expected "$(v$ver TCP4 127.0.0.55 127.0.0.1 4321 "$REC_PORT")"
		expect_same_bytes "$T/expected" "$T/rec.$ver.bin" || fail "v$ver"
	done
}

@test "listed destination, v1 and v2, source local (from 127.0.0.3): the socket's own address" {
	local ver src
	head -c 5000 /dev/urandom >"$T/data"
	for ver in 1 2; do
		recorder_start rec.$ver
		run_client send.$ver PROXYSHIM_SEND_TO=127.0.0.0/8 PROXYSHIM_SEND_VERSION=$ver -- \
			"$RAWSEND" -s 127.0.0.3 -v 127.0.0.1 "$REC_PORT" <"$T/data"
		expect_ok send.$ver
		recorder_done
		src=$(sed -n 's/^rawsend: local=//p' "$T/send.$ver.err")
		expect_match "$src" '^127\.0\.0\.3:[0-9]+$' "rawsend's local address"
		expected "$(v$ver TCP4 127.0.0.3 127.0.0.1 "${src#*:}" "$REC_PORT")"
		expect_same_bytes "$T/expected" "$T/rec.$ver.bin" || fail "v$ver"
	done
}

@test "IPv6 destination [::1]:P, v1 and v2: fixed [2001:db8::55]:4321 and local sources, exact bytes" {
	local ver src
	head -c 5000 /dev/urandom >"$T/data"
	for ver in 1 2; do
		recorder_start fixed.$ver ::1
		send_data fsend.$ver ::1 PROXYSHIM_SEND_TO="[::1]:$REC_PORT" \
			PROXYSHIM_SEND_VERSION=$ver PROXYSHIM_SEND_SOURCE="[2001:db8::55]:4321"
		expected "$(v$ver TCP6 2001:db8::55 ::1 4321 "$REC_PORT")"
		expect_same_bytes "$T/expected" "$T/fixed.$ver.bin" || fail "fixed, v$ver"

		recorder_start local.$ver ::1
		send_data lsend.$ver ::1 PROXYSHIM_SEND_TO="::1" PROXYSHIM_SEND_VERSION=$ver
		src=$(sed -n 's/^rawsend: local=//p' "$T/lsend.$ver.err")
		expect_match "$src" '^\[::1\]:[0-9]+$' "rawsend's local address"
		expected "$(v$ver TCP6 ::1 ::1 "${src##*:}" "$REC_PORT")"
		expect_same_bytes "$T/expected" "$T/local.$ver.bin" || fail "local, v$ver"
	done
}

@test "mixed families, v1 and v2: the IPv4 side is written as ::ffff:a.b.c.d (TCP6)" {
	local ver
	head -c 1000 /dev/urandom >"$T/data"
	for ver in 1 2; do
		# IPv4 source, IPv6 destination
		recorder_start a.$ver ::1
		send_data asend.$ver ::1 PROXYSHIM_SEND_TO="[::1]:$REC_PORT" \
			PROXYSHIM_SEND_VERSION=$ver PROXYSHIM_SEND_SOURCE=$FIXED
		expected "$(v$ver TCP6 ::ffff:127.0.0.55 ::1 4321 "$REC_PORT")"
		expect_same_bytes "$T/expected" "$T/a.$ver.bin" || fail "v4 source, v$ver"
		# IPv6 source, IPv4 destination
		recorder_start b.$ver
		send_data bsend.$ver 127.0.0.1 PROXYSHIM_SEND_TO="127.0.0.1:$REC_PORT" \
			PROXYSHIM_SEND_VERSION=$ver PROXYSHIM_SEND_SOURCE="[2001:db8::55]:4321"
		expected "$(v$ver TCP6 2001:db8::55 ::ffff:127.0.0.1 4321 "$REC_PORT")"
		expect_same_bytes "$T/expected" "$T/b.$ver.bin" || fail "v6 source, v$ver"
	done
}

@test "curl (non-blocking connect), v1 and v2: one header, then curl's request unchanged" {
	need_curl
	local ver
	recorder_start plain
	curl -s -m 1 -H 'Host: x' "http://127.0.0.1:$REC_PORT/" >/dev/null 2>&1 || true
	recorder_done
	[[ -s $T/plain.bin ]] || fail "curl sent nothing"
	for ver in 1 2; do
		recorder_start rec.$ver
		run_client curl.$ver PROXYSHIM_SEND_TO="127.0.0.1:$REC_PORT" PROXYSHIM_SEND_VERSION=$ver \
			PROXYSHIM_SEND_SOURCE=$FIXED -- curl -s -m 1 -H 'Host: x' "http://127.0.0.1:$REC_PORT/"
		recorder_done
		emit "$(v$ver TCP4 127.0.0.55 127.0.0.1 4321 "$REC_PORT")" >"$T/expected"
		cat "$T/plain.bin" >>"$T/expected"
		expect_same_bytes "$T/expected" "$T/rec.$ver.bin" || fail "v$ver"
	done
}

@test "socat (blocking connect), v2: one header, then 100 KB unchanged" {
	head -c 100000 /dev/urandom >"$T/data"
	recorder_start rec
	run_client socat PROXYSHIM_SEND_TO="127.0.0.1:$REC_PORT" PROXYSHIM_SEND_VERSION=2 \
		PROXYSHIM_SEND_SOURCE=$FIXED -- socat -u - "TCP:127.0.0.1:$REC_PORT" <"$T/data"
	expect_ok socat
	recorder_done
	expected "$(v2 TCP4 127.0.0.55 127.0.0.1 4321 "$REC_PORT")"
	expect_same_bytes "$T/expected" "$T/rec.bin"
}

@test "non-blocking connect then write, dup+close+write, sendto(MSG_FASTOPEN) blocking and not, v1 and v2: exact bytes" {
	local mode ver
	printf 'hello\n' >"$T/data"
	for ver in 1 2; do
		for mode in write dup fastopen nbfastopen; do
			recorder_start $mode.$ver
			run_client nb.$mode.$ver PROXYSHIM_SEND_TO="127.0.0.1:$REC_PORT" \
				PROXYSHIM_SEND_VERSION=$ver PROXYSHIM_SEND_SOURCE=$FIXED -- \
				bash -c "$(declare -f nbclient); nbclient $mode 127.0.0.1 $REC_PORT"
			expect_ok nb.$mode.$ver
			recorder_done
			expected "$(v$ver TCP4 127.0.0.55 127.0.0.1 4321 "$REC_PORT")"
			expect_same_bytes "$T/expected" "$T/$mode.$ver.bin" || fail "$mode, v$ver"
		done
	done
}

@test "non-blocking connect then sendmmsg, with and without PROXYSHIM_SEND_UDP=every: the pending header goes first" {
	local udp ver=2
	printf 'hello\n' >"$T/data"
	for udp in off every; do
		recorder_start mmsg.$udp
		run_client mmsg.$udp PROXYSHIM_SEND_TO="127.0.0.1:$REC_PORT" PROXYSHIM_SEND_VERSION=$ver \
			PROXYSHIM_SEND_SOURCE=$FIXED PROXYSHIM_SEND_UDP=$udp -- \
			/usr/bin/python3 "$BATS_TEST_DIRNAME/../helpers/mmsgclient.py" 127.0.0.1 "$REC_PORT"
		expect_ok mmsg.$udp
		recorder_done
		expected "$(v$ver TCP4 127.0.0.55 127.0.0.1 4321 "$REC_PORT")"
		expect_same_bytes "$T/expected" "$T/mmsg.$udp.bin" || fail "SEND_UDP=$udp"
	done
}

@test "fork after a non-blocking connect, child and parent both write: still one header" {
	# The pending header moves at fork to a table parent and child share; the first
	# writer sends it, the other finds it written there (send_failclosed.bats has the
	# cases where the kernel has not sent it yet, and the limits).
	local ver
	printf 'child\nparent\n' >"$T/data"
	for ver in 1 2; do
		recorder_start fork.$ver
		run_client fork.$ver PROXYSHIM_SEND_TO="127.0.0.1:$REC_PORT" \
			PROXYSHIM_SEND_VERSION=$ver PROXYSHIM_SEND_SOURCE=$FIXED -- \
			bash -c "$(declare -f nbclient); nbclient fork 127.0.0.1 $REC_PORT"
		expect_ok fork.$ver
		recorder_done
		expected "$(v$ver TCP4 127.0.0.55 127.0.0.1 4321 "$REC_PORT")"
		expect_same_bytes "$T/expected" "$T/fork.$ver.bin" || fail "v$ver"
	done
}

# ---- a client that reads first, a server that speaks first, HAProxy between ----

# greet_route COUNT: testserver -m greet (HELLO\r\n first, then reads until 300 ms idle,
# replies "OK <peer>") for COUNT connections behind a mode tcp accept-proxy frontend HAP.
greet_route() {
	plain_server -m greet -n "$1" -I 300
	HAP=$(free_port)
	haproxy_config
	haproxy_front fe_greet "$HAP" tcp "127.0.0.1:$SERVER_PORT"
	haproxy_run
}

@test "read-first and other non-blocking clients (read, recv, nbread, SO_ERROR, connect again, write, dup, TFO) through HAProxy, v1 and v2" {
	local modes=(read recv nbread soerror reconnect write dup fastopen nbfastopen) mode ver n=0
	greet_route 18
	for ver in 1 2; do
		for mode in "${modes[@]}"; do
			run_client nb.$mode.$ver PROXYSHIM_SEND_TO="127.0.0.1:$HAP" PROXYSHIM_SEND_VERSION=$ver \
				PROXYSHIM_SEND_SOURCE="127.0.0.$((60 + ++n)):$((5000 + n))" -- \
				bash -c "$(declare -f nbclient); nbclient $mode 127.0.0.1 $HAP"
			expect_ok nb.$mode.$ver
			expect_match "$OUT" $'^HELLO\r\nOK 127\\.0\\.0\\.1:[0-9]+$' "$mode, v$ver"
			wait_line "$T/haproxy.out" "^client=127\\.0\\.0\\.$((60 + n)):$((5000 + n)) "
			expect_eq "$LINE" "client=127.0.0.$((60 + n)):$((5000 + n)) front=127.0.0.1:$HAP fe=fe_greet mode=tcp" \
				"haproxy log ($mode, v$ver)"
		done
	done
	server_done
	expect_match "$(grep -c 'data=TIMEOUT$' "$T/server.out")" '^10$' "connections that never wrote"
	expect_match "$(grep -c 'data="hello\\n"$' "$T/server.out")" '^8$' "connections that wrote hello"
}

@test "read-first client, control: without the client shim it never gets a greeting" {
	greet_route 1
	STATUS=0
	NB_TIMEOUT=2 nbclient read 127.0.0.1 "$HAP" >"$T/plain.out" 2>"$T/plain.err" || STATUS=$?
	((STATUS == 4)) || fail "status $STATUS (expected 4: no EOF within 2 s)" "$(cat "$T/plain.out" "$T/plain.err")"
	[[ ! -s $T/plain.out ]] || fail "got: $(cat -v "$T/plain.out")"
}
