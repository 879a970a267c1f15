# Helpers for the sending-side tests (send_*.bats), loaded after helpers.bash and
# daemons.bash (and scripts/lib/daemons.sh, which helpers.bash sources: ds_bg, ds_wait, ds_stop).
#
# Clients run under libproxyshim-client.so with only the PROXYSHIM_* variables a test
# gives (under_client). Every daemon a test starts runs in its own temp dir $T with its
# own configuration, on a port chosen by the kernel at run time, and is recorded with
# track (stopped by helpers.bash's teardown); daemons shared by a file live under $FT.

PS_CLIENT_SO=$PS_BUILD/libproxyshim-client.so
PS_RECV_SO=$PS_BUILD/libproxyshim.so
PS_CLIENT_PRELOAD="${PS_ASAN_RUNTIME:+$PS_ASAN_RUNTIME }$PS_CLIENT_SO"

# preload LIB...: an LD_PRELOAD value for these libraries (the ASan runtime first when
# $PS_ASAN_RUNTIME is set).
preload() {
	local IFS=' '
	printf '%s' "${PS_ASAN_RUNTIME:+$PS_ASAN_RUNTIME }$*"
}

# need_client CMD...: the client library and the programs must be there.
need_client() {
	need_cmds "$@"
	[[ -f $PS_CLIENT_SO ]] || fail "missing $PS_CLIENT_SO (make all)"
}

# probe_curl: from setup_file; exports PS_CURL_PRELOAD=ok if curl runs with this run's
# preload. With the ASan runtime preloaded (make sanitize), Debian 12's curl 7.88
# deadlocks in its own setlocale() call at start, before any network call, with or
# without the shim (glibc's __libc_setlocale_lock; the same with LD_PRELOAD=libasan.so
# alone); need_curl then skips the curl tests of that run.
probe_curl() {
	PS_CURL_PRELOAD=ok
	if [[ -n ${PS_ASAN_RUNTIME:-} ]]; then
		timeout 3 env LD_PRELOAD="$PS_ASAN_RUNTIME" curl --version >/dev/null 2>&1 ||
			PS_CURL_PRELOAD=hangs
	fi
	export PS_CURL_PRELOAD
}

need_curl() {
	[[ ${PS_CURL_PRELOAD:-} == ok ]] ||
		skip "curl hangs at start with the ASan runtime preloaded (not the shim: libasan alone does it)"
}

# under_client [VAR=VALUE...] -- COMMAND ARGS...: COMMAND preloaded with the client
# library only, with the given PROXYSHIM_* variables and none inherited.
under_client() {
	local PS_PRELOAD=$PS_CLIENT_PRELOAD
	under_shim "$@"
}

# under_preload PRELOAD [VAR=VALUE...] -- COMMAND ARGS...: the same with any LD_PRELOAD.
under_preload() {
	local PS_PRELOAD=$1
	shift
	under_shim "$@"
}

# run_client NAME [VAR=VALUE...] -- COMMAND ARGS...: under_client, stdin as given by
# the caller, stdout to $T/NAME.out, stderr to $T/NAME.err; sets STATUS and OUT
# (stdout). Never fails by itself. Bounded by `timeout 20` in case a client hangs.
run_client() {
	local name=$1
	shift
	run_preloaded "$name" "$PS_CLIENT_PRELOAD" "$@"
}

# run_preloaded NAME PRELOAD [VAR=VALUE...] -- COMMAND ARGS...: the same with any LD_PRELOAD.
run_preloaded() {
	local name=$1 pre=$2 vars=()
	shift 2
	ds_split "$@"
	vars=("${DS_HEAD[@]}")
	set -- "${DS_TAIL[@]}"
	STATUS=0
	under_preload "$pre" "${vars[@]}" -- timeout -k 2 20 "$@" \
		>"$T/$name.out" 2>"$T/$name.err" 3>&- || STATUS=$?
	OUT=$(<"$T/$name.out")
}

expect_ok() {
	((STATUS == 0)) || fail "client status $STATUS" "stdout: $OUT" "stderr: $(cat "$T/$1.err" 2>/dev/null)"
}

