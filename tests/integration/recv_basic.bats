#!/usr/bin/env bats
# Valid headers from the trusted proxy on an IPv4 listener: the header's source is what
# accept() and getpeername() report, and the application data arrives intact.

load helpers

# served_as_11 PAYLOAD [RAWSEND-OPTS...]: PAYLOAD then $REQ from $PROXY; the server
# (trusting $PROXY) must report 127.0.0.11:10011 and exactly $REQ as data.
served_as_11() {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1
	client "$PROXY" "$1$REQ" "${@:2}"
	expect_reply "OK 127.0.0.11:10011"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")"
}

@test "v1 TCP4 header: accept and getpeername report the header's source" {
	served_as_11 "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)"
}

@test "v2 TCP4 header: accept and getpeername report the header's source" {
	served_as_11 "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443)"
}

@test "v2 TCP4 header with TLVs (ALPN, AUTHORITY, NOOP, UNIQUE_ID, SSL, custom)" {
	local ssl tlvs
	ssl=01$(printf '%08x' 0)$(tlv_str 21 TLSv1.3)$(tlv_str 22 client.test)
	tlvs=$(tlv_str 01 h2)$(tlv_str 02 localhost)$(tlv 04 000000)$(tlv_str 05 id-1234)
	tlvs+=$(tlv 20 "$ssl")$(tlv e0 "")$(tlv_str 30 netns0)
	served_as_11 "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443 "$tlvs")"
}

@test "v2 TCP4 header with a UNIQUE_ID of exactly 128 bytes" {
	served_as_11 "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443 "$(tlv 05 "$(printf 'ab%.0s' {1..128})")")"
}

@test "v2 header with a correct CRC32C" {
	served_as_11 "$(v2_crc TCP4 127.0.0.11 127.0.0.2 10011 8443)"
}

@test "v2 header of 60016 bytes (a 60000-byte NOOP TLV) is taken whole" {
	local noop
	noop=$(printf '%0119994d' 0)
	served_as_11 "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443 "$(tlv 04 "$noop")")"
}

@test "v2 header of the maximum size (len 65535) is taken whole" {
	local noop
	noop=$(printf '%0131040d' 0) # 12 + 3 + 65520 = 65535
	served_as_11 "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443 "$(tlv 04 "$noop")")"
}

@test "header and data in one write: exactly the header is removed, data intact" {
	local data='PROXY TCP4 127.0.0.66 127.0.0.2 10066 8443\r\n\x00\r\n\r\nQUIT\n\xff\"\\ end'
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 2
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$data"
	expect_reply "OK 127.0.0.11:10011"
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.2 10012 8443)$data"
	expect_reply "OK 127.0.0.12:10012"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$data")" "$(conn_line 127.0.0.12:10012 "$data")"
}

@test "header in one write, data in a later one" {
	# the v1 line is 44 bytes, $REQ 16: two writes 200 ms apart
	served_as_11 "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)" -c 44 -d 200
}

@test "header alone, then EOF: served with the header's source, data=EOF" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1
	client "$PROXY" "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443)"
	expect_reply "OK 127.0.0.11:10011"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 EOF)"
}

@test "v1 header split into 1-byte writes within the timeout" {
	served_as_11 "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)" -c 1 -d 10
}

@test "v2 header split into 1-byte writes within the timeout" {
	served_as_11 "$(v2_crc TCP4 127.0.0.11 127.0.0.2 10011 8443)" -c 1 -d 10
}

@test "server-speaks-first: the greeting goes out after the header, to the right client" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m greet
	client "$PROXY" "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	expect_reply $'HELLO\r\nOK 127.0.0.11:10011'
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")"
}

@test "consecutive connections each report their own client" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 3
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)one\n"
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.2 10012 8443)two\n"
	client "$PROXY" "$(v2_crc TCP4 127.0.0.13 127.0.0.2 10013 8443)three\n"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 'one\n')" "$(conn_line 127.0.0.12:10012 'two\n')" \
		"$(conn_line 127.0.0.13:10013 'three\n')"
}

# The proxy speaking for itself: the connection is kept with its real addresses.
served_as_proxy() {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1
	client "$PROXY" "$1$REQ"
	expect_reply "OK $CLIENT_LOCAL"
	server_done
	expect_output "$(conn_line "$CLIENT_LOCAL" "$REQ")"
}

@test "v2 LOCAL keeps the real addresses" {
	served_as_proxy "$(esc "$(v2_hex 20 00 "")")"
}

@test "v2 LOCAL with an IPv4 address block (as AWS NLB) keeps the real addresses" {
	served_as_proxy "$(esc "$(v2_hex 20 11 "$(addr_block TCP4 127.0.0.11 127.0.0.2 10011 8443)")")"
}

# The spec: a receiver must accept LOCAL whatever its block holds. Netty's layout:
# family 00 and 12 address bytes, which do not walk as TLVs.
@test "v2 LOCAL, family 00 with an IPv4 block (Netty's layout): real addresses, data intact" {
	served_as_proxy "$(esc "$(v2_hex 20 00 "$(addr_block TCP4 127.0.0.11 127.0.0.2 10011 8443)")")"
}

@test "v2 LOCAL with a TCP4 block and a cut TLV after it keeps the real addresses" {
	served_as_proxy "$(esc "$(v2_hex 20 11 "$(addr_block TCP4 127.0.0.11 127.0.0.2 10011 8443)0400")")"
}

@test "v2 LOCAL with a correct CRC32C keeps the real addresses" {
	served_as_proxy "$(esc "$(with_crc "$(v2_hex 20 00 "$(tlv 03 00000000)")")")"
}

@test "v1 UNKNOWN keeps the real addresses" {
	served_as_proxy 'PROXY UNKNOWN\r\n'
}

@test "v1 UNKNOWN with trailing fields keeps the real addresses" {
	served_as_proxy 'PROXY UNKNOWN 127.0.0.11 127.0.0.2 10011 8443\r\n'
}

@test "v2 PROXY with family UNSPEC keeps the real addresses" {
	served_as_proxy "$(esc "$(v2_hex 21 00 "")")"
}

@test "v2 PROXY with UDP over IPv4 (on a TCP socket) keeps the real addresses" {
	served_as_proxy "$(esc "$(v2_hex 21 12 "$(addr_block TCP4 127.0.0.11 127.0.0.2 10011 8443)")")"
}

@test "v2 PROXY with UNIX stream addresses keeps the real addresses" {
	served_as_proxy "$(esc "$(v2_hex 21 31 "$(printf '%0432d' 0)")")"
}

@test "PROXYSHIM_LOCAL=header: getsockname reports the header's destination" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOCAL=header -- -n 2
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.3 10012 9443)$REQ"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ" 127.0.0.2:8443)" \
		"$(conn_line 127.0.0.12:10012 "$REQ" 127.0.0.3:9443)"
}

@test "PROXYSHIM_LOCAL=header with LOCAL: the real local address stays" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOCAL=header -- -n 1
	client "$PROXY" "$(esc "$(v2_hex 20 00 "")")$REQ"
	server_done
	expect_output "$(conn_line "$CLIENT_LOCAL" "$REQ")"
}
