# Helpers for the hostile-input tests (hostile_*.bats). Loaded after helpers.bash, whose
# setup/teardown, PIDS, start_server, client, emit, v1/v2 etc. they build on.
#
# build/hammer drives many connections at once (whole, split in two writes at every
# byte, trickled, half-closed, reset) and reports how each ended; build/hsrv is a server
# that does what daemons do around the shim (EMFILE back-off, signals, fork, vfork+exec,
# very high fds). Both print their options with -h.

HAMMER=$PS_BUILD/hammer
HSRV=$PS_BUILD/hsrv

# The good connection that must be served after every bad one.
GOOD_HDR=$(v1 TCP4 127.0.0.99 127.0.0.2 10099 8443)
GOOD_PEER=127.0.0.99:10099

# setup: helpers.bash's, then a check for this file's programs.
eval "helpers_setup() $(declare -f setup | tail -n +2)"
setup() {
	helpers_setup
	local f
	for f in hammer hsrv; do
		[[ -x $PS_BUILD/$f ]] || fail "missing $PS_BUILD/$f (make all)"
	done
}

# forget_pids PID...: these PIDs (ended and reaped) leave PIDS, so that teardown never
# signals a number the system may have reused.
forget_pids() {
	local keep=() pid gone
	for pid in "${PIDS[@]}"; do
		for gone; do
			[[ $pid == "$gone" ]] && continue 2
		done
		keep+=("$pid")
	done
	PIDS=("${keep[@]}")
}

# stop_server: stops the current server (SERVER_PID), forgets its PID and port file.
stop_server() {
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	wait_until 3 not_alive "$SERVER_PID" || kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	forget_pids "$SERVER_PID"
	rm -f "$T/server.port"
}

# start_hsrv [VAR=VALUE...] [-- HSRV-ARGS...]: build/hsrv under the shim, as
# start_server runs testserver.
start_hsrv() { run_server "$HSRV" 60 LD_PRELOAD="$PS_PRELOAD" "$@"; }

# hit NAME SOURCE PAYLOAD [HAMMER-OPTS...]: build/hammer from SOURCE to
# $TARGET_HOST:$TARGET_PORT with PAYLOAD (escaped form), in the foreground, per-
# connection lines (-v) and the summary in $T/NAME.hammer.
hit() {
	local name=$1 src=$2
	emit "$3" >"$T/payload.$name"
	shift 3
	"$HAMMER" -s "$src" -v "$@" "$TARGET_HOST" "$TARGET_PORT" <"$T/payload.$name" \
		>"$T/$name.hammer" 2>&1 || fail "hammer $name failed:" "$(cat "$T/$name.hammer")"
}

# hit_bg NAME SOURCE PAYLOAD [HAMMER-OPTS...]: the same in the background (PID in PIDS
# and CLIENT_PIDS; wait_clients waits for it).
hit_bg() {
	local name=$1 src=$2
	emit "$3" >"$T/payload.$name"
	shift 3
	"$HAMMER" -s "$src" -v "$@" "$TARGET_HOST" "$TARGET_PORT" <"$T/payload.$name" \
		>"$T/$name.hammer" 2>&1 &
	PIDS+=($!)
	CLIENT_PIDS+=($!)
}

# tally NAME KEY: a number from the summary line of $T/NAME.hammer (served, closed...).
tally() {
	sed -n "s/^summary.* $2=\([0-9]*\).*/\1/p" "$T/$1.hammer"
}

# expect_refused_all NAME N: all N connections of hammer run NAME were closed by the
# server (EOF or reset) before their -t bound: none served, none left hanging.
expect_refused_all() {
	local s c r t f
	s=$(tally "$1" served) c=$(tally "$1" closed) r=$(tally "$1" reset)
	t=$(tally "$1" timeout) f=$(tally "$1" connfail)
	[[ $s == 0 && $t == 0 && $f == 0 && $((c + r)) == "$2" ]] ||
		fail "$1: expected $2 connections closed by the server, got served=$s" \
			"closed=$c reset=$r timeout=$t (still open at -t) connfail=$f" \
			"$(grep -v 'result=\(closed\|reset\)' "$T/$1.hammer" | head -20)"
}

# expect_served_all NAME N PEER: all N connections were served as PEER.
expect_served_all() {
	local s bad
	s=$(tally "$1" served)
	bad=$(grep '^conn ' "$T/$1.hammer" | grep -vc "result=served .*reply=OK $3\\\\n$" || true)
	[[ $s == "$2" && $bad == 0 ]] ||
		fail "$1: expected $2 connections served as $3, got served=$s, $bad other:" \
			"$(grep -v "reply=OK $3" "$T/$1.hammer" | head -20)"
}

