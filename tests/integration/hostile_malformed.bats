#!/usr/bin/env bats
# Malformed battery: every malformation class of the PROXY protocol specification
# (v1 grammar, v2 fixed part, length, TLVs), one row each, sent
# from the trusted proxy. For each row, on a blocking server and on an epoll server
# (hostile.bash battery): the connection is closed when the bad byte is seen, nothing of
# it reaches the application, the next connection is served, and the shim logs one
# warning naming the proxy; the same again with the header split in two writes at every
# byte boundary. Then the log rate limit on a burst.

load helpers
load hostile

H4='127.0.0.11 127.0.0.2 10011 8443'
B4=$(addr_block TCP4 127.0.0.11 127.0.0.2 10011 8443)
B6=$(addr_block TCP6 ::1 ::1 10011 8443)

# v2row VERCMD FAM BODY-HEX [LEN]: a v2 header (escaped form) from its parts.
v2row() { esc "$(v2_hex "$@")"; }
# sigrow SIG-HEX: a v2 TCP4 header with this signature.
sigrow() { esc "${1}2111000c$B4"; }

# ---- v1: signature and keywords ----

@test "v1 bad signature: PROXZ" {
	battery "PROXZ TCP4 $H4\\r\\n"
}

@test "v1 bad signature: no space after PROXY" {
	battery "PROXYTCP4 $H4\\r\\n"
}

@test "v1 bad signature: high byte inside PROXY" {
	battery "PRO\\xd8Y TCP4 $H4\\r\\n"
}

@test "v1 bad signature: leading space" {
	battery " PROXY TCP4 $H4\\r\\n"
}

@test "v1 lower-case keyword: proxy" {
	battery "proxy TCP4 $H4\\r\\n"
}

@test "v1 lower-case keyword: tcp4" {
	battery "PROXY tcp4 $H4\\r\\n"
}

@test "v1 lower-case keyword: unknown" {
	battery "PROXY unknown\\r\\n"
}

@test "v1 wrong family word: UDP4" {
	battery "PROXY UDP4 $H4\\r\\n"
}

@test "v1 wrong family word: TCP5" {
	battery "PROXY TCP5 $H4\\r\\n"
}

@test "v1 nothing after PROXY" {
	battery "PROXY\\r\\n"
}

# ---- v1: spaces and fields ----

@test "v1 double space after PROXY" {
	battery "PROXY  TCP4 $H4\\r\\n"
}

@test "v1 double space between the ports" {
	battery "PROXY TCP4 127.0.0.11 127.0.0.2 10011  8443\\r\\n"
}

@test "v1 trailing space before CRLF" {
	battery "PROXY TCP4 $H4 \\r\\n"
}

@test "v1 trailing space in a TCP6 line" {
	battery "PROXY TCP6 ::1 ::1 10011 8443 \\r\\n"
}

@test "v1 tab instead of the first space" {
	battery "PROXY\\tTCP4 $H4\\r\\n"
}

@test "v1 tab between the addresses" {
	battery "PROXY TCP4 127.0.0.11\\t127.0.0.2 10011 8443\\r\\n"
}

@test "v1 missing field" {
	battery "PROXY TCP4 127.0.0.11 127.0.0.2 10011\\r\\n"
}

@test "v1 extra field" {
	battery "PROXY TCP4 $H4 1\\r\\n"
}

# ---- v1: numbers and addresses ----

@test "v1 leading zero in a source octet" {
	battery "PROXY TCP4 127.0.0.011 127.0.0.2 10011 8443\\r\\n"
}

@test "v1 leading zero in a destination octet" {
	battery "PROXY TCP4 127.0.0.11 127.00.0.2 10011 8443\\r\\n"
}

@test "v1 leading zero in the source port" {
	battery "PROXY TCP4 127.0.0.11 127.0.0.2 010011 8443\\r\\n"
}

@test "v1 leading zero in the destination port" {
	battery "PROXY TCP4 127.0.0.11 127.0.0.2 10011 08443\\r\\n"
}

@test "v1 octet 256" {
	battery "PROXY TCP4 127.0.0.256 127.0.0.2 10011 8443\\r\\n"
}

@test "v1 three octets" {
	battery "PROXY TCP4 127.0.11 127.0.0.2 10011 8443\\r\\n"
}

@test "v1 port 65536" {
	battery "PROXY TCP4 127.0.0.11 127.0.0.2 65536 8443\\r\\n"
}

@test "v1 port with a sign" {
	battery "PROXY TCP4 127.0.0.11 127.0.0.2 +10011 8443\\r\\n"
}

@test "v1 IPv6 addresses in a TCP4 line" {
	battery "PROXY TCP4 ::1 ::1 10011 8443\\r\\n"
}

