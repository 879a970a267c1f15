#!/usr/bin/env bats
# Sending side against Debian's HAProxy 2.6: `bind 127.0.0.1:P accept-proxy`
# only accepts connections that start with a PROXY header (v1 or v2, it detects which)
# and logs the header's source as %ci:%cp and its destination as %fi:%fp. Clients run
# under libproxyshim-client.so: rawsend and socat (mode tcp, to a testserver backend),
# curl (mode http, to nginx), redis-cli (mode tcp, to redis-server). HAProxy itself is
# never preloaded. Each test has its own HAProxy configuration and ports.

load helpers
load daemons
load send

setup_file() {
	need_client haproxy socat curl nginx redis-server redis-cli
	probe_curl
}

PAYLOAD='hello through haproxy\n'
FIXED=127.0.0.55:4321

# tcp_route: a testserver backend (one connection) behind a mode tcp accept-proxy
# frontend on HAP.
tcp_route() {
	plain_server -n 1 -I 3000
	HAP=$(free_port)
	haproxy_config
	haproxy_front fe_tcp "$HAP" tcp "127.0.0.1:$SERVER_PORT"
	haproxy_run
}

# http_route: nginx (plain, from scripts/lib/daemons.sh) behind a mode http accept-proxy
# frontend on HAP.
http_route() {
	need_curl
	local np
	np=$(free_port)
	ds_nginx_start "$T" "$np" 1 || fail "nginx did not start"
	track "$DS_PID"
	HAP=$(free_port)
	haproxy_config
	haproxy_front fe_http "$HAP" http "127.0.0.1:$np"
	haproxy_run
}

# rawsend_via_haproxy VERSION SOURCE [RAWSEND-OPTS...]: rawsend under the client shim to
# HAP; the backend must get exactly the payload (HAProxy removed exactly one header).
rawsend_via_haproxy() {
	local ver=$1 src=$2
	shift 2
	emit "$PAYLOAD" >"$T/payload"
	run_client rawsend PROXYSHIM_SEND_TO="127.0.0.1:$HAP" PROXYSHIM_SEND_VERSION="$ver" \
		PROXYSHIM_SEND_SOURCE="$src" -- "$RAWSEND" -r -v "$@" 127.0.0.1 "$HAP" <"$T/payload"
}

@test "HAProxy tcp accept-proxy, v1, fixed source: logs 127.0.0.55:4321; backend gets only the payload" {
	tcp_route
	rawsend_via_haproxy 1 $FIXED
	expect_ok rawsend
	expect_match "$OUT" '^OK 127\.0\.0\.1:[0-9]+$' "reply (the backend sees HAProxy)"
	wait_line "$T/haproxy.out" "^client="
	expect_eq "$LINE" "client=$FIXED front=127.0.0.1:$HAP fe=fe_tcp mode=tcp" "haproxy log"
	server_done
	expect_match "$(<"$T/server.out")" ' data="hello through haproxy\\n"$' "backend data"
}

@test "HAProxy tcp accept-proxy, v2, fixed source: logs 127.0.0.55:4321; backend gets only the payload" {
	tcp_route
	rawsend_via_haproxy 2 $FIXED
	expect_ok rawsend
	wait_line "$T/haproxy.out" "^client="
	expect_eq "$LINE" "client=$FIXED front=127.0.0.1:$HAP fe=fe_tcp mode=tcp" "haproxy log"
	server_done
	expect_match "$(<"$T/server.out")" ' data="hello through haproxy\\n"$' "backend data"
}

@test "HAProxy tcp accept-proxy, v1 and v2, source local: logs the client's own address and port" {
	local ver local_addr
	for ver in 1 2; do
		tcp_route
		rawsend_via_haproxy "$ver" local -s 127.0.0.1
		expect_ok rawsend
		local_addr=$(sed -n 's/^rawsend: local=//p' "$T/rawsend.err")
		expect_match "$local_addr" '^127\.0\.0\.1:[0-9]+$' "rawsend's local address"
		wait_line "$T/haproxy.out" "^client="
		expect_eq "$LINE" "client=$local_addr front=127.0.0.1:$HAP fe=fe_tcp mode=tcp" "haproxy log (v$ver)"
		server_done
		expect_match "$(<"$T/server.out")" ' data="hello through haproxy\\n"$' "backend data (v$ver)"
		stop_all
		rm -f "$T/haproxy.out"
	done
}

@test "HAProxy tcp accept-proxy, v1 and v2: socat as the client" {
	local ver
	for ver in 1 2; do
		tcp_route
		emit "$PAYLOAD" >"$T/payload"
		run_client socat PROXYSHIM_SEND_TO="127.0.0.1:$HAP" PROXYSHIM_SEND_VERSION=$ver \
			PROXYSHIM_SEND_SOURCE=$FIXED -- \
			socat -t 5 - "TCP:127.0.0.1:$HAP" <"$T/payload"
		expect_ok socat
		expect_match "$OUT" '^OK 127\.0\.0\.1:[0-9]+$' "socat's output (v$ver)"
		wait_line "$T/haproxy.out" "^client="
		expect_eq "$LINE" "client=$FIXED front=127.0.0.1:$HAP fe=fe_tcp mode=tcp" "haproxy log (v$ver)"
		server_done
		stop_all
		rm -f "$T/haproxy.out"
	done
}

