#!/usr/bin/env bats
# inetd style: socat TCP-LISTEN,fork EXEC:app hands the app (build/peerinfo under the
# shim) a connected socket on fds 0 and 1 with the PROXY header still unread. The shim
# must take the header off before the app's first read (read, recv, readv, recvmsg),
# report the header's client from getpeername, and never honour a header from an
# untrusted source, a bad header, or a PROXYSHIM_INHERIT it did not write itself.

load helpers
load inherit

setup_file() {
	[[ -x $SOCAT ]] || skip "no $SOCAT"
	inherit_setup
}

DATA='hello app'

# inetd_app MODE [VAR=VALUE...]: socat (no shim) runs peerinfo -r MODE under the shim,
# trusting $PROXY.
inetd_app() {
	local mode=$1
	shift
	start_inetd "$(app_cmd PROXYSHIM_TRUSTED="$PROXY" "$@" -- "$PEERINFO" -r "$mode")"
}

# modes_v1_v2 MODE: a v1 and a v2 connection from the trusted proxy: the app sees the
# header's client and exactly the bytes after the header.
modes_v1_v2() {
	inetd_app "$1"
	client "$PROXY" "$(hdr1)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	client "$PROXY" "$(hdr2 127.0.0.78 6000)$DATA"
	expect_reply "$(peerinfo_line 127.0.0.78:6000 "$DATA")"
	expect_app "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")" \
		"$(peerinfo_line 127.0.0.78:6000 "$DATA")"
}

@test "inetd: read() sees the header's client and only the bytes after it (v1, v2)" {
	modes_v1_v2 read
}

@test "inetd: recv() sees the header's client and only the bytes after it (v1, v2)" {
	modes_v1_v2 recv
}

@test "inetd: readv() sees the header's client and only the bytes after it (v1, v2)" {
	modes_v1_v2 readv
}

@test "inetd: recvmsg() sees the header's client and only the bytes after it (v1, v2)" {
	modes_v1_v2 recvmsg
}

@test "inetd: v2 with a CRC32C TLV, and a v2 TCP6 header (::1 on an IPv4 socket)" {
	inetd_app read
	client "$PROXY" "$(v2_crc TCP4 "$CLIENT_IP" 127.0.0.1 "$CLIENT_PORT" "$TARGET_PORT")$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	client "$PROXY" "$(v2 TCP6 ::1 ::1 7777 "$TARGET_PORT")$DATA"
	expect_reply "$(peerinfo_line ::1:7777 "$DATA")"
}

@test "inetd: binary data right after the header reaches the app byte for byte" {
	inetd_app recv
	local bin='\x00\x01\r\n\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\\\xff'
	client "$PROXY" "$(hdr2)$bin"
	expect_app "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$(peerinfo_esc "$bin")")"
}

@test "inetd: a header that arrives late (300 ms after connect) is still taken off" {
	inetd_app read
	client "$PROXY" "$(hdr1)$DATA" -w 300
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
}

# A shimmed shell (the inetd service's wrapper) starts while the header is incomplete:
# its shim defers it, raising SO_RCVLOWAT (a property of the socket) so that polls wait
# for the rest. The program it execs takes the header: its read of the few bytes after
# it must not wait for more (the client keeps its side open).
@test "inetd: a header deferred by a shimmed wrapper that execs the app: the app's read does not wait for more" {
	printf '#!/bin/sh\nsleep 0.5\nexec %s -r read\n' "$PEERINFO" >"$T/wrapper"
	chmod +x "$T/wrapper"
	start_inetd "$(app_cmd PROXYSHIM_TRUSTED="$PROXY" -- "$T/wrapper")"
	# 28 header bytes and 4 of data in two writes of 16: the second completes both
	client "$PROXY" "$(hdr2)ping" -c 16 -d 300 -k -t 4000
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" ping)"
	((CLIENT_FIRST_MS < 2000)) || fail "the app answered after $CLIENT_FIRST_MS ms"
}

@test "inetd: a header in pieces (8 bytes every 40 ms) is taken off whole" {
	inetd_app recv
	client "$PROXY" "$(hdr2)" -c 8 -d 40
	expect_app "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" EOF)"
}