@test "v1 IPv4 addresses in a TCP6 line" {
	battery "PROXY TCP6 127.0.0.11 127.0.0.2 10011 8443\\r\\n"
}

@test "v1 TCP6 line with an IPv4 destination" {
	battery "PROXY TCP6 ::1 127.0.0.2 10011 8443\\r\\n"
}

@test "v1 TCP6 address with a zone" {
	battery "PROXY TCP6 ::1%lo ::1 10011 8443\\r\\n"
}

@test "v1 TCP6 address in brackets" {
	battery "PROXY TCP6 [::1] ::1 10011 8443\\r\\n"
}

@test "v1 TCP6 address with two ::" {
	battery "PROXY TCP6 ::1::2 ::1 10011 8443\\r\\n"
}

# ---- v1: line ends and bytes ----

@test "v1 lone LF" {
	battery "PROXY TCP4 $H4\\n"
}

@test "v1 UNKNOWN ended by a lone LF (CRLF later in the data)" {
	battery "PROXY UNKNOWN\\n"
}

@test "v1 CR without LF (CRLF later in the data)" {
	battery "PROXY TCP4 $H4\\r"
}

@test "v1 CR inside the UNKNOWN text" {
	battery "PROXY UNKNOWN x\\ry\\r\\n"
}

@test "v1 no CRLF within 107 bytes (UNKNOWN + 110 bytes)" {
	battery "PROXY UNKNOWN $(printf 'x%.0s' {1..110})\\r\\n"
}

@test "v1 TCP6 line of 108 bytes (dotted tails)" {
	local a=0000:0000:0000:0000:0000:ffff:127.100.0.1 line
	line="PROXY TCP6 $a $a 65535 65535\\r\\n"
	(($(emit "$line" | wc -c) == 108))
	battery "$line"
}

@test "v1 NUL byte inside the line" {
	battery "PROXY TCP4 127.0.0.11\\x00 127.0.0.2 10011 8443\\r\\n"
}

@test "v1 high byte inside an address" {
	battery "PROXY TCP4 127.0.0.1\\xb1 127.0.0.2 10011 8443\\r\\n"
}

# ---- v2: signature, version, command ----

@test "v2 bad signature byte 1" {
	battery "$(sigrow 0d0b0d0a000d0a515549540a)"
}

@test "v2 bad signature byte 4 (NUL replaced)" {
	battery "$(sigrow 0d0a0d0a200d0a515549540a)"
}

@test "v2 bad signature: lower-case quit" {
	battery "$(sigrow 0d0a0d0a000d0a717569740a)"
}

@test "v2 bad signature byte 11" {
	battery "$(sigrow 0d0a0d0a000d0a515549540d)"
}

@test "v2 version nibble 0" {
	battery "$(v2row 01 11 "$B4")"
}

@test "v2 version nibble 1" {
	battery "$(v2row 11 11 "$B4")"
}

@test "v2 version nibble 3" {
	battery "$(v2row 31 11 "$B4")"
}

@test "v2 version nibble F" {
	battery "$(v2row f1 11 "$B4")"
}

@test "v2 command 2" { battery "$(v2row 22 11 "$B4")"; }
@test "v2 command 3" { battery "$(v2row 23 11 "$B4")"; }
@test "v2 command 4" { battery "$(v2row 24 11 "$B4")"; }
@test "v2 command 5" { battery "$(v2row 25 11 "$B4")"; }
@test "v2 command 6" { battery "$(v2row 26 11 "$B4")"; }
@test "v2 command 7" { battery "$(v2row 27 11 "$B4")"; }
@test "v2 command 8" { battery "$(v2row 28 11 "$B4")"; }
@test "v2 command 9" { battery "$(v2row 29 11 "$B4")"; }
@test "v2 command A" { battery "$(v2row 2a 11 "$B4")"; }
@test "v2 command B" { battery "$(v2row 2b 11 "$B4")"; }
@test "v2 command C" { battery "$(v2row 2c 11 "$B4")"; }
@test "v2 command D" { battery "$(v2row 2d 11 "$B4")"; }
@test "v2 command E" { battery "$(v2row 2e 11 "$B4")"; }
@test "v2 command F" { battery "$(v2row 2f 11 "$B4")"; }

# ---- v2: family and transport byte ----

@test "v2 family 4" { battery "$(v2row 21 41 "$B4")"; }
@test "v2 family F" { battery "$(v2row 21 f1 "$B4")"; }
@test "v2 transport 3" { battery "$(v2row 21 13 "$B4")"; }
@test "v2 transport F" { battery "$(v2row 21 1f "$B4")"; }
@test "v2 family UNSPEC with transport STREAM (01)" { battery "$(v2row 21 01 "$B4")"; }
@test "v2 family INET with transport UNSPEC (10)" { battery "$(v2row 21 10 "$B4")"; }
@test "v2 family INET6 with transport UNSPEC (20)" { battery "$(v2row 21 20 "$B6")"; }

