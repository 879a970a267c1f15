# Helpers for the inherited-socket tests (inherit_*.bats): inetd style (socat EXEC),
# systemd Accept=yes style (tests/helpers/launcher.c) and sshd's per-connection re-exec.
# Loaded after helpers.bash, whose setup/teardown, PIDS, client, v1/v2 etc. it uses.
#
# The app is build/peerinfo: it prints "peer=A local=L data=D" for the connection it
# inherits (data: its first read; bytes outside printable ASCII and '\' as \xNN), back
# to the client and, through PEERINFO_OUT, into $T/peerinfo.out.

PEERINFO=$PS_BUILD/peerinfo
LAUNCHER=$PS_BUILD/launcher
FORGE=$PS_BUILD/forgeinherit
SOCAT=/usr/bin/socat

CLIENT_IP=127.0.0.77    # the original client named in the headers
CLIENT_PORT=5555

inherit_setup() {
	local f
	for f in peerinfo launcher forgeinherit; do
		[[ -x $PS_BUILD/$f ]] || fail "missing $PS_BUILD/$f (make all)"
	done
}

# plain_argv COMMAND...: sets ARGV to COMMAND without the shim and without any
# PROXYSHIM_* variable of the caller's (shim_argv, in helpers.bash, is the shim's).
plain_argv() {
	ds_clean_env
	ARGV=(env "${DS_ENV[@]}" "$@")
}

