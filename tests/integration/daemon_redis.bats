#!/usr/bin/env bats
# Debian's redis-server (own dir and port, no persistence, protected-mode off) preloaded
# with the shim (PROXYSHIM_TRUSTED=127.0.0.1) behind a real HAProxy (mode tcp,
# send-proxy / send-proxy-v2, redis-check health checks). redis-cli reaches HAProxy
# from 127.0.0.11 / 127.0.0.12 through one-shot socat relays. Assertions are on redis's
# own output: CLIENT LIST / CLIENT INFO and its log's "Accepted ADDR:PORT" lines.

load helpers
load daemons

setup_file() {
	need_cmds redis-server redis-cli haproxy socat
}

# start [shim|plain]: redis-server and HAProxy with frontends FE_V2 (send-proxy-v2),
# FE_V1 (send-proxy), FE_N (no header), and backends CV2, CV1 that only run HAProxy's
# redis-check (PING) every 200 ms with send-proxy-v2 / send-proxy.
start() {
	local env=("${SHIM_ENV[@]}" PROXYSHIM_TRUSTED=127.0.0.1 PROXYSHIM_LOG="$T/proxyshim.log")
	[[ ${1:-shim} == plain ]] && env=()
	REDIS_PORT=$(free_port)
	ds_redis_start "$T" "$REDIS_PORT" "${env[@]}" || fail "redis-server did not start"
	track "$DS_PID"
	FE_V2=$(free_port) FE_V1=$(free_port) FE_N=$(free_port)
	ds_haproxy_config "$T"
	ds_haproxy_route "$T" V2 "$FE_V2" "127.0.0.1:$REDIS_PORT" send-proxy-v2
	ds_haproxy_route "$T" V1 "$FE_V1" "127.0.0.1:$REDIS_PORT" send-proxy
	ds_haproxy_route "$T" N "$FE_N" "127.0.0.1:$REDIS_PORT" ""
	ds_haproxy_route "$T" CV2 "$(free_port)" "127.0.0.1:$REDIS_PORT" "send-proxy-v2 check inter 200" "option redis-check"
	ds_haproxy_route "$T" CV1 "$(free_port)" "127.0.0.1:$REDIS_PORT" "send-proxy check inter 200" "option redis-check"
	ds_haproxy_start "$T" || fail "haproxy did not start"
	track "$DS_PID"
}

# rcli ARGS...: redis-cli through the current relay (cut after RCLI_TIMEOUT, 5 s).
rcli() { timeout "${RCLI_TIMEOUT:-5}" redis-cli -h 127.0.0.1 -p "$RELAY_PORT" "$@"; }

# field NAME LINE: the value of NAME=... in a CLIENT LIST line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

server_is() { [[ $(ds_haproxy_server "$T" "$1" status) == "$2" ]]; }

# clients FRONTEND: .12 blocks in BLPOP while .11 asks for CLIENT LIST.
clients() {
	local fe=$1 src12 line11 line12
	via_bg c12 127.0.0.12 "$fe" rcli BLPOP "queue-$fe" 10
	src12=$(relay_src c12) || fail "relay for .12 never connected"
	expect_match "$src12" '^127\.0\.0\.12:[0-9]+$' ".12 relay source"
	via 127.0.0.11 "$fe" rcli CLIENT LIST
	expect_status 0
	expect_match "$RELAY_SRC" '^127\.0\.0\.11:[0-9]+$' ".11 relay source"
	line11=$(grep -F " addr=$RELAY_SRC " <<<"$OUT") || fail "no CLIENT LIST entry for $RELAY_SRC:" "$OUT"
	line12=$(grep -F " addr=$src12 " <<<"$OUT") || fail "no CLIENT LIST entry for $src12:" "$OUT"
	expect_eq "$(field cmd "$line11")" "client|list" ".11 entry cmd"
	expect_eq "$(field cmd "$line12")" "blpop" ".12 entry cmd"
	expect_eq "$(field laddr "$line11")" "127.0.0.1:$REDIS_PORT" ".11 entry laddr"
	# HAProxy's own health checks (PING) may be listed as 127.0.0.1, nothing else
	! grep ' addr=127\.0\.0\.1:' <<<"$OUT" | grep -Ev ' cmd=(ping|NULL|quit) ' ||
		fail "CLIENT LIST shows a client as HAProxy's address:" "$OUT"
	# redis's log (loglevel verbose): "Accepted ADDR:PORT"
	expect_log "$T/redis/redis.log" " - Accepted ${RELAY_SRC//./\\.}\$"
	expect_log "$T/redis/redis.log" " - Accepted ${src12//./\\.}\$"
	# the client's own view
	via 127.0.0.11 "$fe" rcli CLIENT INFO
	expect_match "$OUT" " addr=$RELAY_SRC " "CLIENT INFO from .11"
	# release the blocked client
	via 127.0.0.11 "$fe" rcli LPUSH "queue-$fe" done
	expect_eq "$OUT" 1 "LPUSH"
	wait_until 5 grep -q done "$T/c12.client" || fail "BLPOP did not return: $(cat "$T/c12.client")"
}

@test "redis behind HAProxy send-proxy-v2: CLIENT LIST shows each client's address and port" {
	start
	clients "$FE_V2"
	wait_until 5 server_is CV2 UP || fail "redis-check: $(ds_haproxy_server "$T" CV2 check_status)"
}

@test "redis behind HAProxy send-proxy (v1): CLIENT LIST shows each client's address and port" {
	start
	clients "$FE_V1"
	wait_until 5 server_is CV1 UP || fail "redis-check: $(ds_haproxy_server "$T" CV1 check_status)"
}

@test "control, no shim: CLIENT LIST shows HAProxy's 127.0.0.1; with a header redis breaks" {
	start plain
	via 127.0.0.11 "$FE_N" rcli CLIENT INFO
	expect_status 0
	expect_match "$OUT" ' addr=127\.0\.0\.1:[0-9]+ ' "CLIENT INFO without the shim"
	# v1: redis runs the header line as an inline command
	via 127.0.0.11 "$FE_V1" rcli PING
	expect_match "$OUT" "^ERR unknown command 'PROXY'" "PING through send-proxy without the shim"
	# v2: no answer at all (cut at 2 s); HAProxy's redis-check marks the server DOWN
	RCLI_TIMEOUT=2 via 127.0.0.11 "$FE_V2" rcli PING
	[[ $STATUS != 0 && $OUT != *PONG* ]] || fail "PING answered through send-proxy-v2 without the shim"
	wait_until 5 server_is CV2 DOWN || fail "redis-check v2: $(ds_haproxy_server "$T" CV2 status)"
}
