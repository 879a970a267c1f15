#!/usr/bin/env bats
# Who is trusted, what the policies do, which listeners are selected, configuration
# errors and logging.

load helpers

HDR=$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)

# passed_through SOURCE PAYLOAD: the server (started with -n 1) got PAYLOAD untouched
# from SOURCE's real address.
passed_through() {
	client "$1" "$2"
	expect_reply "OK $CLIENT_LOCAL"
	server_done
	expect_output "$(conn_line "$CLIENT_LOCAL" "$2")"
}

@test "untrusted source, UNTRUSTED=pass: a v1 header is plain data, peer is the real source" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=pass -- -n 1
	passed_through "$UNTRUSTED" "$HDR$REQ"
}

@test "untrusted source, default policy: a v2 header is plain data" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1
	passed_through "$UNTRUSTED" "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
}

@test "untrusted source without a header is handed over untouched" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1
	passed_through "$UNTRUSTED" "$REQ"
}

@test "untrusted source, UNTRUSTED=reject: closed at accept, next connection served" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=reject -- -n 1
	client "$UNTRUSTED" "$HDR$REQ"
	expect_closed
	client "$UNTRUSTED" "$REQ"
	expect_closed
	expect_next_served
}

@test "PROXYSHIM_TRUSTED list with CIDRs: inside honoured, outside not" {
	start_server "PROXYSHIM_TRUSTED=10.1.2.3,127.0.0.8/29,::1" -- -n 2
	client 127.0.0.15 "$HDR$REQ"
	expect_reply "OK 127.0.0.11:10011"
	client 127.0.0.16 "$HDR$REQ"
	local outside=$CLIENT_LOCAL
	expect_reply "OK $outside"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")" "$(conn_line "$outside" "$HDR$REQ")"
}

@test "PROXYSHIM_TRUSTED='*' trusts any source" {
	start_server 'PROXYSHIM_TRUSTED=*' -- -n 1
	client "$UNTRUSTED" "$HDR$REQ"
	expect_reply "OK 127.0.0.11:10011"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")"
}

@test "POLICY=optional: trusted source without a header is handed over untouched" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_POLICY=optional -- -n 1
	passed_through "$PROXY" "$REQ"
}

@test "POLICY=optional: a header from the trusted source is still used" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_POLICY=optional -- -n 2
	client "$PROXY" "$HDR$REQ"
	expect_reply "OK 127.0.0.11:10011"
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.2 10012 8443)$REQ"
	expect_reply "OK 127.0.0.12:10012"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")" "$(conn_line 127.0.0.12:10012 "$REQ")"
}

@test "POLICY=optional: a bad header is still refused" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_POLICY=optional -- -n 1
	expect_refused "PROXY TCP4 127.0.0.011 127.0.0.2 10011 8443\\r\\n$REQ"
}

@test "POLICY=optional, server speaks first, no header: greeted after the timeout" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_POLICY=optional PROXYSHIM_TIMEOUT_MS=300 \
		-- -n 1 -m greet -I 300
	client "$PROXY" "" -k
	expect_reply $'HELLO\r\nOK '"$CLIENT_LOCAL"
	server_done
	expect_output "$(conn_line "$CLIENT_LOCAL" TIMEOUT)"
	((CLIENT_FIRST_MS >= 290 && CLIENT_FIRST_MS < 3000)) ||
		fail "greeting after $CLIENT_FIRST_MS ms, expected PROXYSHIM_TIMEOUT_MS=300"
}

@test "POLICY=require, server speaks first: no greeting before the header" {
	start_server PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m greet
	client "$PROXY" "$(v2 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ" -w 400
	expect_reply $'HELLO\r\nOK 127.0.0.11:10011'
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")"
	((CLIENT_FIRST_MS >= 390)) || fail "greeting after $CLIENT_FIRST_MS ms, before the header"
}

# deferred [VAR=VALUE...] [-- HELPER-ARGS...]: tests/helpers/deferaccept.py under the
# shim, the proxy trusted, its lines in OUT.
deferred() {
	local vars=()
	ds_split "$@"
	vars=("${DS_HEAD[@]}")
	set -- "${DS_TAIL[@]}"
	OUT=$(under_shim PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOG="$T/shim.log" "${vars[@]}" -- \
		timeout 20 /usr/bin/python3 "$BATS_TEST_DIRNAME/../helpers/deferaccept.py" "$PROXY" "$@")
}

# Only proxies may connect and each must send a header first: every connection the
# application can get speaks first, so the kernel holds each one until it does
# (TCP_DEFER_ACCEPT) and a late header is never kept aside in the shim.
@test "require + UNTRUSTED=reject: the kernel holds a connection until it speaks (TCP_DEFER_ACCEPT, 1 s)" {
	deferred PROXYSHIM_UNTRUSTED=reject PROXYSHIM_TIMEOUT_MS=2500
	[[ $OUT == $'defer=1\nqueued_silent=0\nqueued_spoken=1\naccepted peer=127.0.0.11:10011 data=b\'hello\\n\'' ]] ||
		fail "$OUT"
}

