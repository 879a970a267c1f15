#!/usr/bin/env bats
# UDP with real DNS daemons on loopback (scripts/lib/dns.sh):
#   - dnsdist (useProxyProtocol=true: a v2 header on every datagram and TCP connection,
#     sent from 127.0.0.10) in front of dnsmasq started under the shim;
#   - tests/helpers/udpproxy.py, our own proxy: `every` like dnsdist, `first` like
#     Cloudflare Spectrum (header-only first datagram per flow, one proxy port per flow);
#   - unbound's native proxy-protocol-port, reached by dig (and by a Python client that
#     calls libc's sendto/send) under libproxyshim-client.so.
# Clients are dig from chosen loopback sources (-b ADDR#PORT). Assertions are on the
# answers and on the daemons' own query logs (dnsmasq: "ADDR/PORT query[A] NAME from
# ADDR"; unbound: "info: ADDR NAME. A IN"). Every address inside a header is a loopback
# one, so whatever a daemon answers stays on this machine. Each test starts its own
# daemons under $T; teardown stops only those.

load helpers
load daemons
load send
source "$BATS_TEST_DIRNAME/../../scripts/lib/dns.sh"

UDPPROXY=$BATS_TEST_DIRNAME/../helpers/udpproxy.py
DD_SRC=127.0.0.10    # dnsdist's and udpproxy's source towards the backend: trusted
C1=127.0.0.11        # clients
C2=127.0.0.12
EVIL=127.0.0.13      # an untrusted sender of headers
FORGED=127.0.0.66    # the source it claims
A1=${DS_DNS_RECORDS[alpha.test]}
A2=${DS_DNS_RECORDS[beta.test]}

setup_file() {
	need_client dnsmasq dnsdist unbound unbound-checkconf dig
	probe_dnsmasq
}

# probe_dnsmasq: exports PS_DNSMASQ_PRELOAD=ok if dnsmasq starts with this run's
# preload. With the ASan runtime preloaded (make sanitize), Debian 12's dnsmasq 2.90
# deadlocks at start in its own textdomain() call (glibc's _nl_state_lock), with or
# without the shim: the same glibc lock as curl's setlocale (send.bash, probe_curl).
probe_dnsmasq() {
	PS_DNSMASQ_PRELOAD=ok
	if [[ -n ${PS_ASAN_RUNTIME:-} ]]; then
		timeout 3 env LD_PRELOAD="$PS_ASAN_RUNTIME" dnsmasq --test --conf-file=/dev/null \
			>/dev/null 2>&1 || PS_DNSMASQ_PRELOAD=hangs
	fi
	export PS_DNSMASQ_PRELOAD
}

# ---- daemons ----

# dnsmasq_shim [VAR=VALUE...]: dnsmasq under the shim, trusting $DD_SRC, UDP and TCP
# selected on its port, info log in $T/proxyshim.log; VAR=VALUE words override.
# Sets DM_PORT, DMLOG.
dnsmasq_shim() {
	[[ ${PS_DNSMASQ_PRELOAD:-} == ok ]] ||
		skip "dnsmasq hangs at start with the ASan runtime preloaded (not the shim: libasan alone does it)"
	DM_PORT=$(ds_free_dns_port)
	ds_dnsmasq_start "$T" "$DM_PORT" "${SHIM_ENV[@]}" PROXYSHIM_TRUSTED="$DD_SRC" \
		PROXYSHIM_UDP_PORTS="$DM_PORT" PROXYSHIM_PORTS="$DM_PORT" \
		PROXYSHIM_LOG="$T/proxyshim.log" PROXYSHIM_LOG_LEVEL=info "$@" ||
		fail "dnsmasq did not start"
	track "$DS_PID"
	DMLOG=$T/dnsmasq/dnsmasq.log
}

