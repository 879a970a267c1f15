#!/usr/bin/env bats
# Descriptor identity (dup, reuse of a number) and concurrency (threads, epoll).

load helpers

@test "dup: the copy reports the original client after the accepted fd is closed" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 2 -d
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	expect_reply "OK 127.0.0.11:10011"
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.2 10012 8443)$REQ"
	expect_reply "OK 127.0.0.12:10012"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")" "$(conn_line 127.0.0.12:10012 "$REQ")"
}

@test "reuse: an fd number closed behind the shim's back never reports a stale client" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 3 -R
	local i reuse
	for i in 1 2 3; do
		client "$PROXY" "$(v2 TCP4 127.0.0.1$i 127.0.0.2 1001$i 8443)$REQ"
		expect_reply "OK 127.0.0.1$i:1001$i"
	done
	server_done
	# the fd number depends on what the shim holds open; same=1 and the peer must hold
	reuse="reuse fd=$(sed -n '2s/^reuse fd=\([0-9]*\) .*/\1/p' "$T/server.out") same=1"
	reuse+=" peer=127.0.0.1:$SERVER_PORT"
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")" "$reuse" \
		"$(conn_line 127.0.0.12:10012 "$REQ")" "$reuse" \
		"$(conn_line 127.0.0.13:10013 "$REQ")" "$reuse"
}

# parallel_clients MODE: 50 proxied connections at once, v1 and v2 from 127.0.1.N, every
# 5th header trickling in; each is reported as its own client.
parallel_clients() {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 50 -m "$1"
	local i hdr want=() slow
	for i in $(seq 1 50); do
		slow=()
		((i % 5)) || slow=(-c 1 -d 5)
		if ((i % 2)); then
			hdr=$(v1 TCP4 "127.0.1.$i" 127.0.0.2 $((20000 + i)) 8443)
		else
			hdr=$(v2 TCP4 "127.0.1.$i" 127.0.0.2 $((20000 + i)) 8443)
		fi
		client_bg "$i" "$PROXY" "${hdr}client $i\\n" "${slow[@]}"
		want+=("$(conn_line "127.0.1.$i:$((20000 + i))" "client $i\\n")")
	done
	wait_for_lines "$T/server.out" 50 20
	wait_clients 10
	server_done
	expect_output_unordered "${want[@]}"
	for i in $(seq 1 50); do
		[[ $(<"$T/reply.$i") == "OK 127.0.1.$i:$((20000 + i))" ]] ||
			fail "client $i got '$(<"$T/reply.$i")'"
	done
}

@test "50 parallel proxied connections on 8 accepting threads: each its own client" {
	parallel_clients threads:8
}

@test "50 parallel proxied connections on an epoll loop: each its own client" {
	parallel_clients epoll
}

@test "epoll event loop with non-blocking accept4: proxied, trickling and untrusted" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 4 -m epoll
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	expect_reply "OK 127.0.0.11:10011"
	client "$PROXY" "$(v2_crc TCP4 127.0.0.12 127.0.0.2 10012 8443)$REQ"
	expect_reply "OK 127.0.0.12:10012"
	client "$PROXY" "$(v2 TCP4 127.0.0.13 127.0.0.2 10013 8443)$REQ" -c 1 -d 10
	expect_reply "OK 127.0.0.13:10013"
	client "$UNTRUSTED" "$REQ"
	expect_reply "OK $CLIENT_LOCAL"
	server_done
	expect_output_unordered "$(conn_line 127.0.0.11:10011 "$REQ")" \
		"$(conn_line 127.0.0.12:10012 "$REQ")" "$(conn_line 127.0.0.13:10013 "$REQ")" \
		"$(conn_line "$CLIENT_LOCAL" "$REQ")"
}

@test "epoll event loop: a trickling header does not hold up the next connection" {
	# The contract: on a non-blocking listener accept never waits; the incomplete connection
	# is kept aside and the listener reported readable again once its header is in.
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 2 -m epoll
	client_bg slow "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ" -c 1 -d 20
	sleep 0.1
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.2 10012 8443)$REQ"
	expect_reply "OK 127.0.0.12:10012"
	((CLIENT_FIRST_MS < 500)) || fail "fast client served after $CLIENT_FIRST_MS ms"
	wait_clients 10
	server_done
	expect_output "$(conn_line 127.0.0.12:10012 "$REQ")" "$(conn_line 127.0.0.11:10011 "$REQ")"
	[[ $(<"$T/reply.slow") == "OK 127.0.0.11:10011" ]] || fail "slow: $(<"$T/reply.slow")"
}

@test "epoll event loop: a bad header is closed, the loop serves the next one" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m epoll
	expect_refused "PROXY TCP4 127.0.0.011 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "epoll event loop: a timed-out header is closed, the loop serves the next one" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=300 -- -n 1 -m epoll
	expect_refused 'PROXY TCP4 127.0.0.11' -k -t 3000
}
