#!/usr/bin/env bats
# Address families: IPv6 listeners, dual-stack listeners, IPv6 headers on IPv4 sockets,
# and the caller's address buffer (addrlen in, truncated copy, full length out).

load helpers

# on_listener LISTEN-ADDR ACCEPT LOCAL-HOST PAYLOAD [SOURCE]: the server listening on
# LISTEN-ADDR (trusting $PROXY and ::1) reports ACCEPT as peer and LOCAL-HOST:port as local.
on_listener() {
	start_server "PROXYSHIM_TRUSTED=$PROXY,::1" -- -n 1 -l "$1"
	client "${5:-$PROXY}" "$4$REQ"
	expect_reply "OK $2"
	server_done
	expect_output "$(conn_line "$2" "$REQ" "$3:$SERVER_PORT")"
}

@test "v1 TCP6 header via an IPv6 [::1] listener" {
	TARGET_HOST=::1
	on_listener ::1 "[::1]:10016" "[::1]" "$(v1 TCP6 ::1 ::1 10016 8443)" ::1
}

@test "v2 TCP6 header via an IPv6 [::1] listener" {
	TARGET_HOST=::1
	on_listener ::1 "[::1]:10017" "[::1]" "$(v2 TCP6 ::1 ::1 10017 8443)" ::1
}

@test "v2 TCP6 header with a NOOP TLV via an IPv6 [::1] listener" {
	TARGET_HOST=::1
	on_listener ::1 "[::1]:10018" "[::1]" \
		"$(v2 TCP6 ::1 ::1 10018 8443 "$(tlv 04 0000)")" ::1
}

@test "IPv4 v1 header on a dual-stack listener: ::ffff:127.0.0.13, trusted as IPv4" {
	on_listener :: "[::ffff:127.0.0.13]:10013" "[::ffff:127.0.0.1]" \
		"$(v1 TCP4 127.0.0.13 127.0.0.2 10013 8443)"
}

@test "IPv4 v2 header on a dual-stack listener: ::ffff:127.0.0.14" {
	on_listener :: "[::ffff:127.0.0.14]:10014" "[::ffff:127.0.0.1]" \
		"$(v2 TCP4 127.0.0.14 127.0.0.2 10014 8443)"
}

@test "IPv6 header on a dual-stack listener from an IPv4 proxy" {
	on_listener :: "[::1]:10019" "[::ffff:127.0.0.1]" \
		"$(v2 TCP6 ::1 ::1 10019 8443)"
}

@test "v4-mapped IPv6 header on an IPv4 listener is reported as IPv4" {
	on_listener 127.0.0.1 "127.0.0.15:10015" "127.0.0.1" \
		"$(v1 TCP6 ::ffff:127.0.0.15 ::ffff:127.0.0.2 10015 8443)"
}

@test "v4-mapped v2 IPv6 header on an IPv4 listener is reported as IPv4" {
	on_listener 127.0.0.1 "127.0.0.16:10016" "127.0.0.1" \
		"$(v2 TCP6 ::ffff:127.0.0.16 ::ffff:127.0.0.2 10016 8443)"
}

@test "true IPv6 client on an IPv4 listener is reported as AF_INET6" {
	on_listener 127.0.0.1 "[::1]:10020" "127.0.0.1" "$(v1 TCP6 ::1 ::1 10020 8443)"
}

@test "true IPv6 client, caller's buffer too small for it: closed, never the proxy" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1 -a 16
	client "$PROXY" "$(v1 TCP6 ::1 ::1 10020 8443)$REQ"
	expect_closed
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	expect_reply "OK 127.0.0.11:10011"
	server_done
	expect_output "$(conn_line "127.0.0.11:10011 alen=16" "$REQ" "" 127.0.0.11:10011)"
}

@test "short address buffer: truncated copy, full length returned" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1 -a 8
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	server_done
	# sockaddr_in: family 2 (host order), port 10011 = 0x271b, 127.0.0.11
	expect_output "$(conn_line "raw:0200271b7f00000b alen=16" "$REQ" "" 127.0.0.11:10011)"
}

@test "short address buffer on a dual-stack listener: truncated sockaddr_in6, length 28" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1 -a 24 -l ::
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	server_done
	# sockaddr_in6 cut before sin6_scope_id: family 10, port, flowinfo 0, ::ffff:127.0.0.11
	expect_output "$(conn_line "raw:0a00271b0000000000000000000000000000ffff7f00000b alen=28" "$REQ" \
		"[::ffff:127.0.0.1]:$SERVER_PORT" "[::ffff:127.0.0.11]:10011")"
}

@test "NULL address buffer is fine" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1 -a 0
	client "$PROXY" "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	server_done
	expect_output "$(conn_line "NULL alen=0" "$REQ" "" 127.0.0.11:10011)"
}
