#!/usr/bin/env bats
# Debian's OpenSSH sshd under the shim, unprivileged style (own host key, own config,
# high loopback port, foreground, log on stderr). sshd re-execs itself for every
# connection (sshd -R), so the client's address must survive that exec. Asserts on
# sshd's own log: "Connection from A port P" and "Accepted publickey for USER from A".

load helpers
load inherit

SSHD=/usr/sbin/sshd

setup_file() {
	[[ -x $SSHD ]] || skip "no $SSHD"
	command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || skip "no ssh client"
	[[ -x $SOCAT ]] || skip "no $SOCAT"
	inherit_setup
	# sshd (as root) needs its privilege separation directory, which the sshd service
	# normally creates; make it if missing and remove it again afterwards.
	if ((EUID == 0)) && [[ ! -d /run/sshd ]]; then
		mkdir -m 0755 /run/sshd
		export SSHD_MADE_RUNDIR=1
	fi
}

teardown_file() {
	[[ -z ${SSHD_MADE_RUNDIR:-} ]] || rmdir /run/sshd 2>/dev/null || true
}

LOGIN=$(id -un)

# start_sshd shim|plain [VAR=VALUE...]: sshd -D -e with its own key and config on
# 127.0.0.1:$SSHD_PORT, under the shim (with the given PROXYSHIM_* variables) or not.
# Its log goes to $T/sshd.log. Also makes the client's key, authorized for $LOGIN.
start_sshd() {
	local how=$1
	shift
	SSHD_PORT=$(free_port)
	ssh-keygen -q -t ed25519 -N '' -C hostkey -f "$T/hostkey" </dev/null >/dev/null
	ssh-keygen -q -t ed25519 -N '' -C client -f "$T/id" </dev/null >/dev/null
	cp "$T/id.pub" "$T/authorized_keys"
	cat >"$T/sshd_config" <<-EOF
		Port $SSHD_PORT
		ListenAddress 127.0.0.1
		HostKey $T/hostkey
		PidFile $T/sshd.pid
		AuthorizedKeysFile $T/authorized_keys
		UsePAM no
		StrictModes no
		LogLevel ${SSHD_LOGLEVEL:-VERBOSE}
		PermitRootLogin prohibit-password
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PrintMotd no
	EOF
	if [[ $how == shim ]]; then
		shim_argv "$@" -- "$SSHD" -D -e -f "$T/sshd_config"
	else
		plain_argv "$SSHD" -D -e -f "$T/sshd_config"
	fi
	"${ARGV[@]}" >"$T/sshd.out" 2>"$T/sshd.log" &
	SSHD_PID=$!
	PIDS+=("$SSHD_PID")
	wait_until 10 is_listening "$SSHD_PORT" || fail "sshd did not start:" "$(cat "$T/sshd.log")"
}

# relay SOURCE HEADER: writes $T/relay, a ProxyCommand that sends HEADER (escaped form,
# may be empty) and then relays the ssh session to sshd from SOURCE.
relay() {
	emit "$2" >"$T/header"
	cat >"$T/relay" <<-EOF
		#!/bin/sh
		cat "$T/header" - | exec $SOCAT - "TCP:127.0.0.1:\$1,bind=$1"
	EOF
	chmod +x "$T/relay"
}

# ssh_run [SSH-OPTS...] -- HOST PORT: runs "echo ok" over ssh (key only, batch mode,
# no host key checks), bounded; SSH_STATUS, and the output in $T/ssh.out / ssh.err.
ssh_run() {
	local opts=()
	ds_split "$@"
	opts=("${DS_HEAD[@]}")
	set -- "${DS_TAIL[@]}"
	SSH_STATUS=0
	timeout 30 env -u LD_PRELOAD ssh -F /dev/null -T -i "$T/id" -o IdentitiesOnly=yes \
		-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR -o ConnectTimeout=10 "${opts[@]}" -p "$2" "$LOGIN@$1" echo ok \
		</dev/null >"$T/ssh.out" 2>"$T/ssh.err" || SSH_STATUS=$?
}

