#!/usr/bin/env bats
# systemd Accept=yes style: build/launcher (without the shim) accepts one connection and
# execs the service with it as fd 3, LISTEN_FDS=1 and LISTEN_PID=the service's pid; the
# service is build/peerinfo under the shim. The header must be gone before its first
# read, getpeername must report the header's client, and the data must be intact.

load helpers
load inherit

setup_file() {
	inherit_setup
}

DATA='hello unit'

# service [VAR=VALUE...] -- PROG ARGS...: the launcher runs PROG under the shim
# (trusting $PROXY unless a VAR says otherwise) through env, as a unit's ExecStart.
service() {
	local vars=()
	ds_split "$@"
	vars=("${DS_HEAD[@]}")
	set -- "${DS_TAIL[@]}"
	start_launcher env LD_PRELOAD="$PS_PRELOAD" PROXYSHIM_TRUSTED="$PROXY" \
		PEERINFO_OUT="$T/peerinfo.out" "${vars[@]}" "$@"
}

@test "systemd: v1 header: peer is the header's client, data intact" {
	service -- "$PEERINFO" -r read
	client "$PROXY" "$(hdr1)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	launcher_done
}

@test "systemd: v2 header, each read mode (recv, readv, recvmsg)" {
	local mode
	for mode in recv readv recvmsg; do
		service -- "$PEERINFO" -r "$mode"
		client "$PROXY" "$(hdr2 127.0.0.78 6010)$DATA"
		expect_reply "$(peerinfo_line 127.0.0.78:6010 "$DATA")" || fail "mode $mode"
		launcher_done
	done
}

@test "systemd: binary data after a v2 header with CRC32C arrives byte for byte" {
	local bin='\r\n\r\n\x00\r\nQUIT\n\x00\xff\\'
	service -- "$PEERINFO" -r recv
	client "$PROXY" "$(v2_crc TCP4 "$CLIENT_IP" 127.0.0.1 "$CLIENT_PORT" "$TARGET_PORT")$bin"
	launcher_done
	expect_app "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$(peerinfo_esc "$bin")")"
}

@test "systemd: the service sees LISTEN_PID = its own pid and LISTEN_FDS=1" {
	printf '#!/bin/sh\n[ "$LISTEN_PID" = "$$" ] && [ "$LISTEN_FDS" = 1 ] && echo ok >"%s"\n' \
		"$T/check.out" >"$T/check"
	chmod +x "$T/check"
	start_launcher "$T/check"
	client "$UNTRUSTED" "$DATA"
	launcher_done
	[[ $(cat "$T/check.out" 2>/dev/null) == ok ]] || fail "LISTEN_PID/LISTEN_FDS not as systemd sets them"
}

@test "systemd: a late header (300 ms after connect) is waited for" {
	service -- "$PEERINFO" -r read
	client "$PROXY" "$(hdr1)$DATA" -w 300
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	launcher_done
}

@test "systemd: the service execs again (peerinfo -x peerinfo): still the client" {
	service -- "$PEERINFO" -x "$PEERINFO" -r recv
	client "$PROXY" "$(hdr2)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	launcher_done
}

@test "systemd: untrusted source: its header is plain data, the peer is the real one" {
	local h
	h=$(hdr1)
	service -- "$PEERINFO" -r read
	client "$UNTRUSTED" "$h$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$(peerinfo_esc "$h$DATA")")"
	launcher_done
}

@test "systemd: PROXYSHIM_PORTS without the service's port: the header is left alone" {
	local h
	h=$(hdr1)
	service PROXYSHIM_PORTS=1 -- "$PEERINFO" -r read
	client "$PROXY" "$h$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$(peerinfo_esc "$h$DATA")")"
	launcher_done
}

@test "systemd: malformed header from the trusted source: the service reads EOF" {
	service -- "$PEERINFO" -r recv
	client "$PROXY" "PROXY TCP4 127.0.0.77 127.0.0.1 5555\\r\\n$DATA"
	wait_exit "$LAUNCHER_PID" 10 || true
	expect_app_eof
}

@test "systemd: truncated header held open: EOF after PROXYSHIM_TIMEOUT_MS" {
	local h
	h=$(hdr2)
	service PROXYSHIM_TIMEOUT_MS=300 -- "$PEERINFO" -r read
	client "$PROXY" "${h:0:30}" -k -t 3000
	[[ $CLIENT_END == eof || $CLIENT_END == reset ]] ||
		fail "connection not closed before the client's 3 s timeout (status $CLIENT_STATUS)"
	wait_exit "$LAUNCHER_PID" 10 || true
	expect_app_eof
}

@test "systemd: forged PROXYSHIM_INHERIT on fd 3 (right cookie, untrusted peer) is ignored" {
	start_launcher "$FORGE" -d 3 -c right env LD_PRELOAD="$PS_PRELOAD" \
		PROXYSHIM_TRUSTED="$PROXY" PEERINFO_OUT="$T/peerinfo.out" "$PEERINFO" -r recv
	client "$UNTRUSTED" "$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_LOCAL" "$DATA")"
	launcher_done
}

@test "systemd: forged PROXYSHIM_INHERIT on fd 3 (wrong cookie, trusted proxy): header decides" {
	start_launcher "$FORGE" -d 3 -c wrong env LD_PRELOAD="$PS_PRELOAD" \
		PROXYSHIM_TRUSTED="$PROXY" PEERINFO_OUT="$T/peerinfo.out" "$PEERINFO" -r recv
	client "$PROXY" "$(hdr1)$DATA"
	expect_reply "$(peerinfo_line "$CLIENT_IP:$CLIENT_PORT" "$DATA")"
	launcher_done
}
