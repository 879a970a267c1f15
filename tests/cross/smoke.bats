#!/usr/bin/env bats
# Smoke run of another architecture's build (make cross-test ARCH=aarch64) under
# qemu-user: its test programs under its own libproxyshim.so and libproxyshim-client.so,
# behind and in front of this machine's HAProxy and nginx. Loopback addresses only, in
# the headers too.

load cross

setup_file() {
	[[ -x /usr/sbin/haproxy ]] || skip "no /usr/sbin/haproxy (scripts/install-deps-cross)"
	command -v "qemu-$PS_CROSS_ARCH" >/dev/null || skip "no qemu-$PS_CROSS_ARCH"
}

@test "raw system calls before the shim has resolved libc (dup2 as dup3, epoll_wait as epoll_pwait on arm64)" {
	local out
	expect_foreign early.so
	# early.so, preloaded second, calls the hooks from its constructor, before the shim's
	out=$(env QEMU_SET_ENV="LD_PRELOAD=$PS_PRELOAD $PS_BUILD/early.so" PROXYSHIM_TRUSTED=127.0.0.1 \
		timeout 20 "$TESTSERVER" -F 2>&1) || fail "testserver -F with early.so:" "$out"
	[[ ${out%%$'\n'*} == "early: accept=1 dup=1,1,1 getpeername=0 same=1 dup2self=1,1 wait=0" ]] ||
		fail "early.so: $out"
}

# through_haproxy OPTIONS: two clients from 127.0.0.11 and .12 through HAProxy with
# OPTIONS to the emulated test server under the emulated shim; each is reported as itself.
through_haproxy() {
	local c11 c12
	expect_foreign testserver
	expect_foreign libproxyshim.so
	start_server PROXYSHIM_TRUSTED=127.0.0.1 -- -n 2
	start_haproxy "$1"
	client 127.0.0.11 'hello from 11\r\n'
	c11=$CLIENT_LOCAL
	expect_reply "OK $c11"
	client 127.0.0.12 'hello from 12\r\n'
	c12=$CLIENT_LOCAL
	expect_reply "OK $c12"
	server_done
	expect_output "$(conn_line "$c11" 'hello from 11\r\n')" "$(conn_line "$c12" 'hello from 12\r\n')"
}

@test "receiving: HAProxy send-proxy (v1) to the test server, each client reported as itself" {
	through_haproxy send-proxy
}

@test "receiving: HAProxy send-proxy-v2 to the test server, each client reported as itself" {
	through_haproxy send-proxy-v2
}

@test "receiving: without the shim the test server sees HAProxy (the control)" {
	run_server "$TESTSERVER" 30 -- -n 1
	start_haproxy send-proxy-v2
	client 127.0.0.11 'hello\r\n'
	[[ $REPLY == "OK 127.0.0.1:"* ]] || fail "reply '$REPLY': the control should see HAProxy"
	server_done
}

@test "sending: rawsend under the client library to nginx proxy_protocol (v1 and v2)" {
	local np ver
	expect_foreign libproxyshim-client.so
	command -v nginx >/dev/null || skip "no nginx"
	np=$(free_port)
	nginx_proxy_start "$T/nginx" "$np"
	printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n' >"$T/request"
	for ver in 1 2; do
		: >"$T/nginx/access.log"
		run_client raw.$ver PROXYSHIM_SEND_TO="127.0.0.1:$np" PROXYSHIM_SEND_VERSION=$ver \
			PROXYSHIM_SEND_SOURCE=127.0.0.55:4321 -- "$RAWSEND" -r 127.0.0.1 "$np" <"$T/request"
		expect_ok raw.$ver
		expect_match "$OUT" $'^HTTP/1\\.1 200 OK\r\n.*\r\n\r\nhello from nginx$' "response (v$ver)"
		wait_line "$T/nginx/access.log" '^pp='
		expect_eq "$LINE" "pp=127.0.0.55:4321 ppdst=127.0.0.1:$np remote=127.0.0.1 status=200" \
			"access log (v$ver)"
	done
}

@test "UDP: datagrams with v2 headers, each reported as its header's client, replies routed to the proxy" {
	local sp
	expect_foreign udpsrv
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -e sendto
	usend_r 2 $PROXY:$sp -H "$(hdst $C11)" -H "$(hdst $C12)" -- one 'two\r\n'
	srv_done
	expect_srv "$(dline $C11 one)" "$(dline $C12 'two\r\n')"
	expect_replies "$(rline "from=$C11 one")" "$(rline "from=$C12 two\r\n")"
}

# exec_self [VAR=VALUE...]: fdedge exec-self under the shim (or without it, given no
# LD_PRELOAD), its new image run through the wrapper; OUT is its peer line.
exec_self() {
	OUT=$(env "$@" PROXYSHIM_TRUSTED=$PROXY FDEDGE_SELF="$FDEDGE" \
		timeout 30 "$FDEDGE" exec-self 2>"$T/fdedge.err") ||
		fail "fdedge exec-self:" "$OUT" "$(cat "$T/fdedge.err")"
}

@test "exec inheritance: a proxied connection crosses execv with its client (its own PROXY line unread)" {
	expect_foreign fdedge
	exec_self QEMU_SET_ENV="LD_PRELOAD=$PS_PRELOAD"
	[[ $OUT =~ ^peer\ [0-9]+=127\.0\.0\.77:5555$ ]] || fail "new image: '$OUT'"
}

@test "exec inheritance, control: without the shim the new image sees the proxy" {
	exec_self -u QEMU_SET_ENV
	[[ $OUT =~ ^peer\ [0-9]+=$PROXY:[0-9]+$ ]] || fail "new image: '$OUT'"
}
