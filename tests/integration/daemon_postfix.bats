#!/usr/bin/env bats
# Postfix's smtpd behind HAProxy, through the shim. Postfix's master starts smtpd with
# only the variables named in import_environment, so LD_PRELOAD and PROXYSHIM_* given
# to the master alone never reach smtpd: that failure is tested first, then the two
# working forms (names imported from the master's environment, and NAME=VALUE set in
# main.cf). Each instance has its own config, queue and data directories and its log
# (maillog_file through postlogd) in a temp dir; mynetworks is HAProxy's 127.0.0.10
# only, so a client taken for HAProxy may relay and the real one may not. HAProxy
# connects from 127.0.0.10 with send-proxy-v2 or send-proxy; clients reach it from
# 127.0.0.77 through one-shot socat relays.

load helpers
load daemons

setup_file() {
	if [[ -n ${PS_ASAN_RUNTIME:-} ]]; then
		file_skip "under the ASan runtime: Postfix starts its workers with only import_environment: they would get the ASan runtime without its options (leak reports fail postfix check)"
		return 0
	fi
	need_cmds haproxy socat postfix setsid
	[[ -x /usr/lib/postfix/sbin/master ]] || skip "postfix not installed (scripts/install-deps)"
	file_dir
	export PF_OFF PF_NAMES PF_ON PORT_ON FE_OFF_V1 FE_OFF_V2 FE_NAMES FE_V2 FE_V1 W
	# the daemons run as the postfix user: a directory it can reach, with the library
	W=$(file_world_dir)
	local pre="${PS_ASAN_RUNTIME:+$PS_ASAN_RUNTIME:}$W/libproxyshim.so" port_off port_names
	local shim=(LD_PRELOAD="$pre" PROXYSHIM_TRUSTED=127.0.0.10 PROXYSHIM_LOG_LEVEL=info)

	# the shim given to the master only: Postfix's default import_environment
	PF_OFF=$W/off
	port_off=$(free_port)
	# (debug: the master says it is active, as a later program of a start-up chain)
	ds_postfix_start "$PF_OFF" "$port_off" "" "${shim[@]}" PROXYSHIM_PORTS="$port_off" \
		PROXYSHIM_LOG_LEVEL=debug
	file_track "$DS_PID"
	# the master's environment, imported by name
	PF_NAMES=$W/names
	port_names=$(free_port)
	ds_postfix_start "$PF_NAMES" "$port_names" "LD_PRELOAD PROXYSHIM_TRUSTED PROXYSHIM_PORTS PROXYSHIM_LOG_LEVEL" \
		"${shim[@]}" PROXYSHIM_PORTS="$port_names"
	file_track "$DS_PID"
	# NAME=VALUE in main.cf, nothing in the master's environment
	PF_ON=$W/on
	PORT_ON=$(free_port)
	ds_postfix_start "$PF_ON" "$PORT_ON" "LD_PRELOAD=$pre PROXYSHIM_TRUSTED=127.0.0.10 PROXYSHIM_PORTS=$PORT_ON PROXYSHIM_LOG_LEVEL=info"
	file_track "$DS_PID"

	file_haproxy "OFF_V1:$port_off:send-proxy" \
		"OFF_V2:$port_off:send-proxy-v2" \
		"NAMES:$port_names:send-proxy-v2" \
		"V2:$PORT_ON:send-proxy-v2" \
		"V1:$PORT_ON:send-proxy"
}

teardown_file() {
	file_cleanup
}

# smtp FRONTEND SOURCE: an SMTP session (up to RCPT to a remote domain) from SOURCE
# through HAProxy's FRONTEND (OUT, STATUS, RELAY_SRC).
smtp() { via "$2" "$1" smtp_relay; }
smtp_relay() { ds_smtp "$RELAY_PORT" rcpt@remote.example; }

