# Shared setup for the receiving-side integration tests (bats).
#
# Each test gets a temp dir $T (removed in teardown). Programs under the shim run through
# under_shim with LD_PRELOAD="$PS_PRELOAD" and only the PROXYSHIM_* variables the test
# gives; everything started in the background is recorded in PIDS and only those PIDs
# are stopped in teardown. Every wait is bounded.
#
# Byte strings (headers, application data) are written in the escaped form testserver
# prints for data= (printable ASCII as is, \r \n \\ \" and \xNN otherwise): the same
# string is sent with `emit` and expected in the server's line with `conn_line`.

PS_BUILD=${PS_BUILD:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/build}
if [[ -n ${PS_ASAN_RUNTIME:-} ]]; then
	PS_PRELOAD="$PS_ASAN_RUNTIME $PS_BUILD/libproxyshim.so"
else
	PS_PRELOAD="$PS_BUILD/libproxyshim.so"
fi
TESTSERVER=$PS_BUILD/testserver
RAWSEND=$PS_BUILD/rawsend
HAPROXY=/usr/sbin/haproxy

PROXY=127.0.0.10        # the trusted proxy (PROXYSHIM_TRUSTED in most tests)
UNTRUSTED=127.0.0.20    # a client that is not in the trusted list
REQ='GET / HTTP/1.0\r\n'

setup() {
	local f
	for f in libproxyshim.so testserver rawsend; do
		[[ -f $PS_BUILD/$f ]] || fail "missing $PS_BUILD/$f (make all)"
	done
	T=$(mktemp -d "${BATS_RUN_TMPDIR:-/tmp}/proxyshim-it.XXXXXX")
	PIDS=()
	NCLIENT=0
	CLIENT_PIDS=()
	TARGET_HOST=127.0.0.1
	TARGET_PORT=
}

teardown() {
	[[ -n ${T:-} ]] || return 0
	stop_all
	[[ ${BATS_TEST_COMPLETED:-} == 1 ]] || dump_files
	rm -rf "$T"
}

fail() {
	printf '%s\n' "$@" >&2
	return 1
}

# Shows what the programs of a failed test wrote.
dump_files() {
	local f
	for f in "$T"/*.out "$T"/*.err "$T"/*.log "$T"/reply.*; do
		[[ -s $f ]] || continue
		printf '### %s\n' "${f##*/}" >&2
		head -c 20000 "$f" | cat -v >&2
		printf '\n' >&2
	done
}

# The process and environment helpers of scripts/lib/daemons.sh (ds_wait, ds_clean_env,
# ds_bg, ...), under the names the tests use.
# shellcheck source=../../scripts/lib/daemons.sh
source "$BATS_TEST_DIRNAME/../../scripts/lib/daemons.sh"

# wait_until SECONDS COMMAND...: polls COMMAND every 50 ms; fails after SECONDS.
wait_until() { ds_wait "$@"; }
alive() { ds_alive "$1"; }
not_alive() { ds_dead "$1"; }

# wait_exit PID SECONDS: waits for a background PID to end; returns its exit status,
# 124 if it is still running after SECONDS.
wait_exit() {
	wait_until "$2" not_alive "$1" || return 124
	local st=0
	wait "$1" || st=$?
	return "$st"
}

# stop_all: stops every PID in PIDS (2 s of grace each, then SIGKILL).
stop_all() {
	ds_stop_within 2 "${PIDS[@]}"
	PIDS=()
}

# preload_var: how the shim reaches a program (tests/cross gives it to an emulated
# program only).
preload_var() { printf 'LD_PRELOAD=%s\n' "$PS_PRELOAD"; }