# dnsmasq_plain: the same without the shim.
dnsmasq_plain() {
	DM_PORT=$(ds_free_dns_port)
	ds_dnsmasq_start "$T" "$DM_PORT" || fail "dnsmasq did not start"
	track "$DS_PID"
	DMLOG=$T/dnsmasq/dnsmasq.log
}

# start_dnsdist [auto|up]: dnsdist on DD_PORT, backend dnsmasq from $DD_SRC (health checks
# forced up by default).
start_dnsdist() {
	DD_PORT=$(ds_free_dns_port)
	ds_dnsdist_start "$T" "$DD_PORT" "$DM_PORT" "$DD_SRC" "${1:-up}" || fail "dnsdist did not start"
	track "$DS_PID"
}

# start_udpproxy NAME UPSTREAM-ADDR:PORT UDPPROXY-ARGS...: udpproxy.py listening on a
# kernel-chosen port of 127.0.0.1 (of ::1 for an [IPv6] upstream), log $T/NAME.log.
# Sets PX_PORT.
start_udpproxy() {
	local name=$1 up=$2 listen=127.0.0.1:0
	shift 2
	[[ $up == \[* ]] && listen='[::1]:0'
	ds_bg "$T" "$name" -- /usr/bin/python3 "$UDPPROXY" --listen "$listen" --upstream "$up" \
		--log "$T/$name.log" --port-file "$T/$name.port" --lifetime 60 "$@"
	track "$DS_PID"
	ds_wait 5 test -s "$T/$name.port" || fail "udpproxy did not start:" "$(cat "$T/$name.err")"
	PX_PORT=$(<"$T/$name.port")
}

# unbound_pp: unbound with a plain port UB_PORT and a proxy-protocol port UB_PP.
unbound_pp() {
	UB_PORT=$(ds_free_dns_port) UB_PP=$(ds_free_dns_port)
	while [[ $UB_PP == "$UB_PORT" ]]; do UB_PP=$(ds_free_dns_port); done
	ds_unbound_start "$T" "$UB_PORT" "$UB_PP" || fail "unbound did not start"
	track "$DS_PID"
	UBLOG=$T/unbound/unbound.log
}

# ---- queries ----

# q SERVER-PORT SOURCE NAME [DIG-OPTS...]: dig to 127.0.0.1 (or @SERVER with Q_SERVER).
# Sets OUT, STATUS (dig's; 9: no reply), RCODE, ANSWER. Never fails by itself.
q() {
	local port=$1 src=$2 name=$3
	shift 3
	STATUS=0
	OUT=$(ds_dig "${Q_SERVER:-127.0.0.1}" "$port" "$src" "$name" "$@" 2>&1) || STATUS=$?
	RCODE=$(ds_dig_status "$OUT")
	ANSWER=$(ds_dig_answer "$OUT")
	printf '%s\n' "### q $port $src $name $*: status $STATUS" "$OUT" >>"$T/clients.log"
}

# expect_answer ADDR: the last query was answered NOERROR with ADDR.
expect_answer() {
	[[ $STATUS == 0 && $RCODE == NOERROR && $ANSWER == "$1" ]] ||
		fail "expected the answer $1: status $STATUS, rcode '$RCODE', answer '$ANSWER'" "$OUT"
}

# expect_no_reply: the last query got no reply at all (dig status 9).
expect_no_reply() {
	[[ $STATUS == 9 && -z $RCODE ]] ||
		fail "expected no reply: status $STATUS, rcode '$RCODE', answer '$ANSWER'" "$OUT"
}

# cport: a free port for a client (dig -b ADDR#PORT), so that logs can be matched.
cport() { ds_free_dns_port; }

# expect_dm ADDR PORT NAME [COUNT]: within 2 s dnsmasq has logged that query, exactly
# COUNT (1) times.
dm_count() { grep -cF -- " $1/$2 query[A] $3 from $1" "$DMLOG"; }
expect_dm() {
	local a=$1 p=$2 name=$3 n=${4:-1}
	ds_wait 2 eval '(($(dm_count "$a" "$p" "$name") >= n))' ||
		fail "dnsmasq did not log $name from $a/$p ($n times):" "$(cat "$DMLOG")"
	[[ $(dm_count "$a" "$p" "$name") == "$n" ]] ||
		fail "dnsmasq logged $name from $a/$p $(dm_count "$a" "$p" "$name") times, expected $n:" \
			"$(cat "$DMLOG")"
}

# expect_dm_never ERE: no line of dnsmasq's log (after the first DM_MARK lines, see
# dm_mark) matches: an address it must never name, such as the proxy's.
DM_MARK=0
dm_mark() { DM_MARK=$(wc -l <"$DMLOG"); }
expect_dm_never() {
	! tail -n "+$((DM_MARK + 1))" "$DMLOG" | grep -E -- "$1" ||
		fail "dnsmasq's log matches /$1/:" "$(cat "$DMLOG")"
}

# ======== controls: the harness and the daemons without the shim ========

@test "control, no shim: dnsmasq answers and logs its clients; through dnsdist (proxy protocol) it answers nobody and logs only 127.0.0.10" {
	dnsmasq_plain
	local p1
	p1=$(cport)
	q "$DM_PORT" "$C1#$p1" alpha.test
	expect_answer "$A1"
	expect_dm "$C1" "$p1" alpha.test
	q "$DM_PORT" "$C2" beta.test +tcp
	expect_answer "$A2"
	q "$DM_PORT" "$C1" nope.test
	[[ $RCODE == REFUSED ]] || fail "a name outside the zone: rcode '$RCODE' (no upstream: REFUSED)" "$OUT"
	start_dnsdist
	dm_mark
	q "$DD_PORT" "$C1" alpha.test
	expect_no_reply
	# the header is read as a DNS message: id 0x0d0a, refused; dnsdist drops the reply
	ds_wait 2 grep -q " $DD_SRC/[0-9]* config error is REFUSED" "$DMLOG" ||
		fail "dnsmasq did not see dnsdist's datagram:" "$(cat "$DMLOG")"
	expect_dm_never " $C1/"
}

@test "control: unbound's proxy-protocol port takes udpproxy's headers (every): answers with the header's source, refuses 127.0.0.99" {
	unbound_pp
	start_udpproxy every "127.0.0.1:$UB_PP" --mode every --upstream-source "$DD_SRC"
	q "$PX_PORT" "$C2" beta.test
	expect_answer "$A2"
	expect_log "$UBLOG" "info: ${C2//./\\.} beta\.test\. A IN NOERROR "
	start_udpproxy forged "127.0.0.1:$UB_PP" --mode every --src-override 127.0.0.99:5353
	q "$PX_PORT" "$C1" alpha.test
	[[ $RCODE == REFUSED ]] || fail "127.0.0.99 (access-control refuse): rcode '$RCODE'" "$OUT"
	expect_log "$UBLOG" 'info: 127\.0\.0\.99 .* REFUSED '
}

@test "control, no shim: udpproxy first mode: the header-only datagram is garbage to dnsmasq, the query is answered but logged as the proxy" {
	dnsmasq_plain
	start_udpproxy first "127.0.0.1:$DM_PORT" --mode first --upstream-source "$DD_SRC"
	q "$PX_PORT" "$C1" alpha.test
	expect_answer "$A1"
	wait_line "$T/first.log" 'header=only'
	ds_wait 2 grep -q " $DD_SRC/[0-9]* query\[A\] alpha.test from $DD_SRC" "$DMLOG" ||
		fail "dnsmasq did not log the proxy:" "$(cat "$DMLOG")"
	expect_dm_never " $C1/"
}

# ======== dnsdist -> dnsmasq under the shim (mode every) ========

@test "dnsdist -> dnsmasq under the shim, UDP: 127.0.0.11 and 127.0.0.12 get their answers, dnsmasq logs each client's address and port, never dnsdist's" {
	dnsmasq_shim
	start_dnsdist
	local i p1 p2
	for i in 1 2 3; do
		p1=$(cport) p2=$(cport)
		q "$DD_PORT" "$C1#$p1" alpha.test
		expect_answer "$A1"
		q "$DD_PORT" "$C2#$p2" beta.test
		expect_answer "$A2"
		expect_dm "$C1" "$p1" alpha.test
		expect_dm "$C2" "$p2" beta.test
	done
	expect_dm_never "$DD_SRC"
}

@test "dnsdist -> dnsmasq under the shim, TCP (dnsdist sends a v2 header per backend connection): answers, dnsmasq logs each client" {
	dnsmasq_shim
	start_dnsdist
	local p1 p2
	p1=$(cport) p2=$(cport)
	q "$DD_PORT" "$C1#$p1" alpha.test +tcp
	expect_answer "$A1"
	q "$DD_PORT" "$C2#$p2" beta.test +tcp
	expect_answer "$A2"
	expect_dm "$C1" "$p1" alpha.test
	expect_dm "$C2" "$p2" beta.test
	expect_dm_never "$DD_SRC"
}

@test "dnsdist health checks (v2 LOCAL datagrams) through the shim: answered as from 127.0.0.10, the backend stays up and serves clients" {
	dnsmasq_shim
	start_dnsdist auto
	# one check a second; LOCAL keeps the real source
	ds_wait 5 eval '(($(grep -cF " query[A] health.test from $DD_SRC" "$DMLOG") >= 2))' ||
		fail "dnsmasq did not answer 2 health checks from $DD_SRC:" "$(cat "$DMLOG")"
	local p1
	p1=$(cport)
	q "$DD_PORT" "$C1#$p1" alpha.test
	expect_answer "$A1"
	expect_dm "$C1" "$p1" alpha.test
	! grep -F "as 'down'" "$T/dnsdist/dnsdist.err" || fail "dnsdist marked the backend down"
	# nothing but the checks is logged as dnsdist
	! grep -F " from $DD_SRC" "$DMLOG" | grep -vF 'health.test' ||
		fail "dnsmasq logged a query other than a health check as dnsdist"
}

# ======== untrusted senders ========

@test "untrusted 127.0.0.13 sends v2 headers claiming 127.0.0.66, UNTRUSTED=pass: the header stays payload (no answer), dnsmasq never names 127.0.0.66" {
	dnsmasq_shim
	start_udpproxy evil "127.0.0.1:$DM_PORT" --mode every --upstream-source "$EVIL" \
		--src-override "$FORGED:5353"
	q "$PX_PORT" "$C1" alpha.test
	# dnsmasq refuses the "message" (id 0x0d0a); dig ignores a reply with another id
	expect_no_reply
	ds_wait 2 grep -q " $EVIL/[0-9]* config error is REFUSED" "$DMLOG" ||
		fail "dnsmasq did not see the datagram as from $EVIL:" "$(cat "$DMLOG")"
	# a plain query from the same untrusted address is served as its own
	local p
	p=$(cport)
	q "$DM_PORT" "$EVIL#$p" alpha.test
	expect_answer "$A1"
	expect_dm "$EVIL" "$p" alpha.test
	expect_dm_never "$FORGED"
}

@test "untrusted 127.0.0.13 sends v2 headers, UNTRUSTED=reject: dropped (no reply, nothing logged by dnsmasq, logged by the shim); its plain queries still served" {
	dnsmasq_shim PROXYSHIM_UNTRUSTED=reject
	start_udpproxy evil "127.0.0.1:$DM_PORT" --mode every --upstream-source "$EVIL" \
		--src-override "$FORGED:5353"
	q "$PX_PORT" "$C1" alpha.test
	expect_no_reply
	wait_line "$T/evil.log" '^up '
	sleep 0.3
	expect_dm_never "$EVIL|$FORGED"
	expect_log "$T/proxyshim.log" "${EVIL//./\\.}:[0-9]+ dropped"
	# The contract: under reject only datagrams with a header are refused
	local p
	p=$(cport)
	q "$DM_PORT" "$EVIL#$p" alpha.test
	expect_answer "$A1"
	expect_dm "$EVIL" "$p" alpha.test
	expect_dm_never "$FORGED"
}

@test "untrusted: dnsdist's own datagrams (127.0.0.10) when only 127.0.0.1 is trusted: never honoured" {
	dnsmasq_shim PROXYSHIM_TRUSTED=127.0.0.1
	start_dnsdist
	q "$DD_PORT" "$C1" alpha.test
	expect_no_reply
	sleep 0.3
	expect_dm_never " $C1/"
}

# ======== first mode (Spectrum-like) ========

@test "first mode: udpproxy (header-only first datagram, one proxy port per flow) -> dnsmasq under the shim: two clients answered and attributed, later headerless datagrams mapped" {
	dnsmasq_shim PROXYSHIM_UDP_MODE=first
	start_udpproxy first "127.0.0.1:$DM_PORT" --mode first --upstream-source "$DD_SRC"
	local p1 p2
	p1=$(cport) p2=$(cport)
	q "$PX_PORT" "$C1#$p1" alpha.test
	expect_answer "$A1"
	q "$PX_PORT" "$C2#$p2" beta.test
	expect_answer "$A2"
	# the same flows again: headerless datagrams from the same proxy ports
	q "$PX_PORT" "$C1#$p1" beta.test
	expect_answer "$A2"
	q "$PX_PORT" "$C2#$p2" alpha.test
	expect_answer "$A1"
	expect_dm "$C1" "$p1" alpha.test
	expect_dm "$C1" "$p1" beta.test
	expect_dm "$C2" "$p2" beta.test
	expect_dm "$C2" "$p2" alpha.test
	expect_dm_never "$DD_SRC"
	# udpproxy: one header per flow, then 2 headerless datagrams each
	expect_eq "$(grep -c 'header=only' "$T/first.log")" 2 "header-only datagrams"
	expect_eq "$(grep -c 'header=no' "$T/first.log")" 4 "headerless datagrams"
}

@test "first mode, header prefixed to the first query (first-inline): answered and attributed" {
	dnsmasq_shim PROXYSHIM_UDP_MODE=first
	start_udpproxy inline "127.0.0.1:$DM_PORT" --mode first-inline --upstream-source "$DD_SRC"
	local p1
	p1=$(cport)
	q "$PX_PORT" "$C1#$p1" alpha.test
	expect_answer "$A1"
	q "$PX_PORT" "$C1#$p1" beta.test
	expect_answer "$A2"
	expect_dm "$C1" "$p1" alpha.test
	expect_dm "$C1" "$p1" beta.test
	expect_dm_never "$DD_SRC"
}

@test "first mode: after PROXYSHIM_UDP_IDLE_MS without traffic the flow is forgotten; a headerless datagram from that proxy port is then refused" {
	dnsmasq_shim PROXYSHIM_UDP_MODE=first PROXYSHIM_UDP_IDLE_MS=1000
	start_udpproxy first "127.0.0.1:$DM_PORT" --mode first --upstream-source "$DD_SRC"
	local p1 p3 via
	p1=$(cport) p3=$(cport)
	q "$PX_PORT" "$C1#$p1" alpha.test
	expect_answer "$A1"
	q "$PX_PORT" "$C1#$p1" beta.test     # well within the idle time
	expect_answer "$A2"
	sleep 2                              # > PROXYSHIM_UDP_IDLE_MS (udpproxy's own: 60 s)
	q "$PX_PORT" "$C1#$p1" alpha.test
	expect_no_reply
	# it went out headerless from the same proxy port as the flow's header
	via=$(sed -n 's/.* via \([0-9.:]*\) header=only.*/\1/p' "$T/first.log")
	expect_eq "$(grep -c "via $via header=no" "$T/first.log")" 3 "headerless datagrams from $via"
	expect_eq "$(grep -c 'header=only' "$T/first.log")" 1 "header-only datagrams"
	expect_log "$T/proxyshim.log" "${via//./\\.} dropped"
	expect_dm "$C1" "$p1" alpha.test 1
	expect_dm_never "$DD_SRC"
	# a new flow (new client port: a new proxy port and header) is served
	q "$PX_PORT" "$C1#$p3" alpha.test
	expect_answer "$A1"
	expect_dm "$C1" "$p3" alpha.test
}

# ======== IPv6 ========

@test "every mode over IPv6 (0x22): udpproxy on ::1 -> dnsmasq on ::1 under the shim, the header's [::1]:PORT is logged and answered through the proxy" {
	DS_DNSMASQ_LISTEN=127.0.0.1,::1 dnsmasq_shim PROXYSHIM_TRUSTED=::1
	local hp
	hp=$(cport)
	start_udpproxy v6 "[::1]:$DM_PORT" --mode every --src-override "[::1]:$hp"
	Q_SERVER=::1 q "$PX_PORT" ::1 alpha.test
	expect_answer "$A1"
	expect_dm ::1 "$hp" alpha.test
}

# ======== unbound's proxy-protocol-port, clients under the client shim ========

# to_unbound NAME SEND-SOURCE -- COMMAND ARGS...: COMMAND under the client shim (v2,
# SEND_UDP=every, to unbound's proxy-protocol port). Sets OUT, STATUS.
to_unbound() {
	local name=$1 ssrc=$2
	shift 3
	run_client "$name" PROXYSHIM_SEND_TO="127.0.0.1:$UB_PP" PROXYSHIM_SEND_VERSION=2 \
		PROXYSHIM_SEND_UDP=every PROXYSHIM_SEND_SOURCE="$ssrc" \
		PROXYSHIM_LOG="$T/client-shim.log" PROXYSHIM_LOG_LEVEL=info -- "$@"
}

# cdig NAME SEND-SOURCE DIG-SOURCE QNAME [DIG-OPTS...]: dig under the client shim to
# unbound's proxy-protocol port. Sets OUT, STATUS, RCODE, ANSWER.
# dig 9.18 sends through libuv 1.44 (Debian 12), which calls sendmmsg (one message, on
# a connected socket) through syscall(SYS_sendmmsg), not through libc's sendmmsg.
cdig() {
	local name=$1 ssrc=$2 bsrc=$3 qname=$4
	shift 4
	to_unbound "$name" "$ssrc" -- \
		dig @127.0.0.1 -p "$UB_PP" -b "$bsrc" +time=2 +tries=1 +nocookie "$@" "$qname" A
	RCODE=$(ds_dig_status "$OUT")
	ANSWER=$(ds_dig_answer "$OUT")
}

# pyq NAME SEND-SOURCE SOURCE QNAME [connect]: the same query from a client that calls
# libc's sendto (or connect and send): Python, one datagram, 2 s. Prints "rcode=N
# answer=ADDR" (exit 0) or "no reply" (exit 9). Sets OUT, STATUS, RCODE, ANSWER.
PYQ='
import socket, struct, sys
port, src, name, how = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
q = struct.pack("!6H", 0x5a5a, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.settimeout(2)
if how == "connect":
    s.connect(("127.0.0.1", port))
    s.send(q)
else:
    s.sendto(q, ("127.0.0.1", port))
try:
    r = s.recv(512)
except socket.timeout:
    print("no reply")
    sys.exit(9)
ancount = struct.unpack("!H", r[6:8])[0]
print("rcode=%d answer=%s" % (r[3] & 15, socket.inet_ntoa(r[-4:]) if ancount else ""))
'
pyq() {
	to_unbound "$1" "$2" -- /usr/bin/python3 -c "$PYQ" "$UB_PP" "$3" "$4" "${5:-sendto}"
	RCODE=$(sed -n 's/^rcode=\([0-9]*\) .*/\1/p' <<<"$OUT")
	ANSWER=$(sed -n 's/.* answer=//p' <<<"$OUT")
}

@test "unbound proxy-protocol-port: dig under the client shim (SEND_UDP=every, source 127.0.0.21:5353) is answered and logged as 127.0.0.21; 127.0.0.99 is refused by access-control" {
	unbound_pp
	cdig dig1 127.0.0.21:5353 "$C1" alpha.test
	expect_answer "$A1"
	expect_log "$UBLOG" 'info: 127\.0\.0\.21 alpha\.test\. A IN NOERROR '
	cdig dig2 127.0.0.99:5353 "$C1" beta.test
	[[ $RCODE == REFUSED ]] || fail "127.0.0.99: rcode '$RCODE', status $STATUS" "$OUT"
	expect_log "$UBLOG" 'info: 127\.0\.0\.99 .* REFUSED '
	! grep -F "info: $C1 " "$UBLOG" || fail "unbound logged dig's real address"
}

@test "unbound proxy-protocol-port: a libc sendto/send client (Python) under the client shim, source 127.0.0.21:5353 answered and logged, 127.0.0.99 refused, SEND_SOURCE=local logged as itself" {
	unbound_pp
	local how
	for how in sendto connect; do
		: >"$UBLOG"
		pyq py1.$how 127.0.0.21:5353 "$C1" alpha.test $how
		[[ $STATUS == 0 && $RCODE == 0 && $ANSWER == "$A1" ]] ||
			fail "$how, source 127.0.0.21: status $STATUS, '$OUT'"
		expect_log "$UBLOG" 'info: 127\.0\.0\.21 alpha\.test\. A IN NOERROR '
		pyq py2.$how 127.0.0.99:5353 "$C1" alpha.test $how
		[[ $STATUS == 0 && $RCODE == 5 ]] || fail "$how, source 127.0.0.99: status $STATUS, '$OUT' (expected rcode 5, REFUSED)"
		expect_log "$UBLOG" 'info: 127\.0\.0\.99 .* REFUSED '
		pyq py3.$how local 127.0.0.22 beta.test $how
		[[ $STATUS == 0 && $RCODE == 0 && $ANSWER == "$A2" ]] ||
			fail "$how, source local: status $STATUS, '$OUT'"
		expect_log "$UBLOG" 'info: 127\.0\.0\.22 beta\.test\. A IN NOERROR '
		! grep -F "info: $C1 " "$UBLOG" || fail "unbound logged the client's real address"
	done
}

@test "unbound proxy-protocol-port: SEND_SOURCE=local names dig's own address (127.0.0.22)" {
	unbound_pp
	cdig dig1 local 127.0.0.22 alpha.test
	expect_answer "$A1"
	expect_log "$UBLOG" 'info: 127\.0\.0\.22 alpha\.test\. A IN NOERROR '
}

@test "unbound proxy-protocol-port over TCP: dig +tcp under the client shim (v2) is answered and logged as 127.0.0.21" {
	unbound_pp
	cdig dig1 127.0.0.21:5353 "$C1" alpha.test +tcp
	expect_answer "$A1"
	expect_log "$UBLOG" 'info: 127\.0\.0\.21 alpha\.test\. A IN NOERROR '
}

@test "control: dig without the client shim to unbound's proxy-protocol port gets no answer" {
	unbound_pp
	q "$UB_PP" "$C1" alpha.test
	expect_no_reply
	expect_log "$UBLOG" 'error: proxy_protocol: could not match PROXYv2 header'
	q "$UB_PORT" "$C1" alpha.test
	expect_answer "$A1"
}
