#!/usr/bin/env bats
# Non-blocking listeners never wait: on a non-blocking
# listener, a trusted connection whose header is incomplete is kept aside by the shim;
# accept returns the next complete connection or EAGAIN, and the kept one is handed over
# when its header completes, or closed and logged at PROXYSHIM_TIMEOUT_MS.
#
# Every non-stalling assertion is a count, never a time threshold: a slow proxy
# connection (tests/helpers/slowclient.py) sends part of its header and holds the rest
# until the test releases it, which the test does only after all 100 fast connections
# sent meanwhile were served. A shim that waited inside accept() would serve none of them
# before the slow header (or its timeout, here 60 s).

load helpers
load daemons

PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3
SLOWCLIENT=$BATS_TEST_DIRNAME/../helpers/slowclient.py
POLLSERVER=$BATS_TEST_DIRNAME/../helpers/pollserver.py

NFAST=100
SLOW_CLIENT=127.0.0.77:10077
SLOW_V1=$(v1 TCP4 127.0.0.77 127.0.0.2 10077 8443)
SLOW_V2=$(v2 TCP4 127.0.0.77 127.0.0.2 10077 8443)
HREQ='GET / HTTP/1.0\r\n\r\n'   # a complete HTTP request (nginx)

# ---- the slow proxy connection ----

# slow_start PART REST [SLOWCLIENT-OPTS...]: connects from $PROXY to $TARGET_PORT, sends
# PART (escaped form), holds REST until slow_release. Waits until it is connected.
slow_start() {
	emit "$1" >"$T/slow.part"
	emit "$2" >"$T/slow.rest"
	shift 2
	"$PYTHON" "$SLOWCLIENT" --src "$PROXY" --port "$TARGET_PORT" --part "$T/slow.part" \
		--rest "$T/slow.rest" --release "$T/slow.go" --status "$T/slow.status" \
		--timeout 90 "$@" >"$T/reply.slow" 2>"$T/slow.err" &
	SLOW_PID=$!
	PIDS+=("$SLOW_PID")
	wait_until 10 grep -qx connected "$T/slow.status" ||
		fail "slow client did not connect:" "$(cat "$T/slow.status" "$T/slow.err" 2>/dev/null)"
}

# slow_pending: the slow client has sent its part and still holds the rest.
slow_pending() {
	alive "$SLOW_PID" && ! grep -q '^end=\|^error=' "$T/slow.status"
}

# slow_release: once the part is out, sends the rest; waits for the reply's end.
slow_release() {
	wait_until 60 grep -qx held "$T/slow.status" ||
		fail "slow client never held:" "$(cat "$T/slow.status" "$T/slow.err" 2>/dev/null)"
	: >"$T/slow.go"
	local st=0
	wait_exit "$SLOW_PID" 30 || st=$?
	((st == 0)) || fail "slow client: status $st:" "$(cat "$T/slow.status" "$T/slow.err")"
	grep -q '^end=eof' "$T/slow.status" || fail "slow client:" "$(cat "$T/slow.status")"
	SLOW_REPLY=$(<"$T/reply.slow")
}

# ---- the fast proxied connections ----

# fast_header I: a complete header for fast client I (v1 for odd I, v2 for even I).
fast_addr() { printf '10.1.%d.%d:%d' $(($1 / 250)) $(($1 % 250 + 1)) $((20000 + $1)); }
fast_header() {
	local a=${1} ip port
	ip=$(fast_addr "$a")
	port=${ip##*:} ip=${ip%:*}
	if (($1 % 2)); then
		v1 TCP4 "$ip" 127.0.0.2 "$port" 8443
	else
		v2 TCP4 "$ip" 127.0.0.2 "$port" 8443
	fi
}

# fast_clients N PAYLOAD REPLY-KIND: N proxied connections from $PROXY one after the
# other, each a different client; each must be served (REPLY-KIND ok: "OK <client>";
# http: an HTTP 200 reply). Counts them in FAST_SERVED.
fast_clients() {
	local i
	FAST_SERVED=0
	for ((i = 1; i <= $1; i++)); do
		client "$PROXY" "$(fast_header "$i")$2" -t 20000
		case $3 in
		ok) [[ $CLIENT_STATUS == 0 && $REPLY == "OK $(fast_addr "$i")" ]] ;;
		http) [[ $CLIENT_STATUS == 0 && $REPLY == "HTTP/1.1 200 OK"* ]] ;;
		esac || fail "fast client $i: status $CLIENT_STATUS, reply '${REPLY:0:80}'"
		FAST_SERVED=$((FAST_SERVED + 1))
	done
}

