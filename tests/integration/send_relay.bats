#!/usr/bin/env bats
# Relay mode: a legacy relay that knows nothing of the PROXY protocol, socat
# `TCP-LISTEN:R,fork TCP:127.0.0.1:NGINX`, preloaded with BOTH libraries, in either
# order. The receiving side (PROXYSHIM_TRUSTED=127.0.0.11) takes the header a trusted
# client sends and makes getpeername() return the original client; the sending side
# (PROXYSHIM_SEND_SOURCE=accepted) puts the original client of the inbound connection
# into the header it writes to nginx (`listen … proxy_protocol`), which logs
# $proxy_protocol_addr:$proxy_protocol_port. socat's fork child keeps the connection
# its parent accepted.
#
# The client is curl from 127.0.0.11 (--interface), itself under the client shim with
# PROXYSHIM_SEND_SOURCE=127.0.0.77:7777 (a trusted hop that sends a header), or curl
# from 127.0.0.12 without any shim (an untrusted client: its own address is used).

load helpers
load daemons
load send

setup_file() {
	need_client nginx curl socat
	probe_curl
}

eval "helpers_$(declare -f setup)"
setup() {
	helpers_setup
	NP=$(free_port)
	nginx_proxy_start "$T/nginx" "$NP"
	LOG=$T/nginx/access.log
}

RECV_CLIENT=recv,client
CLIENT_RECV=client,recv

# relay_start ORDER VERSION [SOCAT-LISTEN-OPTS]: socat on 127.0.0.1:R forwarding to
# nginx, preloaded with both libraries in ORDER. Sets R, RELAY_PID.
relay_start() {
	local order=$1 ver=$2 opts=${3-,fork} libs
	case $order in
	"$RECV_CLIENT") libs=$(preload "$PS_RECV_SO" "$PS_CLIENT_SO") ;;
	"$CLIENT_RECV") libs=$(preload "$PS_CLIENT_SO" "$PS_RECV_SO") ;;
	esac
	R=$(free_port)
	ds_bg "$T" relay LD_PRELOAD="$libs" PROXYSHIM_TRUSTED=127.0.0.11 \
		PROXYSHIM_SEND_TO="127.0.0.1:$NP" PROXYSHIM_SEND_VERSION="$ver" \
		PROXYSHIM_SEND_SOURCE=accepted -- \
		socat -d -d "TCP-LISTEN:$R,bind=127.0.0.1,reuseaddr$opts" "TCP:127.0.0.1:$NP"
	RELAY_PID=$DS_PID
	track "$RELAY_PID"
	ds_wait 5 ds_listening "$R" || fail "relay did not start:" "$(cat "$T/relay.err")"
}

# hop NAME VERSION SOURCE: curl from 127.0.0.11 under the client shim (header with
# SOURCE, VERSION) to the relay.
hop() {
	need_curl
	run_client "$1" PROXYSHIM_SEND_TO="127.0.0.1:$R" PROXYSHIM_SEND_VERSION="$2" \
		PROXYSHIM_SEND_SOURCE="$3" -- \
		curl -sS -m 5 --interface 127.0.0.11 "http://127.0.0.1:$R/"
	expect_ok "$1"
	expect_eq "$OUT" "hello from nginx" "page through the relay"
}

