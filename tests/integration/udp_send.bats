#!/usr/bin/env bats
# UDP, sending side (PROXYSHIM_SEND_UDP=every): under
# libproxyshim-client.so each datagram to a PROXYSHIM_SEND_TO destination gets a v2
# DGRAM header, whatever libc call sends it; the application sees its own byte counts.
# The receiver is udpsrv under libproxyshim.so (so the header's source is what it
# reports), or udpsrv with UDP untouched to see the exact bytes that arrived.

load helpers
load send
load udp

FIXED=127.0.0.55:4321

# csend [VAR=VALUE...] -- UDPSEND-ARGS...: udpsend under the client library with
# SEND_TO the server and SEND_UDP=every, to the server; must succeed.
csend() {
	local vars=(PROXYSHIM_SEND_TO="$(srv_hostport)" PROXYSHIM_SEND_UDP=every) st=0
	while [[ $1 != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	under_client "${vars[@]}" -- "$UDPSEND" "$@" "$SRV_ADDR" "$UPORT" hello 'two\x00' \
		>"$T/csend.out" 2>"$T/csend.err" || st=$?
	((st == 0)) || fail "udpsend under the client library: status $st" "$(cat "$T/csend.err")"
}

@test "every libc send call (sendto, sendmsg, sendmmsg, send, write, writev): a v2 header with the fixed source, the payload intact, the caller's byte counts" {
	local call
	for call in sendto sendmsg sendmmsg send write writev; do
		UPORT=
		udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2
		csend PROXYSHIM_SEND_SOURCE=$FIXED -- -b $PROXY -m $call
		srv_done
		expect_srv "$(dline $FIXED hello)" "$(dline $FIXED 'two\x00')"
		kill "$SRV_PID" 2>/dev/null || true
	done
}

@test "SEND_SOURCE=local: the socket's own address and port, bound or not (the kernel's choice, then the route's address)" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2
	csend -- -b "$PROXY:$sp"
	srv_done
	expect_srv "$(dline "$PROXY:$sp" hello)" "$(dline "$PROXY:$sp" 'two\x00')"
	# no bind(): the shim binds as the first send would, the header names 127.0.0.1:PORT
	UPORT=
	udp_start PROXYSHIM_TRUSTED=127.0.0.1 -- -n 2
	csend -- -v -m sendmsg
	srv_done
	local port
	port=$(sed -n 's/^udpsend: local=0\.0\.0\.0://p' "$T/csend.err")
	[[ -n $port ]] || fail "udpsend did not print its address:" "$(cat "$T/csend.err")"
	expect_srv "$(dline "127.0.0.1:$port" hello)" "$(dline "127.0.0.1:$port" 'two\x00')"
}

@test "IPv6: SEND_TO='[::1]:P', fixed source [::1]:4321" {
	udp_start -6 PROXYSHIM_TRUSTED=::1 -- -n 2
	csend PROXYSHIM_SEND_SOURCE='[::1]:4321' -- -b ::1 -m sendmmsg
	srv_done
	expect_srv "$(dline '[::1]:4321' hello)" "$(dline '[::1]:4321' 'two\x00')"
}

@test "the receiving shim's replies reach the client through its socket: the round trip of a UDP client behind the client library" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -e sendto
	csend PROXYSHIM_SEND_SOURCE=$FIXED -- -b $PROXY -r 2 -t 5000
	srv_done
	REPLIES=$(grep '^reply' "$T/csend.out" | LC_ALL=C sort)
	expect_replies "$(rline "from=$FIXED hello")" "$(rline "from=$FIXED two\\x00")"
}

@test "untouched: a destination not listed, and PROXYSHIM_SEND_UDP off (the default), send the bytes as they are" {
	udp_start --bare PROXYSHIM_TRUSTED=127.0.0.99 -- -n 4
	local other
	other=$(free_udp 127.0.0.1)
	csend PROXYSHIM_SEND_TO="127.0.0.1:$other" PROXYSHIM_SEND_SOURCE=$FIXED -- -b "$PROXY:$other"
	csend PROXYSHIM_SEND_UDP=off PROXYSHIM_SEND_SOURCE=$FIXED -- -b "$PROXY:$other" -m sendmmsg
	srv_done
	expect_srv "$(dline "$PROXY:$other" hello)" "$(dline "$PROXY:$other" 'two\x00')" \
		"$(dline "$PROXY:$other" hello)" "$(dline "$PROXY:$other" 'two\x00')"
}

@test "the bytes on the wire: exactly one 28-byte v2 DGRAM header (21 12), then the payload" {
	udp_start --bare PROXYSHIM_TRUSTED=127.0.0.99 -- -n 1
	csend PROXYSHIM_SEND_SOURCE=$FIXED -- -b $PROXY -m writev
	srv_done
	# signature, PROXY, UDP4, length 12, 127.0.0.55, 127.0.0.1, 4321 (10 e1), the
	# server's port (2 bytes), then the payload; udpsrv escapes what is not printable
	local want='payload="\r\n\r\n\x00\r\nQUIT\n!\x12\x00\x0c\x7f\x00\x007\x7f\x00\x00\x01\x10\xe1'
	grep -F "$want" "$T/srv.out" | grep -q 'len=33 .*hello"$' ||
		fail "not one v2 DGRAM header and the payload:" "$(cat "$T/srv.out")"
}