# lines_matching FILE ERE: how many lines of FILE match.
lines_matching() { grep -Ec -- "$2" "$1" || true; }

# server_proc: the testserver process itself (start_server's PID may be the subshell
# that runs it).
server_proc() {
	local pid=$SERVER_PID kids
	while [[ $(readlink "/proc/$pid/exe") != "$TESTSERVER" ]]; do
		kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null)
		[[ $kids =~ ^[0-9]+\ ?$ ]] || { fail "no testserver under $SERVER_PID"; return 1; }
		pid=${kids% }
	done
	echo "$pid"
}

# fd_count PID: open descriptors of PID.
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
fd_count_is() { (($(fd_count "$1") == $2)); }
fd_count_at_least() { (($(fd_count "$1") >= $2)); }

# ---- servers other than testserver ----

# start_pollserver [--OPTION [VALUE]...] [VAR=VALUE...]: tests/helpers/pollserver.py
# under the shim (options: --select, --listeners N, --idle-fds N). SERVER_PORT and
# TARGET_PORT: its first listener; PORTS: all of them.
start_pollserver() {
	local args=()
	while [[ ${1:-} == --* ]]; do
		args+=("$1")
		[[ $1 == --select ]] || { args+=("$2") && shift; }
		shift
	done
	under_shim "$@" -- "$PYTHON" "$POLLSERVER" --port-file "$T/server.port" \
		--count $((NFAST + 1)) --hard-timeout 120 "${args[@]}" \
		>"$T/server.out" 2>"$T/server.err" &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	wait_until 20 test -s "$T/server.port" ||
		fail "pollserver did not start: $(cat "$T/server.err")"
	mapfile -t PORTS <"$T/server.port"
	SERVER_PORT=${PORTS[0]}
	TARGET_PORT=$SERVER_PORT
}

# epoll_served_once [VAR=VALUE...]: the epoll test server under the shim (header
# timeout 60 s unless given) serves one proxied connection first, so that every
# descriptor the shim keeps for the listener exists; SPID is the server process,
# BEFORE its descriptor count then. MANY_PART: a header's first bytes, for slowclient.
epoll_served_once() {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000 "$@" -- -m epoll -T 120
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	expect_reply "OK 127.0.0.11:10011"
	wait_for_lines "$T/server.out" 1
	SPID=$(server_proc)
	BEFORE=$(fd_count "$SPID")
	MANY_PART=$T/many.part
	emit 'PROXY TCP4 127.0.0.' >"$MANY_PART"
}

# slow_many N STATUS-FILE: N connections from $PROXY each sending MANY_PART and holding
# (slowclient.py --many), in the background; its PID in MANY_PID.
slow_many() {
	"$PYTHON" "$SLOWCLIENT" --src "$PROXY" --port "$SERVER_PORT" --part "$MANY_PART" \
		--many "$1" --status "$2" --timeout 60 2>"$2.err" &
	MANY_PID=$!
	PIDS+=("$MANY_PID")
}