# plain NAME: curl from 127.0.0.12 without any shim to the relay; sets PLAIN_SRC (curl's
# own address and port).
plain() {
	need_curl
	STATUS=0
	curl -sS -m 5 --interface 127.0.0.12 -w '%{local_ip}:%{local_port}' \
		"http://127.0.0.1:$R/" >"$T/$1.out" 2>"$T/$1.err" || STATUS=$?
	expect_ok "$1"
	OUT=$(<"$T/$1.out")
	expect_eq "${OUT%$'\n'*}" "hello from nginx" "page through the relay"
	PLAIN_SRC=${OUT##*$'\n'}
	expect_match "$PLAIN_SRC" '^127\.0\.0\.12:[0-9]+$' "curl's own address"
}

relay_hop() {
	local order=$1 out_ver=$2 in_ver=$3
	relay_start "$order" "$out_ver"
	hop curl "$in_ver" 127.0.0.77:7777
	wait_line "$LOG" '^pp='
	expect_eq "$LINE" "pp=127.0.0.77:7777 ppdst=127.0.0.1:$NP remote=127.0.0.1 status=200" \
		"nginx access log"
}

@test "relay LD_PRELOAD='recv client', out v1 (in v2): nginx logs the original client 127.0.0.77:7777" {
	relay_hop "$RECV_CLIENT" 1 2
}

@test "relay LD_PRELOAD='recv client', out v2 (in v1): nginx logs the original client 127.0.0.77:7777" {
	relay_hop "$RECV_CLIENT" 2 1
}

@test "relay LD_PRELOAD='client recv', out v1 (in v1): nginx logs the original client 127.0.0.77:7777" {
	relay_hop "$CLIENT_RECV" 1 1
}

@test "relay LD_PRELOAD='client recv', out v2 (in v2): nginx logs the original client 127.0.0.77:7777" {
	relay_hop "$CLIENT_RECV" 2 2
}

@test "relay, both orders: an untrusted client without a header is logged as itself (127.0.0.12)" {
	local order
	for order in "$RECV_CLIENT" "$CLIENT_RECV"; do
		: >"$LOG"
		relay_start "$order" 2
		plain curl
		wait_line "$LOG" '^pp='
		expect_eq "$LINE" "pp=$PLAIN_SRC ppdst=127.0.0.1:$NP remote=127.0.0.1 status=200" \
			"nginx access log ($order)"
		ds_stop "$RELAY_PID"
	done
}

@test "relay, both orders: successive clients through one fork relay each get their own source" {
	local order want
	for order in "$RECV_CLIENT" "$CLIENT_RECV"; do
		: >"$LOG"
		relay_start "$order" 1
		hop a 2 127.0.0.77:7777
		plain b
		hop c 1 127.0.0.78:7778
		wait_lines "$LOG" 3
		want=$(printf 'pp=%s ppdst=127.0.0.1:%s remote=127.0.0.1 status=200\n' \
			127.0.0.77:7777 "$NP" "$PLAIN_SRC" "$NP" 127.0.0.78:7778 "$NP")
		expect_eq "$(<"$LOG")" "$want" "nginx access log ($order)"
		ds_stop "$RELAY_PID"
	done
}

# raw_hop NAME VERSION SOURCE: the same hop with rawsend (blocking connect, HTTP/1.0).
raw_hop() {
	printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n' >"$T/request"
	run_client "$1" PROXYSHIM_SEND_TO="127.0.0.1:$R" PROXYSHIM_SEND_VERSION="$2" \
		PROXYSHIM_SEND_SOURCE="$3" -- "$RAWSEND" -s 127.0.0.11 -r 127.0.0.1 "$R" <"$T/request"
	expect_ok "$1"
	expect_match "$OUT" $'^HTTP/1\\.1 200 OK\r\n.*\r\n\r\nhello from nginx$' "response through the relay"
}

@test "relay, both orders, v1 and v2, rawsend as the client (blocking connect)" {
	local order ver n=0
	for order in "$RECV_CLIENT" "$CLIENT_RECV"; do
		for ver in 1 2; do
			: >"$LOG"
			relay_start "$order" "$ver"
			n=$((n + 1))
			raw_hop raw.$n $((3 - ver)) "127.0.0.8$n:808$n"
			wait_line "$LOG" '^pp='
			expect_eq "$LINE" "pp=127.0.0.8$n:808$n ppdst=127.0.0.1:$NP remote=127.0.0.1 status=200" \
				"nginx access log ($order, out v$ver)"
			ds_stop "$RELAY_PID"
		done
	done
}

@test "relay without fork (accept and connect in one process), both orders" {
	local order
	for order in "$RECV_CLIENT" "$CLIENT_RECV"; do
		: >"$LOG"
		relay_start "$order" 2 ""
		hop curl 1 127.0.0.79:7779
		wait_line "$LOG" '^pp='
		expect_eq "$LINE" "pp=127.0.0.79:7779 ppdst=127.0.0.1:$NP remote=127.0.0.1 status=200" \
			"nginx access log ($order)"
		wait_exit "$RELAY_PID" 5 || fail "one-shot relay still running"
	done
}
