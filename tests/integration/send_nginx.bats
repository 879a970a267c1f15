#!/usr/bin/env bats
# Sending side against Debian's nginx: `listen 127.0.0.1:P proxy_protocol`
# requires a PROXY header (v1 or v2) on every connection and logs its source as
# $proxy_protocol_addr:$proxy_protocol_port. curl connects without blocking (connect
# returns EINPROGRESS, then poll and getsockopt(SO_ERROR)), so the header goes out on
# the SO_ERROR check or the first write. Each test has its own nginx (own prefix, conf,
# pid and logs in $T/nginx).

load helpers
load daemons
load send

setup_file() {
	need_client nginx curl
	probe_curl
}

eval "helpers_$(declare -f setup)"
setup() {
	helpers_setup
	NP=$(free_port)
	nginx_proxy_start "$T/nginx" "$NP"
	LOG=$T/nginx/access.log
}

FIXED=127.0.0.55:4321

# curl_pp NAME VERSION SOURCE [CURL-ARGS...]: curl under the client shim to nginx.
curl_pp() {
	need_curl
	local name=$1 ver=$2 src=$3
	shift 3
	run_client "$name" PROXYSHIM_SEND_TO="127.0.0.1:$NP" PROXYSHIM_SEND_VERSION="$ver" \
		PROXYSHIM_SEND_SOURCE="$src" -- curl -sS -m 5 "$@"
}

@test "nginx proxy_protocol, v1: curl under the client shim, the log shows 127.0.0.55:4321" {
	curl_pp curl 1 $FIXED "http://127.0.0.1:$NP/"
	expect_ok curl
	expect_eq "$OUT" "hello from nginx" "page"
	wait_line "$LOG" '^pp='
	expect_eq "$LINE" "pp=$FIXED ppdst=127.0.0.1:$NP remote=127.0.0.1 status=200" "access log"
}

@test "nginx proxy_protocol, v2: curl under the client shim, the log shows 127.0.0.55:4321" {
	curl_pp curl 2 $FIXED "http://127.0.0.1:$NP/"
	expect_ok curl
	expect_eq "$OUT" "hello from nginx" "page"
	wait_line "$LOG" '^pp='
	expect_eq "$LINE" "pp=$FIXED ppdst=127.0.0.1:$NP remote=127.0.0.1 status=200" "access log"
}

@test "nginx proxy_protocol, v1 and v2, source local: the log shows curl's own address (127.0.0.11)" {
	local ver
	for ver in 1 2; do
		curl_pp curl.$ver $ver local --interface 127.0.0.11 -o /dev/null \
			-w '%{http_code} %{local_ip}:%{local_port}' "http://127.0.0.1:$NP/"
		expect_ok curl.$ver
		expect_match "$OUT" '^200 127\.0\.0\.11:[0-9]+$' "curl (v$ver)"
		wait_line "$LOG" "^pp=${OUT#200 } "
		expect_eq "$LINE" "pp=${OUT#200 } ppdst=127.0.0.1:$NP remote=127.0.0.11 status=200" "access log (v$ver)"
	done
}

@test "nginx proxy_protocol, v1 and v2: two requests on one kept-alive connection, one header" {
	local ver
	for ver in 1 2; do
		: >"$LOG"
		curl_pp curl.$ver $ver 127.0.0.5$ver:432$ver -o /dev/null -o /dev/null \
			-w '%{http_code} %{num_connects}\n' "http://127.0.0.1:$NP/" "http://127.0.0.1:$NP/"
		expect_ok curl.$ver
		# one connection made for the first request, reused (0 new) for the second
		expect_eq "$OUT" $'200 1\n200 0' "curl (v$ver)"
		wait_lines "$LOG" 2
		expect_eq "$(<"$LOG")" "$(printf 'pp=127.0.0.5%s:432%s ppdst=127.0.0.1:%s remote=127.0.0.1 status=200\n' \
			$ver $ver "$NP" $ver $ver "$NP")" "access log (v$ver)"
	done
}

@test "nginx proxy_protocol, v2: a 300 KB POST right after the header (curl sends it in many writes), all of it read" {
	head -c 300000 /dev/urandom >"$T/body"
	# /upload reads the whole body before it answers (a 405 on a static file may come
	# before curl has sent anything); no Expect: 100-continue, the body follows at once
	curl_pp curl 2 $FIXED -H 'Expect:' -w ' %{http_code} %{size_upload}' \
		--data-binary @"$T/body" "http://127.0.0.1:$NP/upload"
	expect_ok curl
	expect_eq "$OUT" "got 300000
 200 300000" "curl"
	wait_line "$LOG" '^pp='
	expect_eq "$LINE" "pp=$FIXED ppdst=127.0.0.1:$NP remote=127.0.0.1 status=200" "access log"
}

@test "nginx proxy_protocol, v1 and v2: rawsend (blocking connect, HTTP/1.0), the log shows 127.0.0.55:4321" {
	local ver
	printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n' >"$T/request"
	for ver in 1 2; do
		: >"$LOG"
		run_client raw.$ver PROXYSHIM_SEND_TO="127.0.0.1:$NP" PROXYSHIM_SEND_VERSION=$ver \
			PROXYSHIM_SEND_SOURCE=$FIXED -- "$RAWSEND" -r 127.0.0.1 "$NP" <"$T/request"
		expect_ok raw.$ver
		expect_match "$OUT" $'^HTTP/1\\.1 200 OK\r\n.*\r\n\r\nhello from nginx$' "response (v$ver)"
		wait_line "$LOG" '^pp='
		expect_eq "$LINE" "pp=$FIXED ppdst=127.0.0.1:$NP remote=127.0.0.1 status=200" "access log (v$ver)"
	done
}

@test "nginx proxy_protocol, control: curl without a header, or to an unlisted port, is refused" {
	need_curl
	STATUS=0
	curl -sS -m 5 "http://127.0.0.1:$NP/" >"$T/plain.out" 2>"$T/plain.err" || STATUS=$?
	((STATUS != 0)) || fail "curl without the shim was served: $(cat "$T/plain.out")"
	# PROXYSHIM_SEND_TO names nginx's address with another port: no header
	run_client other PROXYSHIM_SEND_TO="127.0.0.1:$((NP == 65535 ? 1 : NP + 1))" \
		PROXYSHIM_SEND_SOURCE=$FIXED -- curl -sS -m 5 "http://127.0.0.1:$NP/"
	((STATUS != 0)) || fail "curl to an unlisted port was served: $OUT"
	wait_line "$T/nginx/error.log" 'broken header'
	! grep -q "^pp=$FIXED" "$LOG" || fail "nginx logged the fixed source" "$(cat "$LOG")"
}