# socat_quote WORD: WORD for a socat EXEC command line, where ':' ',' and '\' are
# special and spaces separate arguments (LD_PRELOAD takes ':' as its separator too).
socat_quote() {
	local w=$1
	[[ $w == *[[:space:]!\"\'\(\)\[\]\{\}]* ]] && fail "cannot pass '$w' through socat EXEC"
	w=${w//\\/\\\\}
	w=${w//:/\\:}
	w=${w//,/\\,}
	printf '%s' "$w"
}

# app_cmd [VAR=VALUE...] -- PROG ARGS...: a socat EXEC command line that runs PROG
# under the shim (env LD_PRELOAD=... VARS... PEERINFO_OUT=$T/peerinfo.out PROG ARGS).
app_cmd() {
	local words=(env LD_PRELOAD="${PS_PRELOAD// /:}" PEERINFO_OUT="$T/peerinfo.out") w out=""
	ds_split "$@"
	words+=("${DS_HEAD[@]}" "${DS_TAIL[@]}")
	for w in "${words[@]}"; do
		out+="${out:+ }$(socat_quote "$w")" || return 1
	done
	printf '%s' "$out"
}

# start_inetd [-p] EXEC-COMMAND-LINE: socat as an inetd (TCP-LISTEN on 127.0.0.1, fork,
# EXEC with the connection as the program's stdin and stdout). Without -p socat runs
# without the shim; with -p, under it with PROXYSHIM_TRUSTED=$PROXY (its accept takes
# the header, and the state crosses socat's fork+exec). Sets INETD_PID, INETD_PORT
# and TARGET_PORT.
start_inetd() {
	local pre=0
	[[ $1 == -p ]] && pre=1 && shift
	INETD_PORT=$(free_port)
	local args=(-d -d -lf "$T/socat.log" "TCP-LISTEN:$INETD_PORT,bind=127.0.0.1,reuseaddr,fork"
		"EXEC:$1,nofork")
	if ((pre)); then
		shim_argv PROXYSHIM_TRUSTED="$PROXY" -- "$SOCAT" "${args[@]}"
	else
		plain_argv "$SOCAT" "${args[@]}"
	fi
	"${ARGV[@]}" >"$T/socat.out" 2>"$T/socat.err" &
	INETD_PID=$!
	PIDS+=("$INETD_PID")
	wait_until 5 is_listening "$INETD_PORT" ||
		fail "socat did not start:" "$(cat "$T/socat.err" "$T/socat.log" 2>/dev/null)"
	TARGET_PORT=$INETD_PORT
}

# start_launcher COMMAND...: the systemd-style launcher (without the shim), with
# COMMAND as the service; it serves one connection. Sets LAUNCHER_PID, TARGET_PORT.
start_launcher() {
	rm -f "$T/launcher.port"
	plain_argv "$LAUNCHER" -P "$T/launcher.port" -t 20 "$@"
	"${ARGV[@]}" >"$T/launcher.out" 2>"$T/launcher.err" &
	LAUNCHER_PID=$!
	PIDS+=("$LAUNCHER_PID")
	wait_until 5 test -s "$T/launcher.port" ||
		fail "launcher did not start:" "$(cat "$T/launcher.err")"
	TARGET_PORT=$(<"$T/launcher.port")
}

# launcher_done: the launcher's service ended with status 0 (bounded wait).
launcher_done() {
	local st=0
	wait_exit "$LAUNCHER_PID" "${1:-10}" || st=$?
	((st == 0)) || fail "launcher exit status $st (124: still running)" \
		"stderr:" "$(cat "$T/launcher.err")"
}

# peerinfo_line PEER DATA [LOCAL]: the line peerinfo prints (DATA in its escaping,
# EOF for end of file); LOCAL defaults to 127.0.0.1:$TARGET_PORT.
peerinfo_line() {
	printf 'peer=%s local=%s data=%s' "$1" "${3:-127.0.0.1:$TARGET_PORT}" "$2"
}

# expect_app LINE...: peerinfo wrote exactly these lines (one per connection, in
# order) to $T/peerinfo.out; waits (bounded) for them to appear.
expect_app() {
	local want got
	want=$(printf '%s\n' "$@")
	wait_until 5 app_lines "$#" || true
	got=$(cat "$T/peerinfo.out" 2>/dev/null)
	[[ $got == "$want" ]] || fail "app output differs." "expected:" "$want" "actual:" "$got"
}
app_lines() { [[ -f $T/peerinfo.out && $(wc -l <"$T/peerinfo.out") -ge $1 ]]; }

# expect_app_eof: the last client got nothing back (the app read EOF, its reply
# failed) and the app's one line shows EOF: no byte of what was sent reached it.
expect_app_eof() {
	[[ -z $REPLY ]] || fail "client got a reply: '$REPLY'"
	wait_until 5 app_lines 1 || fail "peerinfo wrote nothing"
	local got
	got=$(<"$T/peerinfo.out")
	[[ $got =~ ^peer=[^\ ]+\ local=[^\ ]+\ data=EOF$ ]] ||
		fail "the app did not read EOF:" "$got"
	[[ $got != *$CLIENT_IP* ]] || fail "the app was told about the bad header's client: $got"
}

# hdr1 / hdr2 [SRC] [SPORT]: a v1 / v2 TCP4 header naming SRC:SPORT (default
# $CLIENT_IP:$CLIENT_PORT) as the client of 127.0.0.1:$TARGET_PORT (escaped form).
hdr1() { v1 TCP4 "${1:-$CLIENT_IP}" 127.0.0.1 "${2:-$CLIENT_PORT}" "$TARGET_PORT"; }
hdr2() { v2 TCP4 "${1:-$CLIENT_IP}" 127.0.0.1 "${2:-$CLIENT_PORT}" "$TARGET_PORT"; }

# peerinfo_esc ESCAPED: the escaped form (helpers.bash's) of some bytes as peerinfo
# prints them.
peerinfo_esc() {
	local hex
	hex=$(emit "$1" | od -An -tx1 -v | tr -d ' \n')
	local out="" i b
	for ((i = 0; i < ${#hex}; i += 2)); do
		b=$((16#${hex:i:2}))
		if ((b >= 32 && b < 127 && b != 92)); then
			out+=$(printf "\\x${hex:i:2}")
		else
			out+="\\x${hex:i:2}"
		fi
	done
	printf '%s' "$out"
}
