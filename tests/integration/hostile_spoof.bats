#!/usr/bin/env bats
# Spoofing battery: every valid header form, sent by a source that is not trusted, is
# never honoured. UNTRUSTED=pass: the application reads the header's bytes as data,
# byte for byte, and sees the real source as the peer. UNTRUSTED=reject: the connection
# is closed at accept, the application never sees it, the next one is served. Blocking
# and epoll servers, IPv4 and IPv6 listeners. And with PROXYSHIM_TRUSTED unset the
# library is inert: the same bytes pass through, getpeername is untouched, and no
# syscall is added on the accept path (strace).

load helpers
load hostile

SSL_TLV=$(tlv 20 "01$(printf '%08x' 0)$(tlv_str 21 TLSv1.3)$(tlv_str 22 client.test)")
TLVS=$(tlv_str 01 h2)$(tlv_str 02 localhost)$(tlv 04 000000)$(tlv_str 05 id-1)$SSL_TLV$(tlv_str 30 ns)

# Every valid form, in escaped form; each is sent followed by $REQ (all under 256 bytes,
# testserver's data= limit).
FORMS=(
	"$(v1 TCP4 127.0.0.66 127.0.0.2 10066 8443)"
	"$(v1 TCP6 ::1 ::1 10066 8443)"
	'PROXY UNKNOWN\r\n'
	'PROXY UNKNOWN 127.0.0.66 127.0.0.2 10066 8443\r\n'
	"$(v2 TCP4 127.0.0.66 127.0.0.2 10066 8443)"
	"$(v2 TCP6 ::1 ::1 10066 8443)"
	"$(esc "$(v2_hex 20 00 "")")"
	"$(esc "$(v2_hex 20 11 "$(addr_block TCP4 127.0.0.66 127.0.0.2 10066 8443)")")"
	"$(esc "$(v2_hex 21 00 "")")"
	"$(esc "$(v2_hex 21 12 "$(addr_block TCP4 127.0.0.66 127.0.0.2 10066 8443)")")"
	"$(esc "$(v2_hex 21 31 "$(printf '00%.0s' {1..216})")")"
	"$(v2 TCP4 127.0.0.66 127.0.0.2 10066 8443 "$TLVS")"
	"$(v2 TCP6 ::1 ::1 10066 8443 "$(tlv 04 00000000)")"
	"$(v2_crc TCP4 127.0.0.66 127.0.0.2 10066 8443)"
	"$(v2_crc TCP6 ::1 ::1 10066 8443)"
	"$(esc "$(with_crc "$(v2_hex 20 00 "$(tlv 03 00000000)")")")"
)

# seen_as LISTEN-ADDR CLIENT-ADDR: how the server reports CLIENT-ADDR (rawsend's
# local=): an IPv4 client of a dual-stack listener appears as ::ffff:a.b.c.d.
seen_as() {
	if [[ $1 == :: && $2 != \[* ]]; then
		printf '[::ffff:%s]:%s' "${2%:*}" "${2##*:}"
	else
		printf '%s' "$2"
	fi
}

# local_of LISTEN-ADDR: the server's local= host for connections to TARGET_HOST.
local_of() {
	case $1 in
	127.0.0.1) printf '127.0.0.1' ;;
	::1) printf '[::1]' ;;
	::) [[ $TARGET_HOST == ::1 ]] && printf '[::1]' || printf '[::ffff:127.0.0.1]' ;;
	esac
}

