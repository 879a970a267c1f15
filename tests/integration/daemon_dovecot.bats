#!/usr/bin/env bats
# Dovecot's imap-login behind HAProxy, through the shim. Like Postfix's master, Dovecot's
# starts its processes with only the variables of its import_environment setting: the
# shim given to `dovecot` alone never reaches imap-login (tested first), NAME=VALUE
# entries in import_environment bring it there. Each instance runs as `dovecot -F` with
# base_dir, state_dir and log_path in a temp dir, a passwd-file user and an IMAP
# listener on a free loopback port; its login line names the client and its port
# (rip=, rport=). HAProxy connects from 127.0.0.10 with send-proxy-v2 or send-proxy;
# clients reach it from 127.0.0.77 through one-shot socat relays.

load helpers
load daemons

setup_file() {
	if [[ -n ${PS_ASAN_RUNTIME:-} ]]; then
		file_skip "under the ASan runtime: Dovecot starts its login processes with only import_environment, chrooted: the ASan runtime cannot run there"
		return 0
	fi
	need_cmds haproxy socat curl dovecot
	file_dir
	export DV_OFF DV_ON PORT_ON FE_OFF FE_V2 FE_V1 W
	# login and mail processes run as dovenull and nobody: a directory they can reach
	W=$(file_world_dir)
	local pre="${PS_ASAN_RUNTIME:+$PS_ASAN_RUNTIME:}$W/libproxyshim.so" port_off

	# the shim given to dovecot only: import_environment without it
	DV_OFF=$W/off
	port_off=$(free_port)
	ds_dovecot_start "$DV_OFF" "$port_off" "" LD_PRELOAD="$pre" PROXYSHIM_TRUSTED=127.0.0.10 \
		PROXYSHIM_PORTS="$port_off"
	file_track "$DS_PID"
	DV_ON=$W/on
	PORT_ON=$(free_port)
	ds_dovecot_start "$DV_ON" "$PORT_ON" "LD_PRELOAD=$pre PROXYSHIM_TRUSTED=127.0.0.10 PROXYSHIM_PORTS=$PORT_ON"
	file_track "$DS_PID"

	file_haproxy "OFF:$port_off:send-proxy" \
		"V2:$PORT_ON:send-proxy-v2" \
		"V1:$PORT_ON:send-proxy"
}

teardown_file() {
	file_cleanup
}

# imap FRONTEND SOURCE: alice logs in and lists her mailboxes from SOURCE through
# HAProxy's FRONTEND (OUT, STATUS, RELAY_SRC).
imap() { via "$2" "$1" imap_relay; }
imap_relay() { curl -sS --max-time 10 -u alice:alice-pw "imap://127.0.0.1:$RELAY_PORT/"; }

# logged_in DIR ADDR:PORT: the login line names ADDR and PORT.
logged_in() { grep -Eq "imap-login: Info: Login: user=<alice>, .*rip=${2%:*}, rport=${2##*:}," "$1/dovecot/dovecot.log"; }
expect_login() {
	ds_wait 5 logged_in "$1" "$2" || fail "no login line for $2:" "$(grep 'imap-login' "$1/dovecot/dovecot.log")"
}

@test "dovecot without LD_PRELOAD/PROXYSHIM_* in import_environment: imap-login logs HAProxy's address" {
	imap "$FE_OFF" 127.0.0.77
	ds_wait 5 grep -q 'imap-login: Info: .*rip=127\.0\.0\.10,' "$DV_OFF/dovecot/dovecot.log" ||
		fail "$(cat "$DV_OFF/dovecot/dovecot.log")"
	! grep -q '127\.0\.0\.77' "$DV_OFF/dovecot/dovecot.log"
}

@test "dovecot, import_environment = NAME=VALUE, HAProxy send-proxy-v2: the login line names the client" {
	imap "$FE_V2" 127.0.0.77
	expect_status 0
	expect_match "$OUT" 'INBOX'
	expect_login "$DV_ON" "$RELAY_SRC"
	! grep -q '127\.0\.0\.10' "$DV_ON/dovecot/dovecot.log"
}

@test "dovecot, import_environment = NAME=VALUE, HAProxy send-proxy (v1): the login line names the client" {
	imap "$FE_V1" 127.0.0.77
	expect_status 0
	expect_match "$OUT" 'INBOX'
	expect_login "$DV_ON" "$RELAY_SRC"
	! grep -q '127\.0\.0\.10' "$DV_ON/dovecot/dovecot.log"
}

@test "dovecot under the shim: an untrusted direct client is served as itself" {
	via 127.0.0.20 "$PORT_ON" imap_relay
	expect_status 0
	expect_match "$OUT" 'INBOX'
	expect_match "$RELAY_SRC" '^127\.0\.0\.20:'
	expect_login "$DV_ON" "$RELAY_SRC"
}