# shim_argv [VAR=VALUE...] -- COMMAND...: sets ARGV to env running COMMAND preloaded
# with the shim (LD_PRELOAD="$PS_PRELOAD"), the given variables and none of the caller's
# PROXYSHIM_*. Started as "${ARGV[@]}" & (a simple command), $! is the program itself.
shim_argv() {
	local vars=()
	ds_split "$@"
	vars=("${DS_HEAD[@]}")
	set -- "${DS_TAIL[@]}"
	ds_clean_env
	ARGV=(env "${DS_ENV[@]}" "$(preload_var)" "${vars[@]}" "$@")
}

# under_shim [--exec] [VAR=VALUE...] -- COMMAND ARGS...: runs shim_argv's command. With
# --exec (for `under_shim --exec ... &`) the background subshell becomes COMMAND, so $!
# is COMMAND's own PID and stopping it stops the program, not just a subshell.
under_shim() {
	local run=() ARGV
	[[ $1 == --exec ]] && run=(exec) && shift
	shim_argv "$@"
	"${run[@]}" "${ARGV[@]}"
}

# run_server PROGRAM SECONDS [VAR=VALUE...] [-- ARGS...]: testserver or hsrv (-P port
# file, -T hard timeout SECONDS) in the background with exactly these variables and none
# of the caller's LD_PRELOAD or PROXYSHIM_* (ds_bg_port). Its own PID in SERVER_PID (and
# PIDS); SERVER_PORT, TARGET_PORT; output in $T/server.out, stderr in $T/server.err.
run_server() {
	local prog=$1 secs=$2 vars=() st=0
	shift 2
	ds_split "$@"
	vars=("${DS_HEAD[@]}")
	set -- "${DS_TAIL[@]}"
	ds_bg_port "$T" server 5 "${vars[@]}" -- "$prog" -T "$secs" "$@" || st=$?
	SERVER_PID=$DS_PID
	PIDS+=("$SERVER_PID")
	((st == 0)) || fail "${prog##*/} did not start: $(cat "$T/server.err")"
	SERVER_PORT=$DS_PORT
	TARGET_PORT=$SERVER_PORT
}

# start_server [VAR=VALUE...] [-- TESTSERVER-ARGS...]: testserver under the shim.
start_server() { run_server "$TESTSERVER" 30 LD_PRELOAD="$PS_PRELOAD" "$@"; }

# server_done [SECONDS]: waits (default 10 s) for the server to exit after its -n
# connections; its status must be 0.
server_done() {
	local st=0
	wait_exit "$SERVER_PID" "${1:-10}" || st=$?
	((st == 0)) || fail "testserver exit status $st (124: still running)" \
		"output:" "$(cat "$T/server.out")" "stderr:" "$(cat "$T/server.err")"
}

# wait_for_lines FILE N [SECONDS]: waits (default 5 s) until FILE has at least N lines.
has_lines() { [[ -f $1 ]] && (($(wc -l <"$1") >= $2)); }
wait_for_lines() {
	wait_until "${3:-5}" has_lines "$1" "$2" ||
		fail "${1##*/}: fewer than $2 lines within ${3:-5} s:" "$(cat "$1" 2>/dev/null)"
}

# A free TCP port on 127.0.0.1, chosen by the kernel.
free_port() { "$TESTSERVER" -F; }

# Is something listening on 127.0.0.1:PORT (from /proc/net/tcp, no connection made)?
is_listening() {
	grep -q " 0100007F:$(printf %04X "$1") 00000000:0000 0A " /proc/net/tcp
}

# edge [VAR=VALUE... --] SCENARIO [ARGS...]: build/fdedge, which is both a server under
# the shim and the trusted proxy ($PROXY), with PROXYSHIM_TRUSTED=$PROXY, a header timeout
# of EDGE_TIMEOUT_MS (default 1000) and the given variables. Its output in OUT (and on
# stdout); fails unless it exits 0 (1: it saw the defect, 2: its set-up failed).
edge() {
	local vars=() st=0
	if [[ " $* " == *" -- "* ]]; then
		while [[ $1 != -- ]]; do
			vars+=("$1")
			shift
		done
		shift
	fi
	OUT=$(under_shim PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS="${EDGE_TIMEOUT_MS:-1000}" \
		"${vars[@]}" -- timeout 30 "$PS_BUILD/fdedge" "$@" 2>&1) || st=$?
	printf '%s\n' "$OUT"
	((st == 0)) || fail "fdedge $* exit status $st:" "$OUT"
}