# The non-stalling check on a server printing one line per connection to server.out:
# LINE_OF ADDR gives the ERE of the line for client ADDR.
non_stalling() {
	local line_of=$1 part=$2 rest=$3
	shift 3
	slow_start "$part" "$rest" "$@"
	fast_clients "$NFAST" "$REQ" ok
	# Counts: every fast connection was served (its line is there) while the slow one
	# still held the rest of its header, and the slow one was not served.
	slow_pending || fail "the slow client ended early:" "$(cat "$T/slow.status")"
	((FAST_SERVED == NFAST)) || fail "$FAST_SERVED fast connections served, expected $NFAST"
	(($(lines_matching "$T/server.out" "$("$line_of" '10\.1\.[0-9]+\.[0-9]+:[0-9]+')") == NFAST)) ||
		fail "expected $NFAST fast lines:" "$(cat "$T/server.out")"
	(($(lines_matching "$T/server.out" "$("$line_of" "${SLOW_CLIENT//./\\.}")") == 0)) ||
		fail "the slow connection was served before its header completed"
	slow_release
	[[ $SLOW_REPLY == "OK $SLOW_CLIENT" ]] || fail "slow reply: '$SLOW_REPLY'"
	server_done 20
	(($(wc -l <"$T/server.out") == NFAST + 1)) || fail "server output:" "$(cat "$T/server.out")"
	tail -n 1 "$T/server.out" | grep -Eq -- "$("$line_of" "${SLOW_CLIENT//./\\.}")" ||
		fail "last line is not the slow client's:" "$(tail -n 1 "$T/server.out")"
}

# The testserver line of client ADDR (an ERE), with $REQ as data.
ts_line() { printf '^conn accept=%s peer=%s local=127\\.0\\.0\\.1:%s data="GET / HTTP/1\\.0\\\\r\\\\n"$' "$1" "$1" "$SERVER_PORT"; }
# The pollserver line.
py_line() { printf '^conn accept=%s peer=%s data="GET / HTTP/1\\.0\\\\r\\\\n"$' "$1" "$1"; }

# ---- epoll test server ----

@test "epoll: a header trickling in 1 byte per 200 ms holds up none of 100 proxied connections" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000 -- -m epoll -n $((NFAST + 1)) -T 120
	# 20 bytes of the header, one per 200 ms; the rest when released
	non_stalling ts_line "${SLOW_V1:0:20}" "${SLOW_V1:20}$REQ" --trickle 200
}

@test "epoll: a withheld v2 header holds up none of 100 proxied connections" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000 -- -m epoll -n $((NFAST + 1)) -T 120
	# nothing at all until the release: the connection is kept from its first accept
	non_stalling ts_line "" "$SLOW_V2$REQ"
}

@test "epoll: a header that never completes is closed at the timeout and logged; the loop goes on" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=1000 -- -m epoll -n 21
	client_bg stuck "$PROXY" 'PROXY TCP4 127.0.0.77 127.0' -k -r -t 20000
	fast_clients 20 "$REQ" ok
	wait_clients 25
	grep -Eq "^rawsend: end=(eof|reset) bytes=0" "$T/client.stuck.err" ||
		fail "stuck connection not closed by the server:" "$(cat "$T/client.stuck.err")"
	expect_log "$T/server.err" 'proxy 127\.0\.0\.10:[0-9]+: timed out in the middle of the header; connection closed'
	(($(lines_matching "$T/server.out" '127\.0\.0\.77') == 0)) || fail "stuck connection was served"
	client "$PROXY" "$(v1 TCP4 127.0.0.99 127.0.0.2 10099 8443)$REQ"
	expect_reply "OK 127.0.0.99:10099"
	server_done
	(($(wc -l <"$T/server.out") == 21)) || fail "server output:" "$(cat "$T/server.out")"
}

# CPU ticks (user + system) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

@test "epoll: a kept connection served before its deadline leaves no timer behind: the idle server does not spin (regression)" {
	# The deadline timer stayed armed after its connection left the set: when it fired,
	# the listener was readable with nothing to accept and the loop spun on EAGAIN.
	# Measured as CPU ticks used while idle, past the old deadline.
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=500 -- -m epoll
	client "$PROXY" "$(v1 TCP4 127.0.0.77 127.0.0.2 10077 8443)$REQ" -c 20 -d 100
	expect_reply "OK 127.0.0.77:10077"
	sleep 0.7  # past the deadline the kept connection had
	local before after
	before=$(cpu_ticks "$SERVER_PID")
	sleep 1
	after=$(cpu_ticks "$SERVER_PID")
	((after - before <= 5)) || fail "idle server used $((after - before)) ticks in 1 s"
}

@test "epoll: a partial header then EOF (half-close) is closed at once, not at the timeout" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000 -- -m epoll -n 1
	# -w: the server has accepted (and kept) the connection before any byte comes
	client "$PROXY" 'PROXY TCP4 127.0.0.77 127.0' -w 300 -r -t 30000
	expect_closed
	expect_log "$T/server.err" 'closed in the middle of the header; connection closed'
	client "$PROXY" "$(esc "$(v2_proxy_hex TCP4 127.0.0.77 127.0.0.2 10077 8443 | cut -c1-30)")" -w 300 -r -t 30000
	expect_closed
	client "$PROXY" "" -w 300 -r -t 30000
	expect_closed
	expect_log "$T/server.err" 'connection closed before the header arrived'
	! grep -q 'timed out' "$T/server.err" || fail "closed by the timeout, not by the EOF"
	expect_next_served
}

@test "epoll: a late v2 LOCAL header is handed over with the real addresses" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000 -- -m epoll -n 2
	client "$PROXY" "$(esc "$(v2_hex 20 00 "")")$REQ" -w 300 -c 5 -d 50
	expect_reply "OK $CLIENT_LOCAL"
	local local1=$CLIENT_LOCAL
	client "$PROXY" "$(v2 TCP4 127.0.0.77 127.0.0.2 10077 8443)$REQ" -w 300 -c 5 -d 50
	expect_reply "OK $SLOW_CLIENT"
	server_done
	expect_output "$(conn_line "$local1" "$REQ")" "$(conn_line "$SLOW_CLIENT" "$REQ")"
}