@test "require + UNTRUSTED=reject: a value the application chose is kept" {
	deferred PROXYSHIM_UNTRUSTED=reject -- --preset 7
	[[ $OUT == defer=7$'\n'* && $OUT == *"accepted peer=127.0.0.11:10011"* ]] || fail "$OUT"
}

@test "require + UNTRUSTED=reject: a silent proxy connection is still closed and logged (after the kernel's hold and the timeout)" {
	deferred PROXYSHIM_UNTRUSTED=reject PROXYSHIM_TIMEOUT_MS=500 -- --silent
	[[ $OUT == $'defer=1\nqueued_silent=0\n'* && $OUT == *$'\nclient closed after='* &&
		$OUT == *$'\nno connection' ]] || fail "$OUT"
	local after=${OUT#*after=}
	after=${after%%$'\n'*}
	[[ $after != 8.* ]] || fail "not closed: $OUT"
	expect_log "$T/shim.log" "proxy $PROXY:[0-9]+: timed out waiting for the header"
}

# A listener the application was handed may be served after it by programs without the
# shim: a property of the socket set here would outlive the process.
@test "require + UNTRUSTED=reject: a listener handed over across exec (listen() called again) is left as it is" {
	local ARGV
	shim_argv PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=reject -- \
		timeout 20 /usr/bin/python3 "$BATS_TEST_DIRNAME/../helpers/deferaccept.py" "$PROXY"
	# the listener's maker, without the shim, execs the shimmed helper
	OUT=$(/usr/bin/python3 -c '
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
s.set_inheritable(True)
os.execvp(sys.argv[1], sys.argv[1:] + ["--fd", str(s.fileno())])' "${ARGV[@]}")
	[[ $OUT == $'defer=0\nqueued_silent=1\n'* && $OUT == *"accepted peer=127.0.0.11:10011"* ]] ||
		fail "$OUT"
}

# The same for a listener the application made, once it goes to another program: the
# one exec'd (here without the shim) gets it as it would without the shim. A listener
# closed on exec stays as it is: the process goes on serving it, or it is gone.
@test "require + UNTRUSTED=reject: the application's own listener, inherited across exec, is given back its TCP_DEFER_ACCEPT of 0; one closed on exec keeps 1" {
	local ARGV
	shim_argv PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=reject -- /usr/bin/python3 -c '
import os, socket, sys
def made():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s
handed, kept = made(), made()
handed.set_inheritable(True)
print("before exec:", handed.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT), flush=True)
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
r, w = os.pipe()
if os.fork() == 0:
    os.close(r)
    os.dup2(w, 1)
    os.execve(sys.executable, [sys.executable, "-c", "import socket, sys; s = socket.socket(fileno=int(sys.argv[1])); print(\"after exec:\", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT))", str(handed.fileno())], env)
os.close(w)
os.wait()
print(os.read(r, 100).decode().strip())
print("closed on exec:", kept.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT))'
	OUT=$(timeout 20 "${ARGV[@]}")
	[[ $OUT == $'before exec: 1\nafter exec: 0\nclosed on exec: 1' ]] || fail "$OUT"
}