# ---- clients ----

# client SOURCE PAYLOAD [RAWSEND-OPTS...]: connects from SOURCE to
# $TARGET_HOST:$TARGET_PORT, sends PAYLOAD (escaped form), reads the reply. Sets REPLY
# (the reply), CLIENT_STATUS (rawsend's exit status), CLIENT_LOCAL (its own address),
# CLIENT_FIRST_MS (ms from connect to the first reply byte), CLIENT_END (eof/reset).
# Never fails by itself: the test asserts on those.
client() {
	local src=$1 n=$((++NCLIENT))
	emit "$2" >"$T/payload.$n"
	shift 2
	CLIENT_STATUS=0
	"$RAWSEND" -s "$src" -r -v "$@" "$TARGET_HOST" "$TARGET_PORT" <"$T/payload.$n" \
		>"$T/reply.$n" 2>"$T/client.$n.err" || CLIENT_STATUS=$?
	REPLY=$(<"$T/reply.$n")
	CLIENT_LOCAL=$(sed -n 's/^rawsend: local=//p' "$T/client.$n.err")
	CLIENT_FIRST_MS=$(sed -n 's/^rawsend: first=//p' "$T/client.$n.err")
	CLIENT_END=$(sed -n 's/^rawsend: end=\([a-z]*\).*/\1/p' "$T/client.$n.err")
}

# client_bg NAME SOURCE PAYLOAD [RAWSEND-OPTS...]: the same in the background; the
# reply goes to $T/reply.NAME; the PID is recorded in PIDS and CLIENT_PIDS.
client_bg() {
	local name=$1 src=$2
	emit "$3" >"$T/payload.$name"
	shift 3
	"$RAWSEND" -s "$src" -r -v "$@" "$TARGET_HOST" "$TARGET_PORT" <"$T/payload.$name" \
		>"$T/reply.$name" 2>"$T/client.$name.err" &
	PIDS+=($!)
	CLIENT_PIDS+=($!)
}

# wait_clients SECONDS: every CLIENT_PIDS entry must end with status 0 within SECONDS.
wait_clients() {
	local pid st
	for pid in "${CLIENT_PIDS[@]}"; do
		st=0
		wait_exit "$pid" "$1" || st=$?
		((st == 0)) || fail "client $pid: exit status $st"
	done
	CLIENT_PIDS=()
}

# ---- assertions ----

# conn_line ACCEPT DATA [LOCAL] [PEER]: the line testserver prints. DATA is the escaped
# byte string, or EOF / TIMEOUT / RESET; LOCAL defaults to 127.0.0.1:$SERVER_PORT, PEER
# to ACCEPT.
conn_line() {
	local data=$2
	[[ $data =~ ^(EOF|TIMEOUT|RESET)$ ]] || data="\"$data\""
	printf 'conn accept=%s peer=%s local=%s data=%s' "$1" "${4:-$1}" \
		"${3:-127.0.0.1:$SERVER_PORT}" "$data"
}

# expect_output LINE...: the server printed exactly these lines, in this order.
expect_output() {
	local want got
	want=$(printf '%s\n' "$@")
	got=$(<"$T/server.out")
	[[ $got == "$want" ]] || fail "server output differs." "expected:" "$want" "actual:" "$got"
}

# expect_output_unordered LINE...: exactly these lines, in any order.
expect_output_unordered() {
	local want got
	want=$(printf '%s\n' "$@" | LC_ALL=C sort)
	got=$(LC_ALL=C sort "$T/server.out")
	[[ $got == "$want" ]] || fail "server output differs (sorted)." "expected:" "$want" \
		"actual:" "$got" "diff:" "$(diff <(echo "$want") <(echo "$got"))"
}