@test "epoll, optional: late header used; late plain data, PR+other bytes and silence handed over untouched" {
	start_server PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_POLICY=optional PROXYSHIM_TIMEOUT_MS=700 \
		-- -m epoll -n 4
	client "$PROXY" "$SLOW_V1$REQ" -w 300 -c 7 -d 20
	expect_reply "OK $SLOW_CLIENT"
	client "$PROXY" "$REQ" -w 300
	expect_reply "OK $CLIENT_LOCAL"
	local plain=$CLIENT_LOCAL
	# "PR" could begin a v1 header: kept until the next bytes tell
	client "$PROXY" 'PRZ hello\r\n' -w 300 -c 2 -d 100
	expect_reply "OK $CLIENT_LOCAL"
	local prz=$CLIENT_LOCAL
	# nothing until well after the timeout: handed over at the timeout, data intact
	client "$PROXY" "$REQ" -w 1500
	expect_reply "OK $CLIENT_LOCAL"
	server_done
	expect_output "$(conn_line "$SLOW_CLIENT" "$REQ")" "$(conn_line "$plain" "$REQ")" \
		"$(conn_line "$prz" 'PRZ hello\r\n')" "$(conn_line "$CLIENT_LOCAL" "$REQ")"
}

@test "epoll: 300 connections kept at once are all closed at the timeout, no descriptor leaks" {
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	epoll_served_once PROXYSHIM_TIMEOUT_MS=8000
	local before=$BEFORE pid=$SPID
	slow_many 300 "$T/many.status"
	local many=$MANY_PID
	# all 300 are held by the server process (accepted, kept by the shim)...
	wait_until 20 fd_count_at_least "$pid" $((before + 300)) ||
		fail "server holds $(fd_count "$pid") fds, expected >= $((before + 300))" "$(cat "$T/many.status" "$T/many.status.err" 2>&1)"
	# ...and all are closed by it at their timeout
	wait_exit "$many" 60 || fail "not all kept connections were closed:" "$(cat "$T/many.status" "$T/many.status.err")"
	grep -qx 'closed=300' "$T/many.status" || fail "$(cat "$T/many.status")"
	wait_until 10 fd_count_is "$pid" "$before" ||
		fail "fds before: $before, after the timeouts: $(fd_count "$pid")" \
			"$(ls -l "/proc/$SERVER_PID/fd")"
	expect_log "$T/server.err" 'timed out in the middle of the header'
	(($(wc -l <"$T/server.out") == 1)) || fail "a kept connection reached the application:" \
		"$(cat "$T/server.out")"
	# the loop still serves
	client "$PROXY" "$(v2 TCP4 127.0.0.12 127.0.0.2 10012 8443)$REQ"
	expect_reply "OK 127.0.0.12:10012"
	wait_for_lines "$T/server.out" 2
	fd_count_is "$pid" "$before" || fail "fds: $before, then $(fd_count "$pid")"
}