@test "HAProxy http accept-proxy, v1: curl (non-blocking connect), fixed source logged, 200" {
	http_route
	run_client curl PROXYSHIM_SEND_TO="127.0.0.1:$HAP" PROXYSHIM_SEND_VERSION=1 \
		PROXYSHIM_SEND_SOURCE=$FIXED -- curl -sS -m 5 "http://127.0.0.1:$HAP/"
	expect_ok curl
	expect_eq "$OUT" "hello" "page"
	wait_line "$T/haproxy.out" "^client="
	expect_eq "$LINE" "client=$FIXED front=127.0.0.1:$HAP fe=fe_http mode=http status=200 GET / HTTP/1.1" "haproxy log"
}

@test "HAProxy http accept-proxy, v2: curl (non-blocking connect), fixed source logged, 200" {
	http_route
	run_client curl PROXYSHIM_SEND_TO="127.0.0.1:$HAP" PROXYSHIM_SEND_VERSION=2 \
		PROXYSHIM_SEND_SOURCE=$FIXED -- curl -sS -m 5 "http://127.0.0.1:$HAP/"
	expect_ok curl
	expect_eq "$OUT" "hello" "page"
	wait_line "$T/haproxy.out" "^client="
	expect_eq "$LINE" "client=$FIXED front=127.0.0.1:$HAP fe=fe_http mode=http status=200 GET / HTTP/1.1" "haproxy log"
}

@test "HAProxy http accept-proxy, v1 and v2, source local: logs curl's own address and port" {
	local ver
	http_route
	for ver in 1 2; do
		run_client curl.$ver PROXYSHIM_SEND_TO="127.0.0.1:$HAP" PROXYSHIM_SEND_VERSION=$ver -- \
			curl -sS -m 5 -o /dev/null -w '%{http_code} %{local_ip}:%{local_port}' \
			"http://127.0.0.1:$HAP/"
		expect_ok curl.$ver
		expect_match "$OUT" '^200 127\.0\.0\.1:[0-9]+$' "curl (v$ver)"
		wait_line "$T/haproxy.out" "^client=${OUT#200 } "
		expect_eq "$LINE" "client=${OUT#200 } front=127.0.0.1:$HAP fe=fe_http mode=http status=200 GET / HTTP/1.1" "haproxy log (v$ver)"
	done
}

@test "HAProxy http accept-proxy, control: curl without the client shim is refused" {
	http_route
	STATUS=0
	curl -sS -m 5 "http://127.0.0.1:$HAP/" >"$T/curl.out" 2>"$T/curl.err" || STATUS=$?
	((STATUS != 0)) || fail "curl without a header was served: $(cat "$T/curl.out")"
	# and a destination not in PROXYSHIM_SEND_TO gets no header either
	STATUS=0
	run_client curl2 PROXYSHIM_SEND_TO="127.0.0.2:$HAP" PROXYSHIM_SEND_SOURCE=$FIXED -- \
		curl -sS -m 5 "http://127.0.0.1:$HAP/"
	((STATUS != 0)) || fail "curl to an unlisted destination was served: $OUT"
	grep -q "^client=$FIXED" "$T/haproxy.out" && fail "haproxy logged the fixed source"
	true
}

# redis_route: redis-server (plain) behind a mode tcp accept-proxy frontend on HAP.
redis_route() {
	local rp
	rp=$(free_port)
	ds_redis_start "$T" "$rp" || fail "redis-server did not start"
	track "$DS_PID"
	HAP=$(free_port)
	haproxy_config
	haproxy_front fe_redis "$HAP" tcp "127.0.0.1:$rp"
	haproxy_run
}

redis_through_haproxy() {
	local ver=$1
	redis_route
	run_client redis.ping PROXYSHIM_SEND_TO="127.0.0.1:$HAP" PROXYSHIM_SEND_VERSION=$ver \
		PROXYSHIM_SEND_SOURCE=$FIXED -- redis-cli -h 127.0.0.1 -p "$HAP" PING
	expect_ok redis.ping
	expect_eq "$OUT" PONG "PING (v$ver)"
	run_client redis.list PROXYSHIM_SEND_TO="127.0.0.1:$HAP" PROXYSHIM_SEND_VERSION=$ver \
		PROXYSHIM_SEND_SOURCE=$FIXED -- redis-cli -h 127.0.0.1 -p "$HAP" CLIENT LIST
	expect_ok redis.list
	expect_match "$OUT" '^id=[0-9]+ addr=127\.0\.0\.1:[0-9]+ .* cmd=client' "CLIENT LIST (v$ver)"
	wait_lines "$T/haproxy.out" 2
	expect_eq "$(grep -c "^client=$FIXED front=127.0.0.1:$HAP fe=fe_redis mode=tcp\$" "$T/haproxy.out")" 2 \
		"haproxy log lines with the fixed source (v$ver)"
}

@test "redis-cli -> HAProxy accept-proxy (v1) -> redis-server: PONG, CLIENT LIST, source logged" {
	redis_through_haproxy 1
}

@test "redis-cli -> HAProxy accept-proxy (v2) -> redis-server: PONG, CLIENT LIST, source logged" {
	redis_through_haproxy 2
}