# expect_reply TEXT: the last client was served and got exactly TEXT.
expect_reply() {
	[[ $CLIENT_STATUS == 0 && $REPLY == "$1" ]] ||
		fail "client status $CLIENT_STATUS, reply '$REPLY', expected '$1'"
}

# expect_closed: the last client's connection was closed without a reply (not left
# open until rawsend's timeout; a send cut short by a reset counts as closed).
expect_closed() {
	[[ -z $REPLY ]] || fail "connection was served: reply '$REPLY'"
	[[ $CLIENT_STATUS == 0 || $CLIENT_STATUS == 3 ]] ||
		fail "connection not closed: rawsend status $CLIENT_STATUS" "$(cat "$T/client.$NCLIENT.err")"
}

# expect_log FILE ERE: some line of FILE matches the extended regex.
expect_log() {
	grep -Eq -- "$2" "$1" || fail "no line matching /$2/ in $1:" "$(cat "$1" 2>/dev/null)"
}

# expect_next_served: a good proxied connection from $PROXY is served, and the server
# (started with -n 1) printed that one line and nothing else.
expect_next_served() {
	client "$PROXY" "$(v1 TCP4 127.0.0.99 127.0.0.2 10099 8443)$REQ"
	expect_reply "OK 127.0.0.99:10099"
	server_done
	expect_output "$(conn_line 127.0.0.99:10099 "$REQ")"
}

# expect_refused PAYLOAD [RAWSEND-OPTS...]: sent from $PROXY, PAYLOAD's connection is
# closed without reaching the application, and the next connection is served.
expect_refused() {
	client "$PROXY" "$@"
	expect_closed
	expect_next_served
}

# ---- HAProxy ----

# start_haproxy SERVER-OPTIONS: Debian's haproxy (never preloaded) on 127.0.0.1, mode
# tcp, forwarding to 127.0.0.1:$SERVER_PORT with SERVER-OPTIONS (send-proxy...). Sets
# HAPROXY_PID, HAPROXY_PORT, and TARGET_PORT so that clients go through it.
start_haproxy() {
	HAPROXY_PORT=$(free_port)
	cat >"$T/haproxy.cfg" <<-EOF
		global
		    nbthread 1
		    maxconn 200
		defaults
		    mode tcp
		    timeout connect 2s
		    timeout client 5s
		    timeout server 5s
		frontend fe
		    bind 127.0.0.1:$HAPROXY_PORT
		    default_backend be
		backend be
		    server s 127.0.0.1:$SERVER_PORT $1
	EOF
	ds_bg "$T" haproxy -- "$HAPROXY" -db -f "$T/haproxy.cfg"
	HAPROXY_PID=$DS_PID
	PIDS+=("$HAPROXY_PID")
	wait_until 5 is_listening "$HAPROXY_PORT" ||
		fail "haproxy did not start:" "$(cat "$T/haproxy.err")"
	TARGET_PORT=$HAPROXY_PORT
}

# ---- byte strings and PROXY headers ----

# emit ESCAPED: writes the bytes.
emit() { printf -- "${1//%/%%}"; }

# esc HEX: the escaped form of the bytes written as hex (as testserver prints them).
esc() {
	awk 'BEGIN {
		for (i = 0; i < 256; i++) {
			h = sprintf("%02x", i)
			e[h] = (i >= 32 && i < 127) ? sprintf("%c", i) : "\\x" h
		}
		e["0d"] = "\\r"; e["0a"] = "\\n"; e["5c"] = "\\\\"; e["22"] = "\\\""
	}
	{ for (i = 1; i < length($0); i += 2) printf "%s", e[tolower(substr($0, i, 2))] }' <<<"$1"
}

ip4_hex() {
	local IFS=.
	set -- $1
	printf '%02x%02x%02x%02x' "$1" "$2" "$3" "$4"
}