@test "inetd: untrusted source: its header is plain data, the peer is the real one" {
	inetd_app read
	local h1 h2 c1
	h1=$(hdr1)
	client "$UNTRUSTED" "$h1$DATA"
	c1=$CLIENT_LOCAL
	expect_reply "$(peerinfo_line "$c1" "$(peerinfo_esc "$h1$DATA")")"
	h2=$(hdr2)
	client "$UNTRUSTED" "$h2$DATA"
	[[ $CLIENT_STATUS == 0 ]] || fail "client status $CLIENT_STATUS"
	expect_app "$(peerinfo_line "$c1" "$(peerinfo_esc "$h1$DATA")")" \
		"$(peerinfo_line "$CLIENT_LOCAL" "$(peerinfo_esc "$h2$DATA")")"
}

@test "inetd: trusted source without a header (require): the app reads EOF, never the bytes" {
	inetd_app read
	client "$PROXY" 'GET / HTTP/1.0\r\n\r\n'
	expect_app_eof
}

@test "inetd: malformed v1 header from the trusted source: the app reads EOF" {
	inetd_app recv
	client "$PROXY" "PROXY TCP4 127.0.0.300 127.0.0.1 5555 80\\r\\n$DATA"
	expect_app_eof
}

@test "inetd: v2 header with a wrong CRC32C from the trusted source: the app reads EOF" {
	inetd_app readv
	client "$PROXY" "$(v2_crc TCP4 "$CLIENT_IP" 127.0.0.1 "$CLIENT_PORT" "$TARGET_PORT" bad)$DATA"
	expect_app_eof
}

@test "inetd: truncated header, connection held open: EOF after PROXYSHIM_TIMEOUT_MS" {
	inetd_app recvmsg PROXYSHIM_TIMEOUT_MS=300
	local h
	h=$(hdr1)
	client "$PROXY" "${h:0:20}" -k -t 3000
	[[ $CLIENT_END == eof || $CLIENT_END == reset ]] ||
		fail "connection not closed before the client's 3 s timeout (status $CLIENT_STATUS)"
	expect_app_eof
}

@test "inetd: the address survives the app's own exec (peerinfo -x peerinfo)" {
	start_inetd "$(app_cmd PROXYSHIM_TRUSTED="$PROXY" -- "$PEERINFO" -x "$PEERINFO" -r recv)"
	client "$PROXY" "$(hdr1)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	client "$PROXY" "$(hdr2 127.0.0.78 6001)$DATA"
	expect_reply "$(peerinfo_line 127.0.0.78:6001 "$DATA")"
	client "$UNTRUSTED" "$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$DATA")"
}

@test "inetd: socat itself under the shim: header taken in its accept, state crosses fork+exec" {
	# socat and (through the inherited LD_PRELOAD) peerinfo run under the shim.
	start_inetd -p "$(socat_quote "$PEERINFO") -r read"
	client "$PROXY" "$(hdr1)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	client "$PROXY" "$(hdr2 127.0.0.78 6002)$DATA"
	expect_reply "$(peerinfo_line 127.0.0.78:6002 "$DATA")"
	client "$UNTRUSTED" "$(hdr1)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$(peerinfo_esc "$(hdr1)$DATA")")"
	# socat's own log names the client it was given by accept().
	expect_log "$T/socat.log" "accepting connection from AF=2 $CLIENT_IP:$CLIENT_PORT "
	expect_log "$T/socat.log" "accepting connection from AF=2 127\.0\.0\.78:6002 "
}

@test "inetd: socat under the shim, app execs again (peerinfo -x peerinfo): still the client" {
	start_inetd -p "$(socat_quote "$PEERINFO") -x $(socat_quote "$PEERINFO") -r readv"
	client "$PROXY" "$(hdr2)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
}

# ---- forged PROXYSHIM_INHERIT --------------------------------------------------

# forged_app FORGE-OPTS...: socat (no shim) runs forgeinherit FORGE-OPTS, which sets a
# hand-made PROXYSHIM_INHERIT (claiming 127.0.0.66:6666 unless -a/-p say otherwise)
# and execs peerinfo under the shim trusting $PROXY.
forged_app() {
	local opts="" o
	for o in "$@"; do opts+=" $(socat_quote "$o")"; done
	start_inetd "$(socat_quote "$FORGE")$opts $(app_cmd PROXYSHIM_TRUSTED="$PROXY" -- "$PEERINFO" -r recv)"
}

