#!/usr/bin/env bats
# Debian's nginx with a plain `listen 127.0.0.1:PORT;` (no proxy_protocol), preloaded
# with the shim (PROXYSHIM_TRUSTED=127.0.0.1, HAProxy's address, and 127.0.0.10 for raw
# headers), behind a real HAProxy (mode tcp, send-proxy / send-proxy-v2). curl connects
# to HAProxy from 127.0.0.11 or 127.0.0.12. Assertions are on nginx's own output: the
# access log ("$remote_addr:$remote_port $status $request"), the status codes of
# `allow 127.0.0.11; deny all;` on /acl/, and its error log.

load helpers
load daemons

setup_file() {
	need_cmds nginx haproxy curl socat
}

# start WORKERS [shim|plain]: nginx (under the shim unless plain) and HAProxy with three
# frontends to it: FE_V2 (send-proxy-v2), FE_V1 (send-proxy), FE_N (no header).
start() {
	local env=("${SHIM_ENV[@]}" PROXYSHIM_TRUSTED=127.0.0.1,127.0.0.10 PROXYSHIM_LOG="$T/proxyshim.log")
	[[ ${2:-shim} == plain ]] && env=()
	NGX_PORT=$(free_port)
	ds_nginx_start "$T" "$NGX_PORT" "$1" "${env[@]}" || fail "nginx did not start"
	track "$DS_PID"
	FE_V2=$(free_port) FE_V1=$(free_port) FE_N=$(free_port)
	ds_haproxy_config "$T"
	ds_haproxy_route "$T" V2 "$FE_V2" "127.0.0.1:$NGX_PORT" send-proxy-v2
	ds_haproxy_route "$T" V1 "$FE_V1" "127.0.0.1:$NGX_PORT" send-proxy
	ds_haproxy_route "$T" N "$FE_N" "127.0.0.1:$NGX_PORT" ""
	ds_haproxy_start "$T" || fail "haproxy did not start"
	track "$DS_PID"
	ACCESS=$T/nginx/access.log
}