# ---- v2: length and TLVs ----

@test "v2 len 11, shorter than the TCP4 block" {
	battery "$(v2row 21 11 "${B4:0:22}")"
}

@test "v2 len 35, shorter than the TCP6 block" {
	battery "$(v2row 21 21 "${B6:0:70}")"
}

@test "v2 len 11, shorter than the UDP4 block" {
	battery "$(v2row 21 12 "${B4:0:22}")"
}

@test "v2 len 215, shorter than the UNIX block" {
	battery "$(v2row 21 31 "$(printf '00%.0s' {1..215})")"
}

@test "v2 truncated TLV: 1 byte after the block" {
	battery "$(v2row 21 11 "${B4}04")"
}

@test "v2 truncated TLV: 2 bytes after the block" {
	battery "$(v2row 21 11 "${B4}0400")"
}

@test "v2 TLV past the end of the header" {
	battery "$(v2row 21 11 "${B4}0400050000")"
}

@test "v2 TLV of length FFFF past the end (TCP6)" {
	battery "$(v2row 21 21 "${B6}01ffff6832")"
}

@test "v2 second TLV past the end" {
	battery "$(v2row 21 11 "$B4$(tlv_str 01 h2)0200090000")"
}

@test "v2 UNIQUE_ID of 129 bytes" {
	battery "$(v2row 21 11 "$B4$(tlv 05 "$(printf 'ab%.0s' {1..129})")")"
}

# ---- v2: CRC32C ----

@test "v2 CRC32C mismatch (TCP4)" {
	battery "$(v2_crc TCP4 127.0.0.11 127.0.0.2 10011 8443 bad)"
}

@test "v2 CRC32C mismatch (TCP6)" {
	battery "$(v2_crc TCP6 ::1 ::1 10011 8443 bad)"
}

@test "v2 CRC32C mismatch (LOCAL)" {
	battery "$(esc "$(with_crc "$(v2_hex 20 00 "$(tlv 03 00000000)")" bad)")"
}

@test "v2 CRC32C value of 3 bytes" {
	battery "$(v2row 21 11 "$B4$(tlv 03 000000)")"
}

@test "v2 CRC32C value of 5 bytes" {
	battery "$(v2row 21 11 "$B4$(tlv 03 0000000000)")"
}

@test "v2 CRC32C value of 0 bytes" {
	battery "$(v2row 21 11 "$B4$(tlv 03 "")")"
}

# ---- rate limit ----

# The shim's limiter allows 20 warnings per 10-second window of CLOCK_MONOTONIC
# (aligned to multiples of 10 s), then one "N similar warnings suppressed" line when the
# next window opens. The burst is placed 6-8 s into a window so that it ends inside it
# and the next window opens a few seconds later.
@test "200 bad headers in a burst: 20 warnings, then one 'suppressed' line" {
	local s
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOG="$T/shim.log" -- -m epoll
	wait_until 11 in_window_phase 6 8 || fail "could not place the burst"
	hit burst "$PROXY" "PROXY TCP4 127.0.0.011 127.0.0.2 10011 8443\\r\\n$REQ" \
		-n 200 -j 16 -e keep -t 3000
	s=$(mono_s)
	expect_refused_all burst 200
	((${s%.*} % 10 >= 6)) || fail "the burst crossed into the next window"
	(($(wc -l <"$T/shim.log") == 20)) || fail "not 20 lines:" "$(cat "$T/shim.log")"
	(($(count_matching "$T/shim.log" "$WARN_PROXY") == 20))
	# The next window: one more bad header brings the summary, then its own line.
	wait_until 5 in_window_phase 0 5
	hit late "$PROXY" "PROXY TCP4 127.0.0.011 127.0.0.2 10011 8443\\r\\n$REQ" -e keep -t 3000
	expect_refused_all late 1
	good_served
	(($(wc -l <"$T/shim.log") == 22)) || fail "not 22 lines:" "$(cat "$T/shim.log")"
	sed -n 21p "$T/shim.log" | grep -Eq 'warn: 180 similar warnings suppressed$' ||
		fail "line 21 is not the summary:" "$(sed -n '19,$p' "$T/shim.log")"
	sed -n 22p "$T/shim.log" | grep -q "proxy 127.0.0.10:$(ports_of late):"
	expect_output "$(conn_line "$GOOD_PEER" "$REQ")"
}

# in_window_phase LO HI: CLOCK_MONOTONIC seconds mod 10 is in [LO, HI).
in_window_phase() {
	local s
	s=$(mono_s)
	s=$((${s%.*} % 10))
	((s >= $1 && s < $2))
}