# connected DIR ADDR:PORT: smtpd logged the connection from ADDR:PORT (waits 5 s: the
# line goes through postlogd).
connected() { grep -qF "connect from unknown[${2%:*}]:${2##*:}" "$1/postfix/maillog"; }
expect_connected() {
	ds_wait 5 connected "$1" "$2" || fail "no 'connect from unknown[${2%:*}]:${2##*:}':" \
		"$(grep -h 'connect from' "$1/postfix/maillog")"
}

@test "postfix without LD_PRELOAD/PROXYSHIM_* in import_environment: smtpd logs HAProxy's address and takes the header for a command" {
	smtp "$FE_OFF_V1" 127.0.0.77
	ds_wait 5 grep -q 'connect from unknown\[127.0.0.10\]' "$PF_OFF/postfix/maillog" ||
		fail "$(cat "$PF_OFF/postfix/maillog")"
	! grep -q '127\.0\.0\.77' "$PF_OFF/postfix/maillog"
	# the header was an unknown command; the client, taken for HAProxy, may relay
	expect_match "$OUT" $'\n500 5.5.2 Error: command not recognized'
	expect_match "$OUT" $'\n250 2.1.5 Ok'
	# send-proxy-v2: the binary header's "QUIT" ends the session after the greeting
	smtp "$FE_OFF_V2" 127.0.0.77
	expect_match "$OUT" '^220 mx\.proxyshim\.test ESMTP'
	[[ $OUT != *"250 2.1.5"* ]] || fail "v2 session went on: $OUT"
	! grep -q '127\.0\.0\.77' "$PF_OFF/postfix/maillog"
	# the master did have the shim; smtpd did not
	grep -q 'active in master' "$PF_OFF/postfix/master.err"
}

@test "postfix, import_environment = NAME=VALUE, HAProxy send-proxy-v2: smtpd logs the client and answers the session" {
	smtp "$FE_V2" 127.0.0.77
	expect_status 0
	expect_match "$OUT" '^220 mx\.proxyshim\.test ESMTP'
	expect_match "$OUT" $'\n250-PIPELINING'
	# the client is no longer taken for HAProxy's network
	expect_match "$OUT" $'\n554 5.7.1 <rcpt@remote.example>: Relay access denied'
	expect_match "$OUT" $'\n221 2.0.0 Bye'
	expect_connected "$PF_ON" "$RELAY_SRC"
	grep -qF "reject: RCPT from unknown[${RELAY_SRC%:*}]:${RELAY_SRC##*:}: 554 5.7.1" "$PF_ON/postfix/maillog"
	! grep -q '127\.0\.0\.10' "$PF_ON/postfix/maillog"
}

@test "postfix, import_environment = NAME=VALUE, HAProxy send-proxy (v1): smtpd logs the client" {
	smtp "$FE_V1" 127.0.0.77
	expect_status 0
	expect_match "$OUT" $'\n554 5.7.1 <rcpt@remote.example>: Relay access denied'
	expect_connected "$PF_ON" "$RELAY_SRC"
	! grep -q '127\.0\.0\.10' "$PF_ON/postfix/maillog"
}

@test "postfix, import_environment naming the master's LD_PRELOAD and PROXYSHIM_*: smtpd logs the client" {
	smtp "$FE_NAMES" 127.0.0.77
	expect_status 0
	expect_match "$OUT" $'\n554 5.7.1 <rcpt@remote.example>: Relay access denied'
	expect_connected "$PF_NAMES" "$RELAY_SRC"
	! grep -q '127\.0\.0\.10' "$PF_NAMES/postfix/maillog"
}

@test "postfix under the shim: an untrusted direct client is served as itself" {
	via 127.0.0.20 "$PORT_ON" smtp_relay
	expect_status 0
	expect_match "$OUT" '^220 mx\.proxyshim\.test ESMTP'
	expect_match "$OUT" $'\n554 5.7.1 <rcpt@remote.example>: Relay access denied'
	expect_connected "$PF_ON" "$RELAY_SRC"
	expect_match "$RELAY_SRC" '^127\.0\.0\.20:'
}