# ---- poll() and select() servers (python3, non-blocking listener) ----

@test "poll(): a withheld header holds up none of 100 proxied connections" {
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	start_pollserver PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000
	non_stalling py_line "${SLOW_V1:0:20}" "${SLOW_V1:20}$REQ"
}

@test "select(): a withheld header holds up none of 100 proxied connections" {
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	start_pollserver --select PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000
	non_stalling py_line "" "$SLOW_V2$REQ"
}

@test "poll(): a header that never completes is closed at the timeout; the server goes on" {
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	NFAST=1
	start_pollserver PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=500
	client "$PROXY" 'PROXY TCP4 127.0.0.77 127.0' -k -r -t 20000
	expect_closed
	expect_log "$T/server.err" 'timed out in the middle of the header'
	client "$PROXY" "$(v1 TCP4 127.0.0.11 127.0.0.2 10011 8443)$REQ"
	expect_reply "OK 127.0.0.11:10011"
}

# ---- nginx, one worker, plain listen, under the shim ----

@test "nginx (1 worker): a withheld header holds up none of 100 proxied requests" {
	need_cmds nginx
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	local port
	port=$(free_port)
	ds_nginx_start "$T" "$port" 1 "${SHIM_ENV[@]}" PROXYSHIM_TRUSTED=$PROXY \
		PROXYSHIM_TIMEOUT_MS=60000 PROXYSHIM_LOG="$T/proxyshim.log" || fail "nginx did not start"
	track "$DS_PID"
	TARGET_PORT=$port
	local access=$T/nginx/access.log
	slow_start "${SLOW_V1:0:20}" "${SLOW_V1:20}$HREQ" --trickle 20
	fast_clients "$NFAST" "$HREQ" http
	# the access log is written before nginx closes the connection, so every fast
	# request that got its whole reply is logged
	slow_pending || fail "the slow client ended early:" "$(cat "$T/slow.status")"
	local fast slow
	fast=$(lines_matching "$access" '^10\.1\.[0-9]+\.[0-9]+:[0-9]+ 200 GET / HTTP/1\.0$')
	slow=$(lines_matching "$access" "^${SLOW_CLIENT//./\\.} ")
	((fast == NFAST && slow == 0)) ||
		fail "while the slow header was pending: $fast fast requests logged (expected $NFAST), slow: $slow" \
			"$(cat "$access")"
	slow_release
	[[ $SLOW_REPLY == "HTTP/1.1 200 OK"* ]] || fail "slow reply: '${SLOW_REPLY:0:80}'"
	wait_until 5 grep -q "^${SLOW_CLIENT//./\\.} 200 GET / HTTP/1\\.0\$" "$access" ||
		fail "slow request not logged with its client:" "$(tail -n 3 "$access")"
	(($(wc -l <"$access") == NFAST + 1)) || fail "access log:" "$(cat "$access")"
	! grep -q 'warn\|error' "$T/proxyshim.log" 2>/dev/null || fail "$(cat "$T/proxyshim.log")"
}

# ---- at and past the limits the shim's tables once had ----

# free_ports N: N distinct free TCP ports on 127.0.0.1, one per line.
free_ports() {
	"$PYTHON" -c 'import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s:
    x.bind(("127.0.0.1", 0))
print("\n".join(str(x.getsockname()[1]) for x in s))' "$1"
}

