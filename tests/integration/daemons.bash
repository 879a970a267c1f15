# Helpers for the real-daemon tests (daemon_*.bats), loaded after helpers.bash.
# The daemons' configurations and start functions are scripts/lib/daemons.sh, shared
# with scripts/demo (helpers.bash sources it).
#
# A daemon shared by a whole file is started in setup_file under $FT (file_dir) and
# recorded with file_track; teardown_file calls file_cleanup. Per-test processes go to
# PIDS (helpers.bash stops them in teardown).

SHIM_ENV=(LD_PRELOAD="$PS_PRELOAD")

# need_cmds CMD...: skips the file (from setup_file) or test if a program is missing.
need_cmds() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || skip "$c not installed (scripts/install-deps)"
	done
	[[ -f $PS_BUILD/libproxyshim.so ]] || fail "missing $PS_BUILD/libproxyshim.so (make)"
}

# file_dir: creates $FT (exported) for the daemons shared by the file.
file_dir() {
	FT=$(mktemp -d "${BATS_RUN_TMPDIR:-/tmp}/proxyshim-dm.XXXXXX")
	export FT
	: >"$FT/pids"
}

file_track() { echo "$1" >>"$FT/pids"; }

# file_world_dir: a directory under /tmp that a daemon's unprivileged user can reach
# (bats' temp dirs are root's alone), with libproxyshim.so copied into it for the same
# reason; file_cleanup removes it. Prints it.
file_world_dir() {
	local d
	d=$(ds_world_dir) || fail "cannot make a directory under /tmp"
	echo "$d" >>"$FT/worlddirs"
	cp "$PS_BUILD/libproxyshim.so" "$d/"
	chmod 755 "$d" "$d/libproxyshim.so"
	echo "$d"
}

# file_haproxy NAME:PORT:OPTIONS...: the file's HAProxy (in $FT/haproxy), connecting
# from 127.0.0.10, the trusted proxy: for each route a frontend on a free port, exported
# as FE_NAME, to 127.0.0.1:PORT with server OPTIONS (send-proxy, send-proxy-v2, or
# nothing for no header). Recorded for file_cleanup.
file_haproxy() {
	local h=$FT/haproxy r name port opts fe
	mkdir -p "$h"
	ds_haproxy_config "$h"
	for r; do
		IFS=: read -r name port opts <<<"$r"
		fe=$(free_port)
		export "FE_$name=$fe"
		ds_haproxy_route "$h" "$name" "$fe" "127.0.0.1:$port" "${opts:+$opts }source 127.0.0.10"
	done
	ds_haproxy_start "$h" || fail "haproxy did not start"
	file_track "$DS_PID"
}

# file_cleanup: stops what file_track recorded (children of the file's shell), removes $FT
# and the directories of file_world_dir.
file_cleanup() {
	if [[ -z ${FT:-} || ! -d $FT ]]; then
		return 0  # setup_file skipped before file_dir
	fi
	local pids=() dirs=() d
	mapfile -t pids <"$FT/pids"
	((${#pids[@]})) && ds_stop "${pids[@]}"
	if [[ -f $FT/worlddirs ]]; then
		mapfile -t dirs <"$FT/worlddirs"
	fi
	for d in "${dirs[@]}"; do
		if [[ $d == /tmp/proxyshim-dm.* ]]; then
			rm -rf "$d"
		fi
	done
	rm -rf "$FT"
}

# dump_dir DIR: the logs under DIR (tails), for a failed test.
dump_dir() {
	local f
	[[ -n $1 && -d $1 ]] || return 0
	for f in $(find "$1" -maxdepth 3 -type f -not -path "*/data/*" \( -name '*.log' -o -name '*.err' -o -name '*.out' \) | sort); do
		[[ -s $f ]] || continue
		printf '### %s\n' "${f#"$1"/}" >&2
		tail -n 25 "$f" | cut -c1-300 | cat -v >&2
	done
}

# file_skip REASON: called from setup_file (which then returns 0), every test of the
# file is skipped with REASON (bats 1.8 takes a skip in setup_file for a failure).
file_skip() { export PS_FILE_SKIP=$1; }
eval "helpers_setup_daemons() $(declare -f setup | tail -n +2)"
setup() {
	[[ -z ${PS_FILE_SKIP:-} ]] || skip "$PS_FILE_SKIP"
	helpers_setup_daemons
}

# teardown for files that share daemons: helpers.bash's teardown plus $FT's logs.
eval "helpers_$(declare -f teardown)"
teardown() {
	[[ ${BATS_TEST_COMPLETED:-} == 1 || -z ${FT:-} ]] || dump_dir "$FT"
	[[ ${BATS_TEST_COMPLETED:-} == 1 ]] || dump_dir "$T"
	helpers_teardown
}

# track PID: a per-test process (stopped in teardown).
track() { PIDS+=("$1"); }

# ---- clients from a chosen loopback source ----

# via SOURCE PORT COMMAND ARGS...: runs COMMAND (which connects to 127.0.0.1:$RELAY_PORT)
# through a one-shot relay that connects to 127.0.0.1:PORT from SOURCE. Sets OUT (stdout
# and stderr), STATUS, and RELAY_SRC (the address:port the target saw the relay connect
# from; empty if it never connected). Never fails by itself.
NRELAY=0
via() {
	local src=$1 tport=$2 n=$((++NRELAY)) pid
	shift 2
	RELAY_PORT=$(free_port)
	ds_relay "$T" "relay.$n" "$src" "$RELAY_PORT" "$tport" || fail "relay did not start"
	pid=$DS_PID
	track "$pid"
	STATUS=0
	OUT=$("$@" 2>&1) || STATUS=$?
	# the one-shot relay ends when both sides have closed
	ds_wait 5 ds_dead "$pid" || kill -TERM "$pid" 2>/dev/null
	RELAY_SRC=$(ds_relay_source "$T/relay.$n.err")
	printf '%s\n' "via $src -> $tport: status $STATUS, relay source '$RELAY_SRC'" "$OUT" >>"$T/clients.log"
	return 0
}

# via_bg NAME SOURCE PORT COMMAND ARGS...: the same in the background; the output goes to
# $T/NAME.client; the relay's log is $T/relay.NAME.err (see relay_src).
via_bg() {
	local name=$1 src=$2 tport=$3
	shift 3
	RELAY_PORT=$(free_port)
	ds_relay "$T" "relay.$name" "$src" "$RELAY_PORT" "$tport" || fail "relay did not start"
	track "$DS_PID"
	"$@" >"$T/$name.client" 2>&1 3>&- &
	track "$!"
}

# relay_src NAME: the source the relay of via_bg NAME connected from (waits up to 5 s).
relay_connected() { [[ -n $(ds_relay_source "$T/relay.$1.err") ]]; }
relay_src() {
	ds_wait 5 relay_connected "$1" || return 1
	ds_relay_source "$T/relay.$1.err"
}

# expect_eq ACTUAL EXPECTED [WHAT]
expect_eq() {
	[[ $1 == "$2" ]] || fail "${3:-value}: expected '$2'" "actual: '$1'"
}

# expect_match ACTUAL ERE [WHAT]
expect_match() {
	[[ $1 =~ $2 ]] || fail "${3:-value}: expected to match /$2/" "actual: '$1'"
}

expect_status() {
	[[ $STATUS == "$1" ]] || fail "client status $STATUS, expected $1" "output: $OUT"
}