# ports_of NAME: the client ports of hammer run NAME, one a line.
ports_of() {
	sed -n 's/^conn .* port=\([0-9]*\) .*/\1/p' "$T/$1.hammer"
}

# good_served: a good proxied connection from $PROXY is served as $GOOD_PEER.
good_served() {
	client "$PROXY" "$GOOD_HDR$REQ"
	expect_reply "OK $GOOD_PEER"
}

# count_matching FILE ERE: lines of FILE matching ERE (0 if none or no file).
count_matching() {
	local n
	n=$(grep -Ec -- "$2" "$1" 2>/dev/null) || true
	printf '%s' "${n:-0}"
}

# fd_count PID / rss_kb PID: open descriptors and VmRSS (kB) of PID.
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

# mono_s: CLOCK_MONOTONIC seconds (the clock of the shim's log rate limiter).
mono_s() { "$HAMMER" -M; }

# ---- the malformed battery ----

# Warning lines of the shim about a proxy, and its rate limiter's summary line.
WARN_PROXY='^proxyshim\[[0-9]+\]: warn: proxy 127\.0\.0\.10:[0-9]+: .+; connection closed$'
WARN_SUPPRESSED='^proxyshim\[[0-9]+\]: warn: [0-9]+ similar warnings suppressed$'

# check_log LOG FIRST-PORT TOTAL HAMMER-RUN...: the shim's log after TOTAL bad
# connections (those of the hammer runs named), the first from FIRST-PORT: the first
# line names it (a later connection may reuse its port, so it is counted with the
# others below); every line is such a
# warning or a rate-limiter summary; no connection is named more often than connections
# used its port (a reset frees a port for the next connection at once); none was closed
# for a timeout (a malformed header is refused when it is seen, not waited out); at
# least min(TOTAL, 20) lines (the limiter's burst) and at most TOTAL name the proxy.
check_log() {
	local log=$1 port=$2 total=$3 named other over
	shift 3
	[[ $(head -n 1 "$log") =~ proxy\ 127\.0\.0\.10:$port: ]] ||
		fail "the first log line does not name the proxy at port $port:" "$(head -n 3 "$log")"
	other=$(grep -Ev -- "$WARN_PROXY|$WARN_SUPPRESSED" "$log" || true)
	[[ -z $other ]] || fail "unexpected log lines:" "$other"
	! grep -q 'timed out' "$log" || fail "a malformed header was waited out:" "$(grep 'timed out' "$log" | head -3)"
	over=$(join -a1 -e0 -o 0,1.2,2.2 \
		<(sed -n 's/.*proxy 127\.0\.0\.10:\([0-9]*\):.*/\1/p' "$log" | sort | uniq -c | awk '{print $2, $1}' | sort) \
		<(for run; do ports_of "$run"; done | sort | uniq -c | awk '{print $2, $1}' | sort) |
		awk '$2 > $3')
	[[ -z $over ]] || fail "logged more often than connected (port logged used):" "$over"
	named=$(count_matching "$log" "$WARN_PROXY")
	((named >= (total < 20 ? total : 20) && named <= total)) ||
		fail "$named warning lines for $total bad connections:" "$(cat "$log")"
}

# battery_on MODE HEADER: one server (testserver -m MODE, trusting $PROXY) takes HEADER
# (escaped form, followed by $REQ) from $PROXY whole, then a good connection, then
# HEADER split in two writes 20 ms apart at every byte boundary 1..length (8 clients
# at a time), then a good connection. Every bad connection is closed before 3 s (the
# shim's timeout is 10 s, so none is waited out); the application sees only the two
# good ones; the log is as check_log says.
battery_on() {
	local mode=$1 hdr=$2 len first
	len=$(emit "$hdr" | wc -c)
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=10000 \
		PROXYSHIM_LOG="$T/shim.log" -- -m "$mode" -I 500
	hit whole "$PROXY" "$hdr$REQ" -e keep -t 3000
	expect_refused_all whole 1
	first=$(ports_of whole)
	good_served
	hit sweep "$PROXY" "$hdr$REQ" -c 1 -S -n "$len" -j 8 -d 20 -e keep -t 3000
	expect_refused_all sweep "$len"
	good_served
	expect_output "$(conn_line "$GOOD_PEER" "$REQ")" "$(conn_line "$GOOD_PEER" "$REQ")"
	check_log "$T/shim.log" "$first" $((len + 1)) whole sweep
	stop_server
	rm -f "$T/shim.log" "$T/server.out" "$T/server.err"
}

# battery HEADER: battery_on with a blocking server (8 threads in accept4, each
# waiting for its header in the shim) and with an epoll server (non-blocking accept4:
# incomplete connections are kept aside by the shim).
battery() {
	battery_on threads:8 "$1"
	battery_on epoll "$1"
}