# ssh_via_relay SOURCE HEADER: "echo ok" through the relay; must succeed.
ssh_via_relay() {
	relay "$1" "$2"
	ssh_run -o "ProxyCommand=$T/relay %p" -- 127.0.0.1 "$SSHD_PORT"
	expect_logged_in
}

expect_logged_in() {
	[[ $SSH_STATUS == 0 && $(<"$T/ssh.out") == ok ]] ||
		fail "ssh status $SSH_STATUS, output '$(cat "$T/ssh.out")'" "$(cat "$T/ssh.err")"
}

# expect_sshd_log ERE: sshd logged a matching line (waits, bounded).
expect_sshd_log() {
	wait_until 5 grep -Eq -- "$1" "$T/sshd.log" ||
		fail "sshd never logged /$1/:" "$(cat "$T/sshd.log")"
}

re() { printf '%s' "${1//./\\.}"; }

# expect_client ADDR [PORT]: sshd logged the connection and the key login as from ADDR.
expect_client() {
	local a p=${2:-[0-9]+}
	a=$(re "$1")
	expect_sshd_log "^Connection from $a port $p on 127\.0\.0\.1 port $SSHD_PORT"
	expect_sshd_log "^Accepted publickey for $LOGIN from $a port $p ssh2"
}

@test "sshd: v1 header through a ProxyCommand relay: sshd logs the header's client" {
	start_sshd shim PROXYSHIM_TRUSTED="$PROXY"
	ssh_via_relay "$PROXY" "$(v1 TCP4 "$CLIENT_IP" 127.0.0.1 "$CLIENT_PORT" "$SSHD_PORT")"
	expect_client "$CLIENT_IP" "$CLIENT_PORT"
	! grep -q "$(re "$PROXY")" "$T/sshd.log" || fail "the proxy's address reached sshd's log:" "$(cat "$T/sshd.log")"
}

@test "sshd: v2 header through a ProxyCommand relay: sshd logs the header's client" {
	start_sshd shim PROXYSHIM_TRUSTED="$PROXY"
	ssh_via_relay "$PROXY" "$(v2 TCP4 "$CLIENT_IP" 127.0.0.1 "$CLIENT_PORT" "$SSHD_PORT")"
	expect_client "$CLIENT_IP" "$CLIENT_PORT"
}

@test "sshd: two logins in a row from two clients, each logged as itself" {
	start_sshd shim PROXYSHIM_TRUSTED="$PROXY"
	ssh_via_relay "$PROXY" "$(v1 TCP4 127.0.0.78 127.0.0.1 7001 "$SSHD_PORT")"
	ssh_via_relay "$PROXY" "$(v2 TCP4 127.0.0.79 127.0.0.1 7002 "$SSHD_PORT")"
	expect_client 127.0.0.78 7001
	expect_client 127.0.0.79 7002
}

@test "sshd: the per-connection re-exec (sshd -R) really happens and keeps the address" {
	SSHD_LOGLEVEL=DEBUG1 start_sshd shim PROXYSHIM_TRUSTED="$PROXY"
	ssh_via_relay "$PROXY" "$(v1 TCP4 "$CLIENT_IP" 127.0.0.1 "$CLIENT_PORT" "$SSHD_PORT")"
	# "rexec start" is logged just before execv(sshd -R); the re-exec'd sshd logs
	# "inetd sockets after dupping" and then the connection.
	expect_sshd_log "^debug1: rexec start in"
	expect_sshd_log "^debug1: inetd sockets after dupping"
	! grep -q "rexec of .* failed" "$T/sshd.log" || fail "sshd's re-exec failed"
	expect_client "$CLIENT_IP" "$CLIENT_PORT"
	# The re-exec'd sshd found the carried state and left its fds 0/1 alone (it would
	# otherwise look for a second header in the SSH banner and cut the connection).
	! grep -q '^proxyshim\[' "$T/sshd.log" || fail "shim warnings:" "$(grep '^proxyshim\[' "$T/sshd.log")"
}

