# UDP test helpers shared by udp_recv.bats and udp_send.bats: tests/helpers/udpsrv as
# the server (one line per datagram: from= len= flags= [dst=] payload=), udpsend as the
# proxy or client, udpstorm as the load. Every address, including those inside headers,
# is a loopback address: a bug that answers the address a header claims stays here.

UDPSRV=$PS_BUILD/udpsrv
UDPSEND=$PS_BUILD/udpsend
UDPSTORM=$PS_BUILD/udpstorm

C11=127.0.0.11:10011    # clients that headers name
C12=127.0.0.12:10012
C13=127.0.0.13:10013

# helpers.bash's setup, plus the UDP helpers.
eval "helpers_$(declare -f setup)"
setup() {
	helpers_setup
	local f
	for f in udpsrv udpsend udpstorm; do
		[[ -x $PS_BUILD/$f ]] || fail "missing $PS_BUILD/$f (make all)"
	done
	SRV_ADDR=127.0.0.1
	UPORT=
}

# ---- the server ----

# free_udp ADDR: a free UDP port of ADDR, chosen by the kernel (an ephemeral one, so
# never 53 or 5300-5310).
free_udp() {
	local six=()
	[[ $1 == *:* ]] && six=(-6)
	"$UDPSRV" "${six[@]}" -l "$1" -F
}

# udp_start [-6] [--bare] [VAR=VALUE...] [-- UDPSRV-ARGS...]: udpsrv under the shim on
# $SRV_ADDR (127.0.0.1, ::1 with -6) port $UPORT (a free one unless the test set UPORT),
# with PROXYSHIM_UDP_PORTS=$UPORT unless --bare or the test gives its own; waits for its
# "ready". Sets SRV_PID. Output in $T/srv.out, stderr (the shim's log) in $T/srv.err.
udp_start() {
	local six=() vars=() bare=0
	while (($#)); do
		case $1 in
		-6) six=(-6) SRV_ADDR=::1 ;;
		--bare) bare=1 ;;
		--) shift && break ;;
		*) vars+=("$1") ;;
		esac
		shift
	done
	[[ -n $UPORT ]] || UPORT=$(free_udp "$SRV_ADDR") || fail "no free UDP port"
	((bare)) || vars=("PROXYSHIM_UDP_PORTS=$UPORT" "${vars[@]}")
	udp_run srv "${vars[@]}" -- "${six[@]}" -p "$UPORT" "$@"
	SRV_PID=$RUN_PID
}