# A silent connection held by the kernel keeps a SYN-queue entry until the hold ends:
# with SYN cookies off a full queue refuses new connections, the proxy's included. The
# hold is 1 s whatever PROXYSHIM_TIMEOUT_MS, so that is how long they can keep it out.
@test "require + UNTRUSTED=reject, SYN cookies off: silent untrusted connections filling the SYN queue keep a proxy out about 1 s, not the header timeout" {
	unshare -n true 2>/dev/null || skip "no network namespace here (needs CAP_SYS_ADMIN)"
	local helper=$BATS_TEST_DIRNAME/../helpers/synhold.py ARGV s
	shim_argv PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=reject PROXYSHIM_TIMEOUT_MS=60000 \
		-- /usr/bin/python3 "$helper" --serve
	OUT=$(timeout 60 unshare -n /usr/bin/python3 "$helper" -- "${ARGV[@]}")
	[[ $OUT =~ ^proxy\ answered\ after\ ([0-9.]+)\ \(b\'ok\ hi\'\)$ ]] || fail "$OUT"
	s=${BASH_REMATCH[1]}
	((${s/./} < 25)) || fail "the proxy was kept out $s s"
}

@test "UNTRUSTED=pass, POLICY=optional, or a listener not selected: no TCP_DEFER_ACCEPT" {
	local v
	for v in PROXYSHIM_UNTRUSTED=pass "PROXYSHIM_UNTRUSTED=reject PROXYSHIM_POLICY=optional" \
		"PROXYSHIM_UNTRUSTED=reject PROXYSHIM_PORTS=1"; do
		# shellcheck disable=SC2086
		deferred $v
		[[ $OUT == $'defer=0\nqueued_silent=1\n'* ]] || fail "$v:" "$OUT"
	done
}

@test "PROXYSHIM_PORTS naming another port leaves this listener alone" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_PORTS=1,7-9 -- -n 1
	passed_through "$PROXY" "$HDR$REQ"
}

@test "PROXYSHIM_PORTS with a range covering this port applies to it" {
	local port
	port=$(free_port)
	start_server PROXYSHIM_TRUSTED=$PROXY "PROXYSHIM_PORTS=7,$((port - 1))-$((port + 1))" \
		-- -n 1 -p "$port"
	client "$PROXY" "$HDR$REQ"
	expect_reply "OK 127.0.0.11:10011"
	server_done
	expect_output "$(conn_line 127.0.0.11:10011 "$REQ")"
}

@test "PROXYSHIM_TRUSTED unset: fully inert, a header from anyone is data" {
	start_server PROXYSHIM_POLICY=require PROXYSHIM_UNTRUSTED=reject -- -n 1
	passed_through "$PROXY" "$HDR$REQ"
}

# proxied_logged PROXY-ADDR CLIENT-ADDR: $T/shim.log has "proxy PROXY-ADDR ... -> client
# CLIENT-ADDR" on one line.
proxied_logged() {
	local p=${1//./\\.} c=${2//./\\.}
	expect_log "$T/shim.log" "proxy $p([^0-9]|\$).*-> client $c([^0-9]|\$)"
}

@test "PROXYSHIM_LOG_LEVEL=info logs proxy -> client for each proxied connection" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOG_LEVEL=info PROXYSHIM_LOG="$T/shim.log" \
		-- -n 2
	client "$PROXY" "$HDR$REQ"
	local proxy1=$CLIENT_LOCAL
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.2 10012 8443)$REQ"
	server_done
	proxied_logged "$proxy1" 127.0.0.11:10011
	proxied_logged "$CLIENT_LOCAL" 127.0.0.12:10012
}

@test "PROXYSHIM_LOG_LEVEL=warn (default) logs nothing for good connections" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOG="$T/shim.log" -- -n 1
	client "$PROXY" "$HDR$REQ"
	server_done
	[[ ! -s $T/shim.log ]] || fail "unexpected log lines:" "$(cat "$T/shim.log")"
}

# bad_config VAR VALUE: the program does not start: exit 1 and one line on stderr,
# `proxyshim: VAR: "VALUE": reason`.
bad_config() {
	local vars=("PROXYSHIM_TRUSTED=$PROXY" "$1=$2")
	[[ $1 == PROXYSHIM_TRUSTED ]] && vars=("$1=$2")
	run under_shim "${vars[@]}" -- "$TESTSERVER" -n 1 -T 5 -P "$T/bad.port"
	[[ $status == 1 ]] || fail "$1=$2: exit status $status, expected 1" "$output"
	[[ ${#lines[@]} == 1 ]] || fail "$1=$2: expected one line, got:" "$output"
	local prefix="proxyshim: $1: \"$2\": "
	[[ ${lines[0]} == "$prefix"?* ]] || fail "$1=$2: message '${lines[0]}'" "expected '$prefix...'"
	[[ ! -e $T/bad.port ]] || fail "$1=$2: the server started listening"
}

@test "bad configuration values stop the program at load with exit 1 and one line" {
	bad_config PROXYSHIM_TRUSTED 10.0.0.0/33
	bad_config PROXYSHIM_TRUSTED 127.0.0.256
	bad_config PROXYSHIM_TRUSTED ::1/129
	bad_config PROXYSHIM_TRUSTED 127.0.0.10,,127.0.0.11
	bad_config PROXYSHIM_POLICY sometimes
	bad_config PROXYSHIM_UNTRUSTED drop
	bad_config PROXYSHIM_TIMEOUT_MS 0
	bad_config PROXYSHIM_TIMEOUT_MS 600001
	bad_config PROXYSHIM_TIMEOUT_MS 3s
	bad_config PROXYSHIM_PORTS 65536
	bad_config PROXYSHIM_PORTS 80-
	bad_config PROXYSHIM_LOCAL both
	bad_config PROXYSHIM_LOG_LEVEL loud
}

@test "the prefix-length message is the documented one" {
	bad_config PROXYSHIM_TRUSTED 10.0.0.0/33
	[[ ${lines[0]} == 'proxyshim: PROXYSHIM_TRUSTED: "10.0.0.0/33": prefix length must be 0..32' ]] ||
		fail "got: ${lines[0]}"
}