@test "sshd behind HAProxy send-proxy: sshd logs the client's own address" {
	[[ -x $HAPROXY ]] || skip "no $HAPROXY"
	start_sshd shim PROXYSHIM_TRUSTED=127.0.0.1
	SERVER_PORT=$SSHD_PORT
	start_haproxy send-proxy
	ssh_run -o BindAddress=127.0.0.11 -- 127.0.0.1 "$HAPROXY_PORT"
	expect_logged_in
	expect_client 127.0.0.11
	! grep -q "from 127\.0\.0\.1 " "$T/sshd.log" || fail "HAProxy's address reached sshd's log"
}

@test "sshd behind HAProxy send-proxy-v2: sshd logs the client's own address" {
	[[ -x $HAPROXY ]] || skip "no $HAPROXY"
	start_sshd shim PROXYSHIM_TRUSTED=127.0.0.1
	SERVER_PORT=$SSHD_PORT
	start_haproxy send-proxy-v2
	ssh_run -o BindAddress=127.0.0.12 -- 127.0.0.1 "$HAPROXY_PORT"
	expect_logged_in
	expect_client 127.0.0.12
	! grep -q "from 127\.0\.0\.1 " "$T/sshd.log" || fail "HAProxy's address reached sshd's log"
}

@test "control: sshd without the shim logs the relay's address" {
	start_sshd plain
	ssh_via_relay "$PROXY" ""
	expect_client "$PROXY"
}

@test "control: sshd without the shim behind HAProxy logs HAProxy's address" {
	[[ -x $HAPROXY ]] || skip "no $HAPROXY"
	start_sshd plain
	SERVER_PORT=$SSHD_PORT
	start_haproxy ""
	ssh_run -o BindAddress=127.0.0.11 -- 127.0.0.1 "$HAPROXY_PORT"
	expect_logged_in
	expect_client 127.0.0.1
}

@test "sshd: an untrusted source's header is not honoured (sshd sees it as its banner)" {
	start_sshd shim PROXYSHIM_TRUSTED="$PROXY"
	relay "$UNTRUSTED" "$(v1 TCP4 "$CLIENT_IP" 127.0.0.1 "$CLIENT_PORT" "$SSHD_PORT")"
	ssh_run -o "ProxyCommand=$T/relay %p" -- 127.0.0.1 "$SSHD_PORT"
	[[ $SSH_STATUS != 0 ]] || fail "ssh logged in although the header was plain data"
	expect_sshd_log "^Connection from $(re "$UNTRUSTED") port [0-9]+ "
	expect_sshd_log "invalid protocol identifier \"PROXY TCP4 $(re "$CLIENT_IP") "
	! grep -Eq "from $(re "$CLIENT_IP") port" "$T/sshd.log" ||
		fail "the header was honoured:" "$(cat "$T/sshd.log")"
}

@test "sshd: the trusted proxy without a header is refused; the next login works" {
	start_sshd shim PROXYSHIM_TRUSTED="$PROXY"
	relay "$PROXY" ""
	ssh_run -o "ProxyCommand=$T/relay %p" -- 127.0.0.1 "$SSHD_PORT"
	[[ $SSH_STATUS != 0 ]] || fail "ssh logged in without a header from the trusted proxy"
	! grep -q "^Connection from" "$T/sshd.log" || fail "sshd was handed the connection:" "$(cat "$T/sshd.log")"
	ssh_via_relay "$PROXY" "$(v1 TCP4 "$CLIENT_IP" 127.0.0.1 "$CLIENT_PORT" "$SSHD_PORT")"
	expect_client "$CLIENT_IP" "$CLIENT_PORT"
}