# many_slow_start PORT...: one slow proxy connection per port, the I-th (from 1) with
# client 127.0.0.(100+I):(10100+I); each sends its header's first 20 bytes and holds the
# rest (and the request: $MANY_REQ, default $REQ) until many_slow_release; the first
# $MANY_HOLD (default 0) until many_slow_release --held.
many_slow_start() {
	local i=0 port hdr
	MANY_SLOW=()
	for port in "$@"; do
		i=$((i + 1))
		hdr=$(v1 TCP4 "127.0.0.$((100 + i))" 127.0.0.2 $((10100 + i)) 8443)
		emit "${hdr:0:20}" >"$T/slow$i.part"
		emit "${hdr:20}${MANY_REQ:-$REQ}" >"$T/slow$i.rest"
		"$PYTHON" "$SLOWCLIENT" --src "$PROXY" --port "$port" --part "$T/slow$i.part" \
			--rest "$T/slow$i.rest" --status "$T/slow$i.status" \
			--release "$T/$( ((i <= ${MANY_HOLD:-0})) && echo hold || echo many).go" \
			--timeout 60 >"$T/reply.slow$i" 2>"$T/slow$i.err" &
		MANY_SLOW+=($!)
		PIDS+=($!)
	done
	for ((i = 1; i <= $#; i++)); do
		wait_until 20 grep -qx held "$T/slow$i.status" ||
			fail "slow client $i never held:" "$(cat "$T/slow$i.status" "$T/slow$i.err" 2>/dev/null)"
	done
}

# many_slow_release [--held]: all but the first $MANY_HOLD (--held: those) send the
# rest; each must get "OK <its client>".
many_slow_release() {
	local i pid st first=$((${MANY_HOLD:-0} + 1)) last=${#MANY_SLOW[@]}
	if [[ ${1:-} == --held ]]; then
		first=1 last=${MANY_HOLD:-0}
		: >"$T/hold.go"
	fi
	: >"$T/many.go"
	for ((i = first; i <= last; i++)); do
		pid=${MANY_SLOW[i - 1]} st=0
		wait_exit "$pid" 20 || st=$?
		[[ $st == 0 && $(<"$T/reply.slow$i") == "OK 127.0.0.$((100 + i)):$((10100 + i))" ]] ||
			fail "slow client $i (port ${PORTS[i - 1]}): status $st, reply '$(<"$T/reply.slow$i")'" \
				"$(cat "$T/slow$i.status")" "server:" "$(cat "$T/server.out" "$T/server.err")"
	done
}

@test "poll(), 5,000 descriptors in the array: a withheld header holds up none of 100 proxied connections, and is served when it completes" {
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	(($(ulimit -Hn) >= 6000)) || skip "RLIMIT_NOFILE hard limit below 6,000"
	start_pollserver --idle-fds 5000 PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000
	non_stalling py_line "${SLOW_V1:0:20}" "${SLOW_V1:20}$REQ"
}

@test "poll(), 12 listeners in one array, each holding a kept connection: the last 4 are served when their headers complete while the first 8 still wait" {
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	start_pollserver --listeners 12 PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000
	MANY_HOLD=8
	many_slow_start "${PORTS[@]}"
	many_slow_release
	many_slow_release --held
}

@test "select(), 12 listeners in one set, each holding a kept connection: the last 4 are served when their headers complete while the first 8 still wait" {
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	start_pollserver --select --listeners 12 PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000
	MANY_HOLD=8
	many_slow_start "${PORTS[@]}"
	many_slow_release
	many_slow_release --held
}

@test "nginx (1 worker), 70 listen lines: every listener keeps a late connection; a withheld header on the 70th holds up none of 100 requests on the 1st" {
	need_cmds nginx
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	mapfile -t PORTS < <(free_ports 70)
	ds_nginx_start "$T" "$(IFS=,; echo "${PORTS[*]}")" 1 "${SHIM_ENV[@]}" \
		PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_TIMEOUT_MS=60000 PROXYSHIM_LOG="$T/proxyshim.log" ||
		fail "nginx did not start"
	track "$DS_PID"
	local access=$T/nginx/access.log
	# all 70 at once: each listener holds a kept connection, then each is served
	MANY_REQ=$HREQ many_slow_start "${PORTS[@]}"
	: >"$T/many.go"
	local i
	for ((i = 1; i <= 70; i++)); do
		wait_exit "${MANY_SLOW[i - 1]}" 20 || fail "late client $i on port ${PORTS[i - 1]} not served"
		[[ $(<"$T/reply.slow$i") == "HTTP/1.1 200 OK"* ]] || fail "late client $i: '$(<"$T/reply.slow$i")'"
		grep -q "^127\.0\.0\.$((100 + i)):$((10100 + i)) 200 " "$access" ||
			fail "late client $i not logged with its address"
	done
	# a withheld header on the last listener, plain requests on the first
	TARGET_PORT=${PORTS[69]}
	slow_start "${SLOW_V1:0:20}" "${SLOW_V1:20}$HREQ"
	TARGET_PORT=${PORTS[0]}
	fast_clients "$NFAST" "$HREQ" http
	slow_pending || fail "the slow client ended early:" "$(cat "$T/slow.status")"
	(($(lines_matching "$access" "^${SLOW_CLIENT//./\\.} ") == 0)) || fail "slow request served early"
	slow_release
	[[ $SLOW_REPLY == "HTTP/1.1 200 OK"* ]] || fail "slow reply: '${SLOW_REPLY:0:80}'"
	wait_until 5 grep -q "^${SLOW_CLIENT//./\\.} 200 GET / HTTP/1\\.0\$" "$access" ||
		fail "slow request not logged with its client:" "$(tail -n 3 "$access")"
	! grep -q 'warn\|error' "$T/proxyshim.log" 2>/dev/null || fail "$(cat "$T/proxyshim.log")"
}

@test "PROXYSHIM_KEEP_MAX: at the bound nothing is closed; a flood of 200 silent trusted connections past it closes the oldest (logged) while 100 valid ones are served" {
	command -v "$PYTHON" >/dev/null || skip "python3 not installed"
	epoll_served_once PROXYSHIM_KEEP_MAX=20
	local before=$BEFORE pid=$SPID
	# exactly at the bound: 20 kept, none closed, nothing logged
	slow_many 20 "$T/at.status"
	local at=$MANY_PID
	wait_until 20 fd_count_is "$pid" $((before + 20)) ||
		fail "server holds $(fd_count "$pid") fds, expected $((before + 20))"
	sleep 0.3
	alive "$at" || fail "a connection at the bound was closed:" "$(cat "$T/at.status")"
	! grep -q KEEP_MAX "$T/server.err" || fail "logged at the bound:" "$(cat "$T/server.err")"
	# past it: 200 more, while valid connections keep being served
	slow_many 200 "$T/flood.status"
	fast_clients "$NFAST" "$REQ" ok
	wait_until 20 grep -q '^held' "$T/flood.status" || fail "flood: $(cat "$T/flood.status" "$T/flood.status.err")"
	# the oldest went first: every one of the first 20 was closed
	wait_exit "$at" 20 || fail "the oldest kept connections were not closed"
	grep -qx 'closed=20' "$T/at.status" || fail "$(cat "$T/at.status")"
	expect_log "$T/server.err" 'connections already wait for their header \(PROXYSHIM_KEEP_MAX\); the oldest is closed'
	# never more than the bound kept (a valid connection kept until its request arrived
	# and then served may leave one place free)
	local n
	n=$(fd_count "$pid")
	((n <= before + 20 && n >= before + 19)) || fail "fds: $before before, $n now" "$(ls -l "/proc/$pid/fd")"
	(($(wc -l <"$T/server.out") == NFAST + 1)) || fail "server output:" "$(cat "$T/server.out")"
}