# passes_all MODE LISTEN SOURCE [VAR=VALUE...]: a server (testserver -m MODE on LISTEN,
# under the shim with the given variables) gets every form from SOURCE (to
# TARGET_HOST) and hands each over untouched: reply and server line name the real
# source, data is the header's bytes and $REQ. Nothing is logged at all.
passes_all() {
	local mode=$1 listen=$2 src=$3 f lines=() peer
	shift 3
	start_server "$@" PROXYSHIM_LOG="$T/shim.log" -- -m "$mode" -l "$listen" -n ${#FORMS[@]}
	for f in "${FORMS[@]}"; do
		client "$src" "$f$REQ"
		peer=$(seen_as "$listen" "$CLIENT_LOCAL")
		expect_reply "OK $peer"
		lines+=("$(conn_line "$peer" "$f$REQ" "$(local_of "$listen"):$SERVER_PORT")")
	done
	server_done
	expect_output "${lines[@]}"
	[[ ! -s $T/shim.log ]] || fail "the shim logged:" "$(cat "$T/shim.log")"
}

# rejects_all MODE LISTEN SOURCE: UNTRUSTED=reject; every form from SOURCE is closed
# without reaching the application, each followed by a good connection from the
# trusted $PROXY (to 127.0.0.1), served as $GOOD_PEER.
rejects_all() {
	local mode=$1 listen=$2 src=$3 host=$TARGET_HOST f lines=() good
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=reject \
		PROXYSHIM_LOG="$T/shim.log" -- -m "$mode" -l "$listen" -n ${#FORMS[@]}
	good=$(seen_as "$listen" "$GOOD_PEER")
	for f in "${FORMS[@]}"; do
		TARGET_HOST=$host
		client "$src" "$f$REQ"
		expect_closed
		TARGET_HOST=127.0.0.1
		client "$PROXY" "$GOOD_HDR$REQ"
		expect_reply "OK $good"
		lines+=("$(conn_line "$good" "$REQ" "$(local_of "$listen"):$SERVER_PORT")")
	done
	server_done
	expect_output "${lines[@]}"
}

@test "untrusted, pass, blocking server, IPv4 listener: every form is plain data" {
	passes_all block 127.0.0.1 "$UNTRUSTED" PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=pass
}

@test "untrusted, pass, epoll server, IPv4 listener: every form is plain data" {
	passes_all epoll 127.0.0.1 "$UNTRUSTED" PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=pass
}

@test "untrusted, pass, blocking server, IPv6 [::1] listener: every form is plain data" {
	TARGET_HOST=::1
	passes_all block ::1 ::1 PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=pass
}

@test "untrusted, pass, epoll server, IPv6 [::1] listener: every form is plain data" {
	TARGET_HOST=::1
	passes_all epoll ::1 ::1 PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=pass
}

@test "untrusted, pass (default), dual-stack listener, IPv4 client: plain data" {
	passes_all epoll :: "$UNTRUSTED" PROXYSHIM_TRUSTED=$PROXY
}

@test "untrusted, pass, threaded server, trust list of other networks incl. IPv6" {
	passes_all threads:4 127.0.0.1 "$UNTRUSTED" \
		"PROXYSHIM_TRUSTED=127.0.0.8/30,127.0.0.21/32,10.0.0.0/8,::2,2001:db8::/32"
}

@test "untrusted, reject, blocking server, IPv4 listener: closed, never seen, next served" {
	rejects_all block 127.0.0.1 "$UNTRUSTED"
}

@test "untrusted, reject, epoll server, IPv4 listener: closed, never seen, next served" {
	rejects_all epoll 127.0.0.1 "$UNTRUSTED"
}

# On an IPv6-only [::1] listener every client is ::1, so "the next one" (a trusted
# proxy) cannot come from another address: the IPv6 reject cases use a dual-stack
# listener, with the untrusted client on ::1 and the proxy on 127.0.0.10.
@test "untrusted, reject, blocking server, IPv6 client on a dual-stack listener" {
	TARGET_HOST=::1
	rejects_all block :: ::1
}

@test "untrusted, reject, epoll server, IPv6 client on a dual-stack listener" {
	TARGET_HOST=::1
	rejects_all epoll :: ::1
}

@test "untrusted, reject: nothing is logged at the default level" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=reject \
		PROXYSHIM_LOG="$T/shim.log" -- -n 1
	client "$UNTRUSTED" "${FORMS[0]}$REQ"
	expect_closed
	expect_next_served
	[[ ! -s $T/shim.log ]] || fail "logged:" "$(cat "$T/shim.log")"
}

# ---- PROXYSHIM_TRUSTED unset: inert ----

@test "TRUSTED unset, blocking server: every form from the would-be proxy passes through" {
	passes_all block 127.0.0.1 "$PROXY" PROXYSHIM_UNTRUSTED=reject PROXYSHIM_TIMEOUT_MS=1
}

@test "TRUSTED unset, epoll server: every form passes through" {
	passes_all epoll 127.0.0.1 "$PROXY" PROXYSHIM_UNTRUSTED=reject
}

@test "TRUSTED unset, IPv6 [::1] listener: every form passes through" {
	TARGET_HOST=::1
	passes_all block ::1 ::1 PROXYSHIM_POLICY=optional
}

# strace_server NAME [PRELOAD]: testserver (-n 4, block mode) under strace, with or
# without the shim (TRUSTED unset), serving four forms from $PROXY; the trace of the
# socket calls from the first socket() on, without PIDs, in $T/NAME.trace.
strace_server() {
	local name=$1 pre=${2:-} f pid i
	local env_args=(-u LD_PRELOAD) v
	[[ -n $pre ]] && env_args=(LD_PRELOAD="$PS_PRELOAD")
	for v in $(compgen -e); do
		[[ $v == PROXYSHIM_* ]] && env_args=(-u "$v" "${env_args[@]}")
	done
	rm -f "$T/server.port"
	env "${env_args[@]}" strace -f -qq -o "$T/$name.strace" \
		-e trace=%network,fcntl,close,dup,dup2,dup3 \
		"$TESTSERVER" -P "$T/server.port" -T 30 -n 4 >"$T/$name.out" 2>"$T/$name.err" &
	pid=$!
	PIDS+=("$pid")
	wait_until 10 test -s "$T/server.port" || fail "no server under strace" "$(cat "$T/$name.err")"
	TARGET_PORT=$(<"$T/server.port")
	for i in 0 4 6 13; do
		client "$PROXY" "${FORMS[i]}$REQ"
		expect_reply "OK $CLIENT_LOCAL"
	done
	wait_exit "$pid" 10 || fail "strace/testserver did not end"
	sed -e 's/^[0-9]* *//' "$T/$name.strace" | sed -n '/^socket(/,$p' >"$T/$name.trace"
}

@test "TRUSTED unset: no extra syscall on the accept path (strace)" {
	command -v strace >/dev/null || skip "strace not installed"
	strace_server plain
	strace_server shim preload
	# Deterministic calls (everything but the reads, whose count depends on how the
	# bytes arrive) are the same, in the same order, with the same arguments. The one
	# difference allowed: the shim's accept() is the accept4 syscall with flags 0.
	local calls='^(socket|bind|listen|accept|accept4|getsockopt|setsockopt|getsockname|getpeername|fcntl|close|dup)'
	diff <(grep -E "$calls" "$T/plain.trace" | sed 's/[0-9]\{4,5\}/PORT/g') \
		<(grep -E "$calls" "$T/shim.trace" | sed 's/[0-9]\{4,5\}/PORT/g' |
			sed -E 's/^accept4\((.*), 0\) = /accept(\1) = /') ||
		fail "the traces differ"
	# The reads are the application's own: never a peek.
	! grep -q 'MSG_PEEK' "$T/shim.trace" || fail "the inert shim peeked:" "$(grep MSG_PEEK "$T/shim.trace")"
	(($(grep -c '^accept' "$T/shim.trace") == 4))
	(($(grep -c '^recvfrom' "$T/shim.trace") > 0))
}
