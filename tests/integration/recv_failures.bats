#!/usr/bin/env bats
# Bad input from the trusted proxy: the connection is closed, nothing of it reaches the
# application, and the (blocking) accept goes on to serve the next connection.

load helpers

GOOD_V1=$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)

# refused PAYLOAD [RAWSEND-OPTS...]: with a server trusting $PROXY.
refused() {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1
	expect_refused "$@"
}

# refused_v2 VERCMD FAM BODY-HEX: a v2 header built from these parts, then $REQ.
refused_v2() {
	refused "$(esc "$(v2_hex "$@")")$REQ"
}

BLOCK4=$(addr_block TCP4 127.0.0.11 127.0.0.2 10011 8443)

@test "require: trusted source without a header is closed" {
	refused "$REQ"
}

@test "require: trusted source sending binary garbage is closed" {
	refused '\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f'
}

@test "v1: leading zero in an octet" {
	refused "PROXY TCP4 127.0.0.011 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "v1: octet 256" {
	refused "PROXY TCP4 127.0.0.256 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "v1: port 65536" {
	refused "PROXY TCP4 127.0.0.11 127.0.0.2 65536 8443\\r\\n$REQ"
}

@test "v1: leading zero in a port" {
	refused "PROXY TCP4 127.0.0.11 127.0.0.2 010011 8443\\r\\n$REQ"
}

@test "v1: two spaces" {
	refused "PROXY TCP4  127.0.0.11 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "v1: trailing space" {
	refused "PROXY TCP4 127.0.0.11 127.0.0.2 10011 8443 \\r\\n$REQ"
}

@test "v1: missing field" {
	refused "PROXY TCP4 127.0.0.11 127.0.0.2 10011\\r\\n$REQ"
}

@test "v1: lower-case keyword" {
	refused "proxy TCP4 127.0.0.11 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "v1: IPv6 address in a TCP4 line" {
	refused "PROXY TCP4 ::1 ::1 10011 8443\\r\\n$REQ"
}

@test "v1: IPv4 address in a TCP6 line" {
	refused "PROXY TCP6 127.0.0.11 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "v1: unknown protocol word" {
	refused "PROXY UDP4 127.0.0.11 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "v1: LF without CR" {
	refused "PROXY TCP4 127.0.0.11 127.0.0.2 10011 8443\\n$REQ"
}

@test "v1: UNKNOWN ended by a lone LF, CRLF later in the data" {
	refused "PROXY UNKNOWN\\n$REQ"
}

@test "v1: no CRLF within 107 bytes" {
	refused "PROXY UNKNOWN $(printf 'x%.0s' {1..110})\\r\\n$REQ"
}

@test "v1: NUL byte inside the line" {
	refused "PROXY TCP4 127.0.0.11\\x00 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "v2: version nibble 1" {
	refused_v2 11 11 "$BLOCK4"
}

@test "v2: version nibble 3" {
	refused_v2 31 11 "$BLOCK4"
}

@test "v2: command 2" {
	refused_v2 22 11 "$BLOCK4"
}

@test "v2: address family 4" {
	refused_v2 21 41 "$BLOCK4"
}

@test "v2: transport 3" {
	refused_v2 21 13 "$BLOCK4"
}

@test "v2: length shorter than the IPv4 address block" {
	refused_v2 21 11 "${BLOCK4:0:22}"
}

@test "v2: length shorter than the IPv6 address block" {
	refused_v2 21 21 "$(addr_block TCP6 ::1 ::1 10011 8443 | cut -c1-70)"
}

@test "v2: TLV running past the end of the header" {
	refused_v2 21 11 "$BLOCK4$(printf '040005')0000"
}

@test "v2: fewer than 3 bytes left for a TLV header" {
	refused_v2 21 11 "${BLOCK4}0400"
}

@test "v2: UNIQUE_ID longer than 128 bytes" {
	refused_v2 21 11 "$BLOCK4$(tlv 05 "$(printf 'ab%.0s' {1..129})")"
}

@test "v2: CRC32C value of 3 bytes" {
	refused_v2 21 11 "$BLOCK4$(tlv 03 000000)"
}

@test "v2: wrong CRC32C" {
	refused "$(v2_crc TCP4 127.0.0.11 127.0.0.2 10011 8443 bad)$REQ"
}

@test "v2: wrong CRC32C in a LOCAL header" {
	refused "$(esc "$(with_crc "$(v2_hex 20 00 "$(tlv 03 00000000)")" bad)")$REQ"
}

@test "v2: truncated header, then EOF" {
	refused "$(esc "$(v2_hex 21 11 "$BLOCK4" | cut -c1-40)")"
}

@test "v1: truncated line, then EOF" {
	refused 'PROXY TCP4 127.0.0.11 127.0.0.2'
}

@test "header later than PROXYSHIM_TIMEOUT_MS is closed" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=300 -- -n 1
	expect_refused "$GOOD_V1$REQ" -w 800
}

@test "header trickling in longer than PROXYSHIM_TIMEOUT_MS in total is closed" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=300 -- -n 1
	expect_refused "$GOOD_V1$REQ" -c 1 -d 25
}

@test "a partial header is not handed over while the proxy stays silent" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=300 -- -n 1
	expect_refused 'PROXY TCP4 127.0.0.11' -k -t 3000
}

@test "a bad header is logged as a warning naming the proxy" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOG="$T/shim.log" -- -n 1
	expect_refused "PROXY TCP4 127.0.0.011 127.0.0.2 10011 8443\\r\\n$REQ"
	expect_log "$T/shim.log" 'warn.*127\.0\.0\.10:[0-9]+'
}

@test "the warning goes to stderr by default" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1
	expect_refused "$REQ"
	expect_log "$T/server.err" 'warn.*127\.0\.0\.10:[0-9]+'
}