# ip6_hex ADDR: 32 hex digits; takes "::" and a dotted IPv4 tail.
ip6_hex() {
	local a=$1 head tail g out="" groups=() h t
	if [[ $a == *.* ]]; then
		local IFS=.
		set -- ${a##*:}
		a="${a%:*}:$(printf '%x:%x' $(($1 * 256 + $2)) $(($3 * 256 + $4)))"
		IFS=$' \t\n'
	fi
	if [[ $a == *::* ]]; then
		head=${a%%::*} tail=${a#*::}
		IFS=: read -ra h <<<"$head"
		IFS=: read -ra t <<<"$tail"
		groups=("${h[@]}")
		for ((g = ${#h[@]} + ${#t[@]}; g < 8; g++)); do groups+=(0); done
		groups+=("${t[@]}")
	else
		IFS=: read -ra groups <<<"$a"
	fi
	for g in "${groups[@]}"; do out+=$(printf '%04x' "0x$g"); done
	printf '%s' "$out"
}

port_hex() { printf '%04x' "$1"; }

# v1 TCP4|TCP6 SRC DST SPORT DPORT: a v1 line (escaped form).
v1() { printf 'PROXY %s %s %s %s %s\\r\\n' "$@"; }

# v2_hex VERCMD FAM BODY-HEX: signature, byte 12, byte 13, the body's length, body.
V2_SIG=0d0a0d0a000d0a515549540a
v2_hex() {
	printf '%s%s%s%04x%s' "$V2_SIG" "$1" "$2" $((${#3} / 2)) "$3"
}

# addr_block TCP4|TCP6 SRC DST SPORT DPORT: the v2 address block in hex.
addr_block() {
	local f=ip4_hex
	[[ $1 == TCP6 ]] && f=ip6_hex
	printf '%s%s%s%s' "$($f "$2")" "$($f "$3")" "$(port_hex "$4")" "$(port_hex "$5")"
}

# v2_proxy_hex TCP4|TCP6 SRC DST SPORT DPORT [TLV-HEX]: a v2 PROXY header in hex.
v2_proxy_hex() {
	local fam=11
	[[ $1 == TCP6 ]] && fam=21
	v2_hex 21 "$fam" "$(addr_block "$@")${6:-}"
}

# v2 TCP4|TCP6 SRC DST SPORT DPORT [TLV-HEX]: the same in escaped form.
v2() { esc "$(v2_proxy_hex "$@")"; }

# tlv TYPE VALUE-HEX / tlv_str TYPE TEXT: one TLV in hex.
tlv() { printf '%s%04x%s' "$1" $((${#2} / 2)) "$2"; }
tlv_str() { tlv "$1" "$(printf '%s' "$2" | od -An -tx1 -v | tr -d ' \n')"; }

# crc32c HEX: CRC-32C (Castagnoli) of the bytes, 8 hex digits.
crc32c() {
	local hex=$1 crc=$((0xFFFFFFFF)) i k
	for ((i = 0; i < ${#hex}; i += 2)); do
		((crc ^= 16#${hex:i:2}))
		for ((k = 0; k < 8; k++)); do
			((crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))))
		done
	done
	printf '%08x' $((crc ^ 0xFFFFFFFF))
}

# with_crc HEX [good|bad]: HEX is a v2 header ending with a CRC32C TLV whose value is
# 00000000; fills in the right checksum, or the right one with its low bit flipped.
with_crc() {
	local crc
	crc=$(crc32c "$1")
	[[ ${2:-good} == bad ]] && crc=$(printf '%08x' $((16#$crc ^ 1)))
	printf '%s' "${1%00000000}$crc"
}

# v2_crc TCP4|TCP6 SRC DST SPORT DPORT [good|bad]: a v2 PROXY header with a CRC32C TLV
# (escaped form).
v2_crc() {
	esc "$(with_crc "$(v2_proxy_hex "${@:1:5}" "$(tlv 03 00000000)")" "${6:-good}")"
}