# get SOURCE PORT PATH: curl from SOURCE to 127.0.0.1:PORT. Sets CODE and CLIENT (curl's
# own address:port).
get() {
	local out
	out=$(curl -s -o /dev/null --max-time 5 --interface "$1" \
		-w '%{http_code} %{local_ip}:%{local_port}' "http://127.0.0.1:$2$3") || true
	CODE=${out% *} CLIENT=${out#* }
	echo "get $1 $2 $3: $out" >>"$T/clients.log"
}

access_has() { grep -Fxq -- "$1" "$ACCESS" 2>/dev/null; }

# expect_access LINE: nginx logs exactly this line (within 5 s).
expect_access() {
	wait_until 5 access_has "$1" || fail "no access log line '$1'; the log:" "$(cat "$ACCESS")"
}

# served SOURCE FRONTEND: / and /acl/ from SOURCE through FRONTEND; nginx sees SOURCE.
served() {
	local src=$1 fe=$2 acl=403
	[[ $src == 127.0.0.11 ]] && acl=200
	get "$src" "$fe" /
	expect_eq "$CODE" 200 "GET / from $src"
	expect_access "$CLIENT 200 GET / HTTP/1.1"
	get "$src" "$fe" /acl/
	expect_eq "$CODE" "$acl" "GET /acl/ from $src"
	expect_access "$CLIENT $acl GET /acl/ HTTP/1.1"
}

# the whole scenario for one nginx
scenario() {
	start "$1"
	local fe src
	for fe in "$FE_V2" "$FE_V1"; do
		for src in 127.0.0.11 127.0.0.12; do
			served "$src" "$fe"
		done
	done
	expect_log "$T/nginx/error.log" 'access forbidden by rule, client: 127\.0\.0\.12,'
	! grep -q 'client: 127\.0\.0\.1,' "$T/nginx/error.log" || fail "nginx saw HAProxy's address:" \
		"$(grep 'client: 127\.0\.0\.1,' "$T/nginx/error.log")"
	! grep -q '^127\.0\.0\.1:' "$ACCESS" || fail "nginx logged HAProxy's address:" "$(cat "$ACCESS")"
}

@test "nginx, worker_processes auto: access log and allow/deny see the client (send-proxy-v2, send-proxy)" {
	scenario auto
}

@test "nginx, worker_processes 1: access log and allow/deny see the client (send-proxy-v2, send-proxy)" {
	scenario 1
}

# many: N requests for /acl/ from each of .11 and .12 at once, 10 in flight each.
@test "nginx, worker_processes auto: 2 x 40 concurrent requests through HAProxy, each logged as its client" {
	start auto
	local src urls=() i curls=()
	for ((i = 0; i < 40; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$FE_V2/acl/?$i"); done
	for src in 127.0.0.11 127.0.0.12; do
		curl -s --parallel --parallel-max 10 --max-time 10 --interface "$src" \
			-w '%{http_code} %{local_ip}:%{local_port}\n' "${urls[@]}" \
			>"$T/many.$src" 2>"$T/many.$src.err" &
		track $!
		curls+=($!)
	done
	for i in "${curls[@]}"; do wait_exit "$i" 20 || fail "curl status $?"; done
	wait_until 5 lines_at_least 80 || fail "only $(wc -l <"$ACCESS") requests logged"
	expect_eq "$(grep -c '^127\.0\.0\.11:[0-9]* 200 GET /acl/' "$ACCESS")" 40 ".11 requests logged as 200"
	expect_eq "$(grep -c '^127\.0\.0\.12:[0-9]* 403 GET /acl/' "$ACCESS")" 40 ".12 requests logged as 403"
	expect_eq "$(wc -l <"$ACCESS")" 80 "access log lines"
	# each logged client address:port is one that curl used, with the status it got
	sort "$T/many.127.0.0.11" "$T/many.127.0.0.12" | awk '{ print $2, $1 }' >"$T/curl.seen"
	awk '{ print $1, $2 }' "$ACCESS" | sort >"$T/nginx.seen"
	diff "$T/curl.seen" "$T/nginx.seen" >&2 || fail "curl's and nginx's views differ"
}

lines_at_least() { (($(wc -l <"$ACCESS" 2>/dev/null || echo 0) >= $1)); }

@test "nginx, raw headers from the trusted 127.0.0.10: v1 and v2 name the client; untrusted 127.0.0.20's header is data" {
	start auto
	TARGET_PORT=$NGX_PORT
	local req='GET /acl/ HTTP/1.0\r\n\r\n'
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.1 40011 "$NGX_PORT")$req"
	expect_match "$REPLY" '^HTTP/1.1 200 OK' "v1 .11 reply"
	expect_access "127.0.0.11:40011 200 GET /acl/ HTTP/1.0"
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.1 40012 "$NGX_PORT")$req"
	expect_match "$REPLY" '^HTTP/1.1 403 Forbidden' "v2 .12 reply"
	expect_access "127.0.0.12:40012 403 GET /acl/ HTTP/1.0"
	client "$PROXY" "$(v2_crc TCP4 127.0.0.11 127.0.0.1 40013 "$NGX_PORT")$req"
	expect_match "$REPLY" '^HTTP/1.1 200 OK' "v2+crc32c .11 reply"
	expect_access "127.0.0.11:40013 200 GET /acl/ HTTP/1.0"
	# not trusted: the header is the request line, nginx answers 400 and logs the real peer
	client "$UNTRUSTED" "$(v1 TCP4 127.0.0.11 127.0.0.1 40014 "$NGX_PORT")$req"
	expect_match "$REPLY" '^HTTP/1.1 400 Bad Request' "untrusted reply"
	expect_access "$CLIENT_LOCAL 400 PROXY TCP4 127.0.0.11 127.0.0.1 40014 $NGX_PORT"
	# a trusted source without a header (policy require): closed before nginx sees it
	client "$PROXY" "$req"
	expect_closed
	expect_log "$T/proxyshim.log" 'proxyshim\[[0-9]+\]: warn: .*127\.0\.0\.10'
}

# ---- control: the same nginx without the shim ----

@test "control, no shim: nginx logs HAProxy's 127.0.0.1 and its deny rule refuses .11" {
	start auto plain
	get 127.0.0.11 "$FE_N" /acl/
	expect_eq "$CODE" 403 "GET /acl/ from .11 without the shim"
	wait_until 5 test -s "$ACCESS" || fail "nothing logged"
	expect_match "$(tail -n 1 "$ACCESS")" '^127\.0\.0\.1:[0-9]+ 403 GET /acl/ HTTP/1\.1$' "access log"
	! grep -q '^127\.0\.0\.11:' "$ACCESS" || fail "nginx saw .11 without the shim"
}

@test "control, no shim: a header breaks nginx (400 Bad Request)" {
	start auto plain
	get 127.0.0.11 "$FE_V1" /
	expect_eq "$CODE" 400 "GET / with send-proxy, no shim"
	get 127.0.0.11 "$FE_V2" /
	expect_eq "$CODE" 400 "GET / with send-proxy-v2, no shim"
}