# wait_line FILE ERE [SECONDS]: waits (default 5 s) until a line of FILE matches; then
# LINE is the last matching line.
wait_line() {
	local f=$1 re=$2
	ds_wait "${3:-5}" grep -Eq -- "$re" "$f" 2>/dev/null ||
		fail "no line matching /$re/ in ${f##*/} within ${3:-5} s:" "$(cat "$f" 2>/dev/null)"
	LINE=$(grep -E -- "$re" "$f" | tail -n 1)
}

# wait_lines FILE N [SECONDS]: waits until FILE has at least N lines.
wait_lines() {
	local f=$1 n=$2
	ds_wait "${3:-5}" eval '(($(wc -l <"$f" 2>/dev/null || echo 0) >= n))' ||
		fail "${f##*/}: fewer than $n lines within ${3:-5} s:" "$(cat "$f" 2>/dev/null)"
}

# ---- HAProxy with accept-proxy ----
# $T/haproxy.cfg: global (log to stdout, raw), defaults with a log format that names
# the client (%ci:%cp, from the PROXY header) and the frontend address (%fi:%fp, the
# header's destination); haproxy_front adds a frontend with `accept-proxy` and its
# backend. HAProxy's stdout (the log) is $T/haproxy.out.

haproxy_config() {
	cat >"$T/haproxy.cfg" <<-EOF
		global
		    nbthread 1
		    maxconn 200
		    log stdout format raw local0 info
		defaults
		    log global
		    log-format "client=%ci:%cp front=%fi:%fp fe=%ft mode=tcp"
		    timeout connect 2s
		    timeout client 10s
		    timeout server 10s
	EOF
	HAPROXY_PORTS=()
}

# haproxy_front NAME PORT MODE SERVER-ADDR:PORT: frontend NAME on 127.0.0.1:PORT with
# accept-proxy, in MODE (tcp or http; http logs "client=... ... status=%ST"), to one server.
haproxy_front() {
	local name=$1 port=$2 mode=$3 server=$4
	{
		printf 'frontend %s\n    mode %s\n    bind 127.0.0.1:%s accept-proxy\n' "$name" "$mode" "$port"
		[[ $mode == http ]] &&
			printf '    log-format "client=%%ci:%%cp front=%%fi:%%fp fe=%%ft mode=http status=%%ST %%r"\n'
		printf '    default_backend be_%s\n' "$name"
		printf 'backend be_%s\n    mode %s\n    server s %s\n' "$name" "$mode" "$server"
	} >>"$T/haproxy.cfg"
	HAPROXY_PORTS+=("$port")
}

# haproxy_run: HAProxy (never preloaded) in the foreground; waits for its frontends.
haproxy_run() {
	local p
	ds_bg "$T" haproxy -- /usr/sbin/haproxy -db -f "$T/haproxy.cfg"
	track "$DS_PID"
	HAPROXY_PID=$DS_PID
	for p in "${HAPROXY_PORTS[@]}"; do
		ds_wait 10 ds_listening "$p" || fail "haproxy did not start:" "$(cat "$T/haproxy.err")"
	done
}