@test "forged PROXYSHIM_INHERIT, untrusted peer, the socket's right cookie: never honoured" {
	forged_app -c right
	client "$UNTRUSTED" "$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$DATA")"
	local h
	h=$(hdr1)
	client "$UNTRUSTED" "$h$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$(peerinfo_esc "$h$DATA")")"
	[[ $(<"$T/peerinfo.out") != *127.0.0.66* ]] || fail "a forged entry was honoured"
}

@test "forged PROXYSHIM_INHERIT, untrusted peer, HANDLED kind / IPv6 family / wrong cookie" {
	local opts
	for opts in "-k handled" "-f 6 -a ::1" "-c wrong" "-c 0" "-c 1"; do
		stop_all
		rm -f "$T/peerinfo.out"
		forged_app $opts
		client "$UNTRUSTED" "$DATA"
		expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$DATA")" || fail "with forgeinherit $opts"
	done
}

@test "forged PROXYSHIM_INHERIT, trusted proxy, wrong cookie: the real header decides" {
	forged_app -c wrong
	client "$PROXY" "$(hdr1)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	# ... and with no header the connection is refused as usual, whatever the entry says
	# (what the app reads then is checked by the "without a header" test above).
	client "$PROXY" "$DATA"
	[[ -z $REPLY ]] || fail "served without a header: '$REPLY'"
	wait_until 5 app_lines 2 || true
	[[ $(<"$T/peerinfo.out") != *127.0.0.66* ]] || fail "a forged entry was honoured:" \
		"$(cat "$T/peerinfo.out")"
}

@test "PROXYSHIM_INHERIT of another format version (another build of the library), trusted proxy, right cookie: refused with a log line, the real header decides" {
	forged_app -c right -V 9:
	client "$PROXY" "$(hdr1)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	grep -q "PROXYSHIM_INHERIT: not in this build's format" "$T/socat.err" ||
		fail "no log line:" "$(cat "$T/socat.err")"
	# the same entry in this build's format is honoured (the test can fail)
	stop_all
	forged_app -c right
	client "$PROXY" "$(hdr1)$DATA"
	[[ $REPLY == *127.0.0.66* ]] || fail "the right entry was not honoured: '$REPLY'"
}

@test "forged PROXYSHIM_INHERIT, trusted proxy, right cookie but the other family: ignored" {
	forged_app -c right -f 6 -a ::1
	client "$PROXY" "$(hdr2)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
}

@test "forged PROXYSHIM_INHERIT: malformed values are ignored, the header still decides" {
	local v
	for v in zz "$(printf '%0112d' 0)" "$(printf 'f%.0s' {1..112})" ",,,," \
		"$(printf '%0111d' 0)g"; do
		stop_all
		rm -f "$T/peerinfo.out"
		start_inetd "$(app_cmd PROXYSHIM_TRUSTED="$PROXY" PROXYSHIM_INHERIT="$v" -- "$PEERINFO" -r read)"
		client "$PROXY" "$(hdr1)$DATA"
		expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")" ||
			fail "with PROXYSHIM_INHERIT=$v"
	done
}

@test "a real PROXYSHIM_INHERIT replayed on another connection is not honoured" {
	# socat under the shim writes a real entry into its child's environment; the child
	# (sh, under the shim too) drops it from environ on arrival, but its initial
	# environment in /proc still shows it.
	printf '#!/bin/sh\ntr "\\000" "\\n" </proc/$$/environ >>"%s"\n' "$T/env.out" >"$T/dumpenv"
	chmod +x "$T/dumpenv"
	start_inetd -p "$(socat_quote "$T/dumpenv")"
	client "$PROXY" "$(hdr1 127.0.0.66 6666)$DATA"
	wait_until 5 grep -q '^PROXYSHIM_INHERIT=' "$T/env.out" ||
		fail "no PROXYSHIM_INHERIT in the child's environment:" "$(cat "$T/env.out")"
	local real
	real=$(sed -n 's/^PROXYSHIM_INHERIT=//p' "$T/env.out")
	stop_all
	start_inetd "$(app_cmd PROXYSHIM_TRUSTED="$PROXY" PROXYSHIM_INHERIT="$real" -- "$PEERINFO" -r recv)"
	client "$UNTRUSTED" "$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$DATA")"
	client "$PROXY" "$(hdr2)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	[[ $(<"$T/peerinfo.out") != *127.0.0.66* ]] || fail "a replayed entry was honoured"
}