# udp_run NAME [VAR=VALUE...] -- UDPSRV-ARGS...: udpsrv under the shim with exactly these
# variables (none: the shim is inert), output in $T/NAME.out, stderr in $T/NAME.err;
# waits for its "ready". Sets RUN_PID.
udp_run() {
	local name=$1 vars=()
	shift
	while [[ $1 != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	under_shim --exec "${vars[@]}" -- "$UDPSRV" -t 60 "$@" >"$T/$name.out" 2>"$T/$name.err" &
	RUN_PID=$!
	PIDS+=("$RUN_PID")
	wait_until 5 grep -qx ready "$T/$name.out" ||
		fail "udpsrv ($name) did not start:" "$(cat "$T/$name.err")"
}

# new_port: picks the next server's port now (for arguments that name it, such as hdst,
# written before udp_start runs).
new_port() { UPORT=$(free_udp "$SRV_ADDR"); }

# go: lets a server started with -G "$T/go" make its first receive call.
go() { : >"$T/go"; }

# srv_done [SECONDS]: the server (started with -n) exits 0 within SECONDS (default 10).
srv_done() {
	local st=0
	wait_exit "$SRV_PID" "${1:-10}" || st=$?
	((st == 0)) || fail "udpsrv exit status $st (124: still running)" \
		"output:" "$(cat "$T/srv.out")" "stderr:" "$(cat "$T/srv.err")"
}

# srv_hostport: the server's address as udpsrv and udpsend print it.
srv_hostport() {
	if [[ $SRV_ADDR == *:* ]]; then
		printf '[%s]:%s' "$SRV_ADDR" "$UPORT"
	else
		printf '%s:%s' "$SRV_ADDR" "$UPORT"
	fi
}

# hdst CLIENT: the -H argument of a header from CLIENT to the server.
hdst() { printf '%s,%s' "$1" "$(srv_hostport)"; }

# dline FROM PAYLOAD [FLAGS] [LEN] [EXTRA]: the line udpsrv prints for a datagram.
# PAYLOAD is in escaped form; LEN defaults to its byte count, FLAGS to "-"; EXTRA (e.g.
# " dst=127.0.0.1") comes before payload=.
dline() {
	local len=${4:-$(emit "$2" | wc -c)}
	printf 'from=%s len=%s flags=%s%s payload="%s"' "$1" "$len" "${3:--}" "${5:-}" "$2"
}

# expect_srv LINE...: after "ready", the server printed exactly these lines.
expect_srv() {
	local want got
	want=$(printf '%s\n' "$@")
	got=$(sed '0,/^ready$/d' "$T/srv.out")
	[[ $got == "$want" ]] || fail "udpsrv output differs." "expected:" "$want" "actual:" "$got"
}

# expect_dropped_log: the shim logged a dropped datagram.
expect_dropped_log() {
	expect_log "$T/srv.err" '[Dd]rop|[Rr]efus|[Rr]eject'
}

# ---- the proxy ----

# usend SRC [UDPSEND-OPTS...] -- PAYLOAD...: udpsend from SRC (ADDR or ADDR:PORT) to the
# server, one datagram per PAYLOAD (escaped form); must succeed.
usend() {
	local src=$1 opts=() st=0
	shift
	while [[ $1 != -- ]]; do
		opts+=("$1")
		shift
	done
	shift
	"$UDPSEND" -b "$src" "${opts[@]}" "$SRV_ADDR" "$UPORT" "$@" >>"$T/send.out" \
		2>>"$T/send.err" || st=$?
	((st == 0)) || fail "udpsend -b $src ${opts[*]}: status $st" "$(cat "$T/send.err")"
}

# usend_r N SRC [UDPSEND-OPTS...] -- PAYLOAD...: the same, then waits (5 s at most) for
# N replies on the sending socket. REPLIES: the reply lines, sorted.
usend_r() {
	local n=$1 src=$2 opts=() st=0
	shift 2
	while [[ $1 != -- ]]; do
		opts+=("$1")
		shift
	done
	shift
	"$UDPSEND" -b "$src" -r "$n" -t 5000 "${opts[@]}" "$SRV_ADDR" "$UPORT" "$@" \
		>"$T/replies.out" 2>>"$T/send.err" || st=$?
	REPLIES=$(LC_ALL=C sort "$T/replies.out")
	((st == 0)) || fail "udpsend -r $n: status $st, replies:" "$REPLIES" "$(cat "$T/send.err")"
}

# rline PAYLOAD: a reply line of udpsend (from the server), PAYLOAD in escaped form.
rline() {
	printf 'reply from=%s len=%s payload="%s"' "$(srv_hostport)" "$(emit "$1" | wc -c)" "$1"
}

# expect_replies LINE...: REPLIES holds exactly these lines (any order).
expect_replies() {
	local want
	want=$(printf '%s\n' "$@" | LC_ALL=C sort)
	[[ $REPLIES == "$want" ]] || fail "replies differ." "expected:" "$want" "actual:" "$REPLIES"
}

# udp4_hex CLIENT-IP CLIENT-PORT: a v2 PROXY UDP4 header to the server, in hex.
udp4_hex() {
	v2_hex 21 12 "$(addr_block TCP4 "$1" "$SRV_ADDR" "$2" "$UPORT")${3:-}"
}