# ---- nginx with proxy_protocol ----
# nginx_proxy_start DIR PORT: nginx (one worker) on 127.0.0.1:PORT with `proxy_protocol`,
# its own prefix, pid, temp paths and logs under DIR. DIR/access.log has one line per
# request: "pp=$proxy_protocol_addr:$proxy_protocol_port
# ppdst=$proxy_protocol_server_addr:$proxy_protocol_server_port remote=$remote_addr
# status=$status". Sets NGINX_PID.
nginx_proxy_start() {
	local dir=$1 port=$2
	# /upload: proxy_pass buffers the whole request body before it answers
	ds_nginx_conf "$dir" -l "127.0.0.1:$port proxy_protocol" -c 64 -i "hello from nginx" \
		-a 'pp=$proxy_protocol_addr:$proxy_protocol_port ppdst=$proxy_protocol_server_addr:$proxy_protocol_server_port remote=$remote_addr status=$status' \
		-s "location = /upload { proxy_pass http://unix:$dir/sink.sock:/; }" \
		-x "server { listen unix:$dir/sink.sock; access_log off;
		    location / { return 200 \"got \$content_length\\n\"; } }"
	: >"$dir/access.log"
	local st=0
	ds_nginx_run "$dir" "$dir" nginx "$port" || st=$?
	NGINX_PID=$DS_PID
	track "$NGINX_PID"
	((st == 0)) || fail "nginx did not start"
}

# ---- a listener that records exactly what it received ----
# recorder_start NAME [ADDR]: socat accepts one connection on ADDR (127.0.0.1; ::1 for
# IPv6) at a fresh port and writes every byte it receives to $T/NAME.bin until the
# client closes. Sets REC_PORT, REC_PID.
recorder_start() {
	local name=$1 addr=${2:-127.0.0.1} spec
	if [[ $addr == *:* ]]; then
		REC_PORT=$("$TESTSERVER" -l "$addr" -F)
		spec="TCP6-LISTEN:$REC_PORT,bind=[$addr],reuseaddr"
	else
		REC_PORT=$(free_port)
		spec="TCP4-LISTEN:$REC_PORT,bind=$addr,reuseaddr"
	fi
	ds_bg "$T" "rec.$name" -- socat -u "$spec" "CREATE:$T/$name.bin"
	REC_PID=$DS_PID
	track "$REC_PID"
	ds_wait 5 rec_listening "$addr" "$REC_PORT" ||
		fail "recorder did not start:" "$(cat "$T/rec.$name.err")"
}

rec_listening() {
	if [[ $1 == *:* ]]; then
		grep -q ":$(printf %04X "$2") 00000000000000000000000000000000:0000 0A " /proc/net/tcp6
	else
		ds_listening "$2"
	fi
}

# recorder_done: the recorder ended (its client closed) within 10 s, status 0.
recorder_done() {
	local st=0
	wait_exit "$REC_PID" 10 || st=$?
	((st == 0)) || fail "recorder exit status $st (124: still running)" "$(cat "$T"/rec.*.err)"
}

# expect_same_bytes EXPECTED-FILE ACTUAL-FILE
expect_same_bytes() {
	cmp -- "$1" "$2" >&2 || fail "bytes differ:" \
		"expected: $(head -c 300 "$1" | od -c | head -n 8)" \
		"actual:   $(head -c 300 "$2" | od -c | head -n 8)"
}

# ---- MariaDB with its own proxy_protocol_networks ----
# mariadb_pp_start DIR PORT NETWORKS: mariadbd (data directory DIR/data made by
# ds_mariadb_init) on 127.0.0.1:PORT, unix socket DIR/mariadb.sock, no name resolution,
# proxy_protocol_networks=NETWORKS. Waits (30 s) until it answers on its socket.
# Sets DS_PID.
mariadb_pp_start() {
	local dir=$1 port=$2 nets=$3 pid
	ds_bg "$dir" mariadbd -- mariadbd --no-defaults --user="$(id -un)" \
		--datadir="$dir/data" --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" \
		--port="$port" --bind-address=127.0.0.1 --skip-networking=0 \
		--skip-name-resolve --proxy-protocol-networks="$nets" \
		--log-error="$dir/mariadb.err" --log-warnings=2 \
		--general-log=1 --general-log-file="$dir/general.log" \
		--innodb-buffer-pool-size=16M --innodb-log-file-size=8M --skip-log-bin
	pid=$DS_PID
	ds_wait 30 ds_mariadb_up "$dir" "$pid" && ds_alive "$pid" && ds_listening "$port" ||
		fail "mariadbd did not start:" "$(tail -n 20 "$dir/mariadb.err" "$dir/mariadbd.err" 2>/dev/null)"
	DS_PID=$pid
}

# bg_server [VAR=VALUE...] -- TESTSERVER-ARGS...: testserver in the background with
# exactly these variables (LD_PRELOAD=... for the receiving shim); see run_server.
bg_server() { run_server "$TESTSERVER" 30 "$@"; }

# plain_server TESTSERVER-ARGS...: without any preload (a backend behind HAProxy).
plain_server() { bg_server -- "$@"; }

# shim_server TRUSTED TESTSERVER-ARGS...: under the receiving shim with
# PROXYSHIM_TRUSTED=TRUSTED.
shim_server() {
	local trusted=$1
	shift
	bg_server LD_PRELOAD="$PS_PRELOAD" PROXYSHIM_TRUSTED="$trusted" -- "$@"
}

# ---- a client whose connect does not block (perl, from perl-base) ----
# nbclient MODE HOST PORT: connects to HOST:PORT (IPv4) without blocking (connect gives
# EINPROGRESS, select waits until writable), then:
#   read      back to blocking; read(2) until EOF (sysread)
#   recv      back to blocking; recvfrom(2) until EOF (perl's recv)
#   nbread    stays non-blocking; read(2), select on EAGAIN, until EOF
#   soerror   getsockopt(SO_ERROR) first, then as read
#   reconnect connect() again (returns 0: the connection is established), then as read
#   write     back to blocking; writes "hello\n", shuts down writing, then as read
#   dup       dup() the socket, close the original, then as write on the copy
#   fork      back to blocking; fork: the child writes "child\n" and exits, then the
#             parent writes "parent\n", shuts down writing, then as read
#   fastopen  blocking socket, no connect: sendto(MSG_FASTOPEN) of "hello\n", then as
#             write after the write
#   nbfastopen  non-blocking, no connect: sendto(MSG_FASTOPEN) (EINPROGRESS or a count),
#             select until writable, write "hello\n" if it did not go, then as write
# It never writes in the other modes. Prints what it received; exit 4 after $NB_TIMEOUT
# (default 5) seconds without EOF (a server that never answers); stderr
# "nbclient: eagain=N" in mode nbread.
nbclient() {
	perl -e '
use strict; use warnings;
use Socket qw(PF_INET SOCK_STREAM IPPROTO_TCP SOL_SOCKET SO_ERROR pack_sockaddr_in inet_aton);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use Errno qw(EINPROGRESS EAGAIN);
my ($mode, $host, $port) = @ARGV;
my $limit = $ENV{NB_TIMEOUT} || 5;
$SIG{ALRM} = sub { print STDERR "nbclient: no EOF within $limit s\n"; exit 4 };
alarm $limit;
my $sa = pack_sockaddr_in($port, inet_aton($host));
socket(my $s, PF_INET, SOCK_STREAM, IPPROTO_TCP) or die "socket: $!\n";
my $fl = fcntl($s, F_GETFL, 0) or die "fcntl: $!\n";
fcntl($s, F_SETFL, $fl | O_NONBLOCK) or die "fcntl: $!\n";
my $w = ""; vec($w, fileno($s), 1) = 1;
my $hello = "hello\n";
if ($mode eq "fastopen" || $mode eq "nbfastopen") {
	fcntl($s, F_SETFL, $fl) or die "fcntl: $!\n" if $mode eq "fastopen";
	my $n = send($s, $hello, 0x20000000, $sa);   # MSG_FASTOPEN
	die "sendto(MSG_FASTOPEN): $!\n" unless defined $n || $! == EINPROGRESS;
	$hello = "" if defined $n && $n == length $hello;
	$mode = "write";
}
else { connect($s, $sa) or $! == EINPROGRESS or die "connect: $!\n" }
select(undef, $w, undef, 5) == 1 or die "connect did not finish\n";
if ($mode eq "fork") {
	fcntl($s, F_SETFL, $fl) or die "fcntl: $!\n";
	my $pid = fork() // die "fork: $!\n";
	if (!$pid) { syswrite($s, "child\n"); exit 0 }
	waitpid($pid, 0);
	$hello = "parent\n";
	$mode = "write";
}
if ($mode eq "dup") {
	open(my $d, "+<&", $s) or die "dup: $!\n";
	close($s);
	$s = $d;
	$mode = "write";
}
if ($mode eq "soerror") {
	my $e = unpack("i", getsockopt($s, SOL_SOCKET, SO_ERROR));
	die "SO_ERROR $e\n" if $e;
}
if ($mode eq "reconnect") { connect($s, $sa) or die "second connect: $!\n" }
fcntl($s, F_SETFL, $fl) or die "fcntl: $!\n" unless $mode eq "nbread";
if ($mode eq "write") {
	$hello eq "" or defined syswrite($s, $hello) or die "write: $!\n";
	shutdown($s, 1);
}
my ($out, $buf, $eagain) = ("", "", 0);
while (1) {
	my $n;
	if ($mode eq "recv") { $n = defined(recv($s, $buf, 4096, 0)) ? length($buf) : undef }
	else { $n = sysread($s, $buf, 4096) }
	if (!defined $n) {
		die "read: $!\n" unless $mode eq "nbread" && $! == EAGAIN;
		$eagain++;
		my $r = ""; vec($r, fileno($s), 1) = 1;
		select($r, undef, undef, 5);
		next;
	}
	last if $n == 0;
	$out .= $buf;
}
print $out;
print STDERR "nbclient: eagain=$eagain\n" if $mode eq "nbread";
' "$@"
}
