# shellcheck shell=bash
# Real daemons on loopback, each with its own configuration and files under a directory
# the caller owns: MariaDB, nginx, redis, HAProxy, and one-shot socat relays that give a
# client a chosen loopback source address. Sourced (bash) by tests/integration/daemons.bash
# and by scripts/demo, so that tests and demo run the same configurations.
#
# Nothing here touches system services or system paths: every daemon runs in the
# foreground as a child of the caller, on 127.0.0.1, on the port it is given, with its
# pid, logs, sockets and temp files in the given directory. Every wait is bounded.
# Each start function sets DS_PID (and appends it to DS_PIDS); ds_stop stops only the
# PIDs it is given.
#
# The environment of a daemon: LD_PRELOAD and PROXYSHIM_* are removed from the caller's,
# then the VAR=VALUE words passed to the start function are added (for example
# LD_PRELOAD=/path/libproxyshim.so PROXYSHIM_TRUSTED=127.0.0.1). Without them the daemon
# runs without the shim.

DS_PIDS=()
DS_PID=

# ---- processes and ports ----

# ds_wait SECONDS COMMAND...: polls COMMAND every 50 ms; status 1 after SECONDS.
ds_wait() {
	local deadline=$((${EPOCHREALTIME/./} + $1 * 1000000))
	shift
	until "$@"; do
		((${EPOCHREALTIME/./} < deadline)) || return 1
		sleep 0.05
	done
}

ds_alive() { kill -0 "$1" 2>/dev/null; }
ds_dead() { ! kill -0 "$1" 2>/dev/null; }

# ds_clean_env: DS_ENV = env(1) options that drop LD_PRELOAD and every PROXYSHIM_*
# variable of the caller's (the environment described above starts from that).
ds_clean_env() {
	local v
	DS_ENV=(-u LD_PRELOAD)
	for v in $(compgen -e); do
		if [[ $v == PROXYSHIM_* ]]; then DS_ENV+=(-u "$v"); fi
	done
}

# ds_split WORDS...: the words before the first "--" into DS_HEAD, those after it into
# DS_TAIL (no "--": all are DS_HEAD). The wrappers here take "VAR=VALUE... -- COMMAND..."
# this way; a caller copies both out before it calls another wrapper.
ds_split() {
	DS_HEAD=() DS_TAIL=()
	while (($#)) && [[ $1 != -- ]]; do
		DS_HEAD+=("$1")
		shift
	done
	(($#)) && shift
	DS_TAIL=("$@")
}

# ds_bg DIR NAME [VAR=VALUE...] -- COMMAND ARGS...: COMMAND in the background with the
# environment described above, stdin from /dev/null, stdout and stderr to
# DIR/NAME.out and DIR/NAME.err (fd 3, bats' channel, closed). Sets DS_PID. DS_STDIN
# names another file for stdin (opened read-write: vsftpd writes its fatal errors to fd 0).
ds_bg() {
	local dir=$1 name=$2 vars=()
	shift 2
	ds_split "$@"
	vars=("${DS_HEAD[@]}")
	set -- "${DS_TAIL[@]}"
	ds_clean_env
	env "${DS_ENV[@]}" "${vars[@]}" "$@" 0<>"${DS_STDIN:-/dev/null}" >"$dir/$name.out" \
		2>"$dir/$name.err" 3>&- &
	DS_PID=$!
	DS_PIDS+=("$DS_PID")
}

# ds_bg_port DIR NAME SECONDS [VAR=VALUE...] -- COMMAND ARGS...: ds_bg for a program
# that writes its port to the file named by its -P option (testserver, hsrv, sink,
# udpsrv, ...): `-P DIR/NAME.port` is added to ARGS; waits up to SECONDS for the file.
# Sets DS_PID and DS_PORT; status 1 if no port came (the program may still run: DS_PID).
ds_bg_port() {
	local dir=$1 name=$2 secs=$3
	shift 3
	rm -f "$dir/$name.port"
	ds_bg "$dir" "$name" "$@" -P "$dir/$name.port"
	ds_wait "$secs" test -s "$dir/$name.port" || return 1
	DS_PORT=$(<"$dir/$name.port")
}

# ds_stop PID...: SIGTERM, up to 15 s for each to end (MariaDB shuts down cleanly), then
# SIGKILL. Only the given PIDs, which must be children of this shell.
ds_stop() { ds_stop_within 15 "$@"; }

# ds_stop_within SECONDS PID...: the same with SECONDS of grace for each.
ds_stop_within() {
	local grace=$1 pid
	shift
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "$@"; do
		ds_wait "$grace" ds_dead "$pid" || kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

# ds_listening PORT: something listens on 127.0.0.1:PORT or on the wildcard address
# (read from /proc/net/tcp; no connection is made, so nothing is logged or counted).
ds_listening() {
	local p
	p=$(printf '%04X' "$1")
	grep -Eq "^ *[0-9]+: (0100007F|00000000):$p 00000000:0000 0A " /proc/net/tcp
}

# ds_free_port: a TCP port below the ephemeral range that no socket uses now.
ds_free_port() {
	local i p used
	used=$(awk 'NR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + (RANDOM % 12000)))
		grep -qx "$(printf '%04X' "$p")" <<<"$used" || { echo "$p"; return 0; }
	done
	return 1
}

# ---- MariaDB ----
# Files under DIR: data/, mariadb.sock, mariadb.pid, mariadb.err (error log),
# general.log, slow.log (long_query_time=0: every statement), install.log.
# Name resolution stays on (Debian's default): that is what makes MariaDB keep its host
# cache and block an address after max_connect_errors failed handshakes. MariaDB names
# 127.0.0.1 "localhost".

# ds_mariadb_init DIR: a fresh data directory.
ds_mariadb_init() {
	mkdir -p "$1/data"
	mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$1/data" \
		--auth-root-authentication-method=normal --skip-test-db \
		--innodb-log-file-size=8M >"$1/install.log" 2>&1
}

# ds_mariadb_start DIR PORT MAX_CONNECT_ERRORS [VAR=VALUE...]: mariadbd in the foreground
# on 127.0.0.1:PORT; waits (30 s) until it answers on its socket. Sets DS_PID.
ds_mariadb_start() {
	local dir=$1 port=$2 mce=$3
	shift 3
	ds_bg "$dir" mariadbd "$@" -- mariadbd --no-defaults --user="$(id -un)" \
		--datadir="$dir/data" --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" \
		--port="$port" --bind-address=127.0.0.1 --skip-networking=0 \
		--log-error="$dir/mariadb.err" --log-warnings=2 \
		--general-log=1 --general-log-file="$dir/general.log" \
		--slow-query-log=1 --slow-query-log-file="$dir/slow.log" --long-query-time=0 \
		--max-connect-errors="$mce" --innodb-buffer-pool-size=16M \
		--innodb-log-file-size=8M --skip-log-bin
	local pid=$DS_PID
	if ! ds_wait 30 ds_mariadb_up "$dir" "$pid" || ! ds_listening "$port"; then
		echo "mariadbd did not start:" >&2
		tail -n 20 "$dir/mariadb.err" "$dir/mariadbd.err" >&2 2>/dev/null
		return 1
	fi
	DS_PID=$pid
}

ds_mariadb_up() {
	ds_alive "$2" || return 0 # dead: stop waiting, the caller reports it
	[[ -S $1/mariadb.sock ]] && ds_mariadb_sql "$1" 'SELECT 1' >/dev/null 2>&1
}

# ds_mariadb_sql DIR SQL: as root over the unix socket; tab-separated rows, no header.
ds_mariadb_sql() {
	mariadb --no-defaults -S "$1/mariadb.sock" -uroot -N -B -e "$2"
}

# ds_mariadb_users DIR: the accounts the tests and the demo use.
#   haproxy_check  HAProxy's mysql-check, from HAProxy's own addresses (127.0.0.1 is
#                  "localhost" to MariaDB; 127.0.0.10 is the non-loopback-looking proxy)
#   app            password app-pw, only from 127.0.0.11 (an IP grant)
#   any            password any-pw, from anywhere, may see every PROCESSLIST row
ds_mariadb_users() {
	ds_mariadb_sql "$1" "
		CREATE USER 'haproxy_check'@'localhost';
		CREATE USER 'haproxy_check'@'127.0.0.10';
		CREATE USER 'app'@'127.0.0.11' IDENTIFIED BY 'app-pw';
		GRANT SELECT ON mysql.* TO 'app'@'127.0.0.11';
		CREATE USER 'any'@'%' IDENTIFIED BY 'any-pw';
		GRANT PROCESS ON *.* TO 'any'@'%';"
}

# ds_mariadb_client PORT USER PASSWORD SQL: the mariadb client over TCP to 127.0.0.1:PORT.
ds_mariadb_client() {
	mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$1" -u "$2" -p"$3" \
		--connect-timeout=5 -N -B -e "$4"
}

# ---- nginx ----
# Every nginx.conf of the tests, the demo and the bench is written by ds_nginx_conf and
# nginx started by ds_nginx_run.

# ds_nginx_conf DIR [OPTION...]: writes DIR/nginx.conf: nginx in the foreground (`user
# root` when root), its pid, error log (DIR/error.log) and temp paths under DIR, an http
# block with one server rooted at DIR/www (made, with an index.html). Options:
#   -l LISTEN      a listen directive's arguments ("127.0.0.1:8080 proxy_protocol"), one
#                  line each; repeatable
#   -w WORKERS     worker_processes (default 1; `auto` allowed)
#   -c CONNS       worker_connections (default 256); above 4096 also
#                  worker_rlimit_nofile CONNS + 64
#   -e LEVEL       the error log's level (default info)
#   -a FORMAT      log_format of the access log DIR/access.log (default: no access log)
#   -h DIRECTIVES  more directives of the http block
#   -s DIRECTIVES  more directives of the server block
#   -x BLOCKS      more of the http block after the server (another server)
#   -i TEXT        index.html's text (default "hello")
ds_nginx_conf() {
	local dir=$1 listen="" workers=1 conns=256 level=info access="access_log off;" http=""
	local server="" extra="" index=hello user="" rlimit="" opt OPTIND=1 OPTARG
	shift
	while getopts "l:w:c:e:a:h:s:x:i:" opt; do
		case $opt in
		l) listen+="listen $OPTARG; " ;;
		w) workers=$OPTARG ;;
		c) conns=$OPTARG ;;
		e) level=$OPTARG ;;
		a) access="log_format main '$OPTARG'; access_log $dir/access.log main;" ;;
		h) http=$OPTARG ;;
		s) server=$OPTARG ;;
		x) extra=$OPTARG ;;
		i) index=$OPTARG ;;
		*) echo "ds_nginx_conf: bad option" >&2; return 1 ;;
		esac
	done
	mkdir -p "$dir/www" "$dir/tmp"
	echo "$index" >"$dir/www/index.html"
	[[ $(id -u) == 0 ]] && user="user root;"
	((conns > 4096)) && rlimit="worker_rlimit_nofile $((conns + 64));"
	cat >"$dir/nginx.conf" <<-EOF
		$user
		daemon off;
		worker_processes $workers;
		$rlimit
		pid $dir/nginx.pid;
		error_log $dir/error.log $level;
		events { worker_connections $conns; }
		http {
		    default_type text/plain;
		    $access
		    $http
		    client_body_temp_path $dir/tmp/body;
		    proxy_temp_path $dir/tmp/proxy;
		    fastcgi_temp_path $dir/tmp/fastcgi;
		    uwsgi_temp_path $dir/tmp/uwsgi;
		    scgi_temp_path $dir/tmp/scgi;
		    server {
		        $listen
		        root $dir/www;
		        $server
		    }
		    $extra
		}
	EOF
}

# ds_nginx_run DIR OUTDIR NAME PORT [VAR=VALUE...] [-- PREFIX...]: nginx with
# DIR/nginx.conf, started by ds_bg (output in OUTDIR/NAME.out and .err; PREFIX, for
# example taskset, runs nginx); waits (20 s) until something listens on PORT. Sets
# DS_PID (the master); status 1, with the logs on stderr, if nginx did not start.
ds_nginx_run() {
	local dir=$1 out=$2 name=$3 port=$4 vars=()
	shift 4
	ds_split "$@"
	vars=("${DS_HEAD[@]}")
	set -- "${DS_TAIL[@]}"
	ds_bg "$out" "$name" "${vars[@]}" -- "$@" nginx -p "$dir/" -c "$dir/nginx.conf" \
		-e "$dir/error.log"
	local pid=$DS_PID
	ds_wait 20 ds_listening "$port" || {
		echo "nginx ($dir) did not start:" >&2
		cat "$dir/error.log" "$out/$name.err" >&2 2>/dev/null
		return 1
	}
	DS_PID=$pid
}

# ds_nginx_start DIR PORT[,PORT...] WORKERS [VAR=VALUE...]: nginx (master and WORKERS
# workers, `auto` allowed) on 127.0.0.1:PORT with a plain listen (no proxy_protocol), one
# listen line per port of the list (one server). Files under DIR/nginx: nginx.conf, www/
# (index.html, acl/index.html), access.log ("$remote_addr:$remote_port $status
# $request"), error.log, nginx.pid, temp dirs. /acl/ is `allow 127.0.0.11; deny all;`.
# Sets DS_PID (the master).
ds_nginx_start() {
	local dir=$1/nginx workers=$3 listen=() p
	for p in ${2//,/ }; do
		listen+=(-l "127.0.0.1:$p")
	done
	ds_nginx_conf "$dir" "${listen[@]}" -w "$workers" \
		-a '$remote_addr:$remote_port $status $request' \
		-s 'location /acl/ { allow 127.0.0.11; deny all; }'
	mkdir -p "$dir/www/acl"
	echo "acl ok" >"$dir/www/acl/index.html"
	ds_nginx_run "$dir" "$dir" nginx "${2##*,}" "${@:4}"
}

# ---- redis ----
# Files under DIR/redis: redis.log, no persistence.

# ds_redis_start DIR PORT [VAR=VALUE...]: redis-server on 127.0.0.1:PORT. Sets DS_PID.
ds_redis_start() {
	local dir=$1/redis port=$2
	shift 2
	mkdir -p "$dir"
	ds_bg "$dir" redis "$@" -- redis-server --port "$port" --bind 127.0.0.1 \
		--save '' --appendonly no --protected-mode no --daemonize no \
		--dir "$dir" --logfile "$dir/redis.log" --loglevel verbose
	local pid=$DS_PID
	ds_wait 10 ds_listening "$port" || {
		echo "redis-server did not start:" >&2
		cat "$dir/redis.log" "$dir/redis.err" >&2 2>/dev/null
		return 1
	}
	DS_PID=$pid
}

# ---- HAProxy ----
# ds_haproxy_config DIR: starts DIR/haproxy.cfg (global, defaults, a stats socket at
# DIR/haproxy.sock); ds_haproxy_route adds a frontend and its backend; ds_haproxy_start
# runs it.
ds_haproxy_config() {
	cat >"$1/haproxy.cfg" <<-EOF
		global
		    nbthread 1
		    maxconn 500
		    stats socket $1/haproxy.sock level admin
		    log stderr format short local0 info
		defaults
		    mode tcp
		    log global
		    option tcplog
		    timeout connect 2s
		    timeout client 30s
		    timeout server 30s
		    timeout check 2s
	EOF
	DS_HAPROXY_PORTS=()
}

# ds_haproxy_route DIR NAME PORT SERVER-ADDR:PORT SERVER-OPTIONS [BACKEND-LINE...]:
# frontend NAME on 127.0.0.1:PORT to backend NAME with one server `srv`, for example
#   ds_haproxy_route "$dir" db_v2 6000 127.0.0.1:3306 "send-proxy-v2 check inter 500" \
#       "option mysql-check user haproxy_check"
ds_haproxy_route() {
	local dir=$1 name=$2 port=$3 server=$4 opts=$5 line
	shift 5
	{
		printf 'frontend %s\n    bind 127.0.0.1:%s\n    default_backend %s\n' "$name" "$port" "$name"
		printf 'backend %s\n' "$name"
		for line in "$@"; do printf '    %s\n' "$line"; done
		printf '    server srv %s %s\n' "$server" "$opts"
	} >>"$dir/haproxy.cfg"
	DS_HAPROXY_PORTS+=("$port")
}

# ds_haproxy_start DIR: HAProxy (never preloaded) in the foreground; waits for every
# frontend. Its log (health checks, connections) goes to DIR/haproxy.err. Sets DS_PID.
ds_haproxy_start() {
	local dir=$1 p pid
	ds_bg "$dir" haproxy -- haproxy -db -f "$dir/haproxy.cfg"
	pid=$DS_PID
	for p in "${DS_HAPROXY_PORTS[@]}"; do
		ds_wait 10 ds_listening "$p" || {
			echo "haproxy did not start:" >&2
			cat "$dir/haproxy.err" >&2
			return 1
		}
	done
	DS_PID=$pid
}

# ds_haproxy_cmd DIR COMMAND: a command on HAProxy's stats socket.
ds_haproxy_cmd() {
	echo "$2" | socat -t 2 - "UNIX-CONNECT:$1/haproxy.sock"
}

# ds_haproxy_server DIR BACKEND FIELD: a field of `show stat` for the backend's server
# (status: UP/DOWN, check_status: L7OK..., chkfail, ...). A check in progress marks
# check_status with "* ", which is removed.
ds_haproxy_server() {
	ds_haproxy_cmd "$1" "show stat" | awk -F, -v be="$2" -v f="$3" '
		NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
		$1 == be && $2 == "srv" { v = $(col[f]); sub(/^\* /, "", v); print v }'
}

# ---- client source addresses ----
# Neither mariadb nor redis-cli can bind a source address, so a client reaches its
# target through a one-shot relay: socat accepts one connection on 127.0.0.1:LPORT and
# connects to 127.0.0.1:TPORT from SOURCE; its log names the relay's own source port.

# ds_relay DIR NAME SOURCE LPORT TPORT: starts the relay (log DIR/NAME.err); waits until
# it listens. Sets DS_PID.
ds_relay() {
	local dir=$1 name=$2 src=$3 lport=$4 tport=$5 pid
	ds_bg "$dir" "$name" -- socat -d -d "TCP-LISTEN:$lport,bind=127.0.0.1,reuseaddr" \
		"TCP:127.0.0.1:$tport,bind=$src"
	pid=$DS_PID
	ds_wait 5 ds_listening "$lport" || {
		echo "socat relay did not start:" >&2
		cat "$dir/$name.err" >&2
		return 1
	}
	DS_PID=$pid
}

# ds_relay_source LOG: ADDR:PORT the relay connected from (empty if it did not connect).
ds_relay_source() {
	sed -n 's/.* successfully connected from local address AF=2 \([0-9.]*:[0-9]*\)$/\1/p' "$1" | tail -n 1
}

# ---- PostgreSQL ----
# PostgreSQL refuses to run as root: the server runs as the postgres user (created by
# Debian's package) through setpriv, in a DIR it can reach (world-traversable, owned by
# postgres). Files under DIR: data/ (the cluster), postgres.err (the server's log:
# log_connections on), initdb.log, the unix socket.

ds_pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	echo "${d:-/nonexistent}"
}

ds_as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

# ds_postgres_init DIR: a fresh cluster in DIR/data (superuser postgres, trust).
ds_postgres_init() {
	mkdir -p "$1/data"
	chmod 755 "$1"
	chmod 700 "$1/data"
	chown postgres:postgres "$1" "$1/data"
	ds_as_postgres "$(ds_pg_bin)/initdb" -D "$1/data" -U postgres --auth=trust \
		--no-sync >"$1/initdb.log" 2>&1
}

# ds_postgres_start DIR PORT [VAR=VALUE...]: the postmaster in the foreground on
# 127.0.0.1:PORT; waits (30 s) until it accepts connections on its unix socket. Sets
# DS_PID.
ds_postgres_start() {
	local dir=$1 port=$2 pid
	shift 2
	ds_bg "$dir" postgres "$@" -- setpriv --reuid=postgres --regid=postgres --init-groups \
		"$(ds_pg_bin)/postgres" -D "$dir/data" -c listen_addresses=127.0.0.1 \
		-c port="$port" -c unix_socket_directories="$dir" -c log_connections=on \
		-c fsync=off -c shared_buffers=16MB -c max_connections=20
	pid=$DS_PID
	if ! ds_wait 30 ds_postgres_up "$dir" "$port" "$pid" || ! ds_listening "$port"; then
		echo "postgres did not start:" >&2
		tail -n 20 "$dir/postgres.err" >&2
		return 1
	fi
	DS_PID=$pid
}

ds_postgres_up() {
	ds_alive "$3" || return 0 # dead: stop waiting, the caller reports it
	"$(ds_pg_bin)/pg_isready" -q -h "$1" -p "$2"
}

# ds_psql PORT SQL: psql over TCP to 127.0.0.1:PORT as postgres; unaligned rows.
ds_psql() {
	PGCONNECT_TIMEOUT=5 "$(ds_pg_bin)/psql" -X -h 127.0.0.1 -p "$1" -U postgres \
		-d postgres -At -c "$2"
}

# ---- vsftpd ----
# Standalone (listen=YES, background=NO: one process per connection, forked by the
# listener), anonymous read-only. Files under DIR/vsftpd: vsftpd.conf, pub/ (the
# anonymous root, with file.txt), empty/ (its secure_chroot_dir), vsftpd.log (every
# command and reply with the client's address), xferlog (transfers), vsftpd.oops (its
# fatal errors, which it writes to fd 0). pasv_promiscuous stays NO: a passive data
# connection must come from the address the control connection was accepted from.

# ds_vsftpd_start DIR PORT PASV_MIN PASV_MAX [VAR=VALUE...]: vsftpd on 127.0.0.1:PORT,
# passive data ports PASV_MIN..PASV_MAX. Sets DS_PID.
ds_vsftpd_start() {
	local dir=$1/vsftpd port=$2 pmin=$3 pmax=$4 pid
	shift 4
	mkdir -p "$dir/pub" "$dir/empty"
	chmod 755 "$dir" "$dir/pub"
	chmod 555 "$dir/empty"
	echo "hello over ftp" >"$dir/pub/file.txt"
	cat >"$dir/vsftpd.conf" <<-EOF2
		listen=YES
		listen_ipv6=NO
		listen_address=127.0.0.1
		listen_port=$port
		background=NO
		anonymous_enable=YES
		no_anon_password=YES
		anon_root=$dir/pub
		local_enable=NO
		write_enable=NO
		pasv_enable=YES
		pasv_min_port=$pmin
		pasv_max_port=$pmax
		secure_chroot_dir=$dir/empty
		xferlog_enable=YES
		dual_log_enable=YES
		xferlog_file=$dir/xferlog
		vsftpd_log_file=$dir/vsftpd.log
		log_ftp_protocol=YES
	EOF2
	: >"$dir/vsftpd.oops"
	DS_STDIN=$dir/vsftpd.oops ds_bg "$dir" vsftpd "$@" -- vsftpd "$dir/vsftpd.conf"
	pid=$DS_PID
	ds_wait 10 ds_listening "$port" || {
		echo "vsftpd did not start:" >&2
		cat "$dir/vsftpd.oops" "$dir/vsftpd.err" >&2
		return 1
	}
	DS_PID=$pid
}

# ---- Postfix ----
# An instance of its own: config_directory DIR/postfix/conf, queue_directory
# DIR/postfix/queue, data_directory DIR/postfix/data, log DIR/postfix/maillog (through
# postlogd). Only what smtpd needs to answer a session up to RCPT: no delivery, no
# chroot. mynetworks is the proxy alone (127.0.0.10): a client seen as the proxy may relay,
# any other is refused at RCPT. smtpd logs the client's port too
# (`connect from unknown[ADDR]:PORT`); no reverse lookups.
# The master starts every daemon with only the variables of import_environment (the
# second argument, appended to Postfix's own defaults); VAR=VALUE words are the
# master's own environment.
# DIR must be reachable by the postfix user (see ds_world_dir).

# ds_postfix_start DIR PORT IMPORT [VAR=VALUE...]: the master in the foreground in a
# session of its own (on SIGTERM it signals its process group); smtpd on 127.0.0.1:PORT.
# Sets DS_PID.
ds_postfix_start() {
	local dir=$1/postfix port=$2 import=$3 pid
	shift 3
	mkdir -p "$dir/conf" "$dir/queue" "$dir/data"
	chmod 755 "$dir"
	chown postfix "$dir/data"
	cat >"$dir/conf/main.cf" <<-EOF2
		compatibility_level = 3.6
		queue_directory = $dir/queue
		data_directory = $dir/data
		mail_owner = postfix
		setgid_group = postdrop
		myhostname = mx.proxyshim.test
		mydestination =
		alias_maps =
		alias_database =
		biff = no
		inet_interfaces = 127.0.0.1
		inet_protocols = ipv4
		mynetworks = 127.0.0.10/32
		smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
		smtpd_peername_lookup = no
		smtpd_client_port_logging = yes
		maillog_file = $dir/maillog
		maillog_file_prefixes = $dir
		import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C $import
	EOF2
	cat >"$dir/conf/master.cf" <<-EOF2
		127.0.0.1:$port inet n - n - - smtpd
		cleanup   unix  n - n - 0 cleanup
		rewrite   unix  - - n - - trivial-rewrite
		proxymap  unix  - - n - - proxymap
		anvil     unix  - - n - 1 anvil
		bounce    unix  - - n - 0 bounce
		defer     unix  - - n - 0 bounce
		trace     unix  - - n - 0 bounce
		postlog   unix-dgram n - n - 1 postlogd
	EOF2
	postfix -c "$dir/conf" check >"$dir/check.log" 2>&1 || {
		echo "postfix check failed:" >&2
		cat "$dir/check.log" >&2
		return 1
	}
	ds_bg "$dir" master "$@" -- setsid /usr/lib/postfix/sbin/master -c "$dir/conf" -d
	pid=$DS_PID
	ds_wait 10 ds_listening "$port" || {
		echo "postfix did not start:" >&2
		cat "$dir/maillog" "$dir/master.err" >&2 2>/dev/null
		return 1
	}
	DS_PID=$pid
}

# ds_smtp PORT RCPT: an SMTP session with 127.0.0.1:PORT (EHLO, MAIL FROM, RCPT TO:<RCPT>,
# QUIT, without DATA); prints every reply line. Each reply is awaited up to 5 s.
ds_smtp() {
	local fd line cmd
	exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
	IFS= read -r -t 5 line <&"$fd" && printf '%s\n' "${line%$'\r'}"
	for cmd in "EHLO client.proxyshim.test" "MAIL FROM:<sender@client.proxyshim.test>" \
		"RCPT TO:<$2>" "QUIT"; do
		{ printf '%s\r\n' "$cmd" >&"$fd"; } 2>/dev/null || break
		while IFS= read -r -t 5 line <&"$fd"; do
			printf '%s\n' "${line%$'\r'}"
			[[ $line == [0-9][0-9][0-9]-* ]] || break
		done
	done
	exec {fd}>&-
}

# ---- Dovecot ----
# base_dir, state_dir and log under DIR/dovecot; users in DIR/dovecot/users (passwd-file,
# alice / alice-pw, uid nobody, mail in DIR/dovecot/mail); IMAP without TLS. The login
# line carries the client's port: `Login: user=<alice>, ..., rip=ADDR, rport=PORT, ...`.
# Like Postfix's master, Dovecot's starts its processes with only the variables of
# import_environment (the second argument, after TZ).
# DIR must be reachable by the dovenull and nobody users (see ds_world_dir).

# ds_dovecot_start DIR PORT IMPORT [VAR=VALUE...]: `dovecot -F` with an IMAP listener on
# 127.0.0.1:PORT. Sets DS_PID.
ds_dovecot_start() {
	local dir=$1/dovecot port=$2 import=$3 pid
	shift 3
	mkdir -p "$dir/base" "$dir/state" "$dir/mail"
	chmod 755 "$dir"
	chown nobody "$dir/mail"
	echo "alice:{PLAIN}alice-pw:$(id -u nobody):$(id -g nobody)::$dir/mail/alice" >"$dir/users"
	cat >"$dir/dovecot.conf" <<-EOF2
		base_dir = $dir/base
		state_dir = $dir/state
		log_path = $dir/dovecot.log
		protocols = imap
		listen = 127.0.0.1
		ssl = no
		disable_plaintext_auth = no
		auth_mechanisms = plain login
		mail_location = maildir:~/Maildir
		first_valid_uid = 1
		login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l mpid=%e %c
		import_environment = TZ $import
		passdb {
		  driver = passwd-file
		  args = $dir/users
		}
		userdb {
		  driver = passwd-file
		  args = $dir/users
		}
		service imap-login {
		  inet_listener imap {
		    address = 127.0.0.1
		    port = $port
		  }
		  inet_listener imaps {
		    port = 0
		  }
		}
	EOF2
	ds_bg "$dir" dovecot "$@" -- dovecot -F -c "$dir/dovecot.conf"
	pid=$DS_PID
	ds_wait 10 ds_listening "$port" || {
		echo "dovecot did not start:" >&2
		cat "$dir/dovecot.log" "$dir/dovecot.err" >&2 2>/dev/null
		return 1
	}
	DS_PID=$pid
}

# ds_world_dir: a new directory under /tmp that unprivileged daemon users can traverse
# (bats' temp dirs are root's alone); prints it.
ds_world_dir() {
	local d
	d=$(mktemp -d /tmp/proxyshim-dm.XXXXXX) || return 1
	chmod 755 "$d"
	echo "$d"
}

# ---- Apache httpd ----
# Debian's /usr/sbin/apache2 with a minimal configuration of our own (never /etc/apache2
# nor its envvars): the parent runs as root and its children as www-data, so DIR must be
# world-traversable. Files under DIR: apache2.conf, www/ (index.html, acl/index.html),
# cgi-bin/addr (prints REMOTE_ADDR:REMOTE_PORT), cgi-bin/slow, access.log ("%a:%{remote}p %>s %U"),
# error.log, run/ (pid file, mutexes, cgid socket).
# /acl/ is `Require ip 127.0.0.77`.

# ds_apache_start DIR PORT MPM [VAR=VALUE...]: apache2 -DFOREGROUND on 127.0.0.1:PORT,
# MPM event (CGI by mod_cgid) or prefork (mod_cgi). Sets DS_PID (the parent).
ds_apache_start() {
	local dir=$1 port=$2 mpm=$3 m=/usr/lib/apache2/modules cgi=cgi pid
	shift 3
	[[ $mpm == event ]] && cgi=cgid
	mkdir -p "$dir/www/acl" "$dir/cgi-bin" "$dir/run"
	echo "hello" >"$dir/www/index.html"
	echo "acl ok" >"$dir/www/acl/index.html"
	printf '#!/bin/sh\nprintf "Content-Type: text/plain\\n\\n%%s:%%s\\n" "$REMOTE_ADDR" "$REMOTE_PORT"\n' \
		>"$dir/cgi-bin/addr"
	# cgi-bin/slow?N: sleeps N (a digit) seconds, then prints its parent's PID (the child)
	printf '#!/bin/sh\ncase "$QUERY_STRING" in [0-9]) sleep "$QUERY_STRING" ;; esac\nprintf "Content-Type: text/plain\\n\\n%%s\\n" "$PPID"\n' \
		>"$dir/cgi-bin/slow"
	chmod 755 "$dir" "$dir/www" "$dir/www/acl" "$dir/cgi-bin" "$dir/cgi-bin/addr" "$dir/cgi-bin/slow"
	chmod 644 "$dir/www/index.html" "$dir/www/acl/index.html"
	chown www-data "$dir/run"
	cat >"$dir/apache2.conf" <<-EOF
		ServerRoot $dir
		ServerName localhost
		Listen 127.0.0.1:$port
		PidFile $dir/run/apache2.pid
		DefaultRuntimeDir $dir/run
		Mutex file:$dir/run default
		User www-data
		Group www-data
		ErrorLog $dir/error.log
		LogLevel info
		LoadModule mpm_${mpm}_module $m/mod_mpm_${mpm}.so
		LoadModule authz_core_module $m/mod_authz_core.so
		LoadModule authz_host_module $m/mod_authz_host.so
		LoadModule alias_module $m/mod_alias.so
		LoadModule dir_module $m/mod_dir.so
		LoadModule ${cgi}_module $m/mod_${cgi}.so
		StartServers 2
		MaxRequestWorkers 8
		$([[ $mpm == event ]] && printf 'ThreadsPerChild 4\nServerLimit 2\nMinSpareThreads 4\nMaxSpareThreads 8\nScriptSock %s/run/cgid.sock' "$dir")
		$([[ $mpm == prefork ]] && printf 'MinSpareServers 1\nMaxSpareServers 4')
		KeepAlive Off
		LogFormat "%a:%{remote}p %>s %U" client
		CustomLog $dir/access.log client
		DocumentRoot $dir/www
		<Directory />
		    Require all denied
		</Directory>
		<Directory $dir/www>
		    Require all granted
		</Directory>
		<Directory $dir/www/acl>
		    Require ip 127.0.0.77
		</Directory>
		ScriptAlias /cgi-bin/ $dir/cgi-bin/
		<Directory $dir/cgi-bin>
		    Require all granted
		</Directory>
	EOF
	# its own session: on shutdown prefork signals its whole process group (setsid, not
	# a group leader here, execs without forking: DS_PID is apache2 itself)
	ds_bg "$dir" apache2 "$@" -- setsid /usr/sbin/apache2 -d "$dir" -f "$dir/apache2.conf" -DFOREGROUND
	pid=$DS_PID
	ds_wait 10 ds_listening "$port" || {
		echo "apache2 did not start:" >&2
		cat "$dir/error.log" "$dir/apache2.err" >&2 2>/dev/null
		return 1
	}
	DS_PID=$pid
}

# ---- lighttpd ----
# Files under DIR/lighttpd: lighttpd.conf, www/index.html, access.log ("%a %s %U",
# through a piped logger: lighttpd buffers a log file for seconds, a pipe it writes per
# request), error.log. Runs as www-data, which opens the logs: DIR must be world-traversable.

# ds_lighttpd_start DIR PORT [VAR=VALUE...]: lighttpd -D on 127.0.0.1:PORT. Sets DS_PID.
ds_lighttpd_start() {
	local dir=$1/lighttpd port=$2 pid
	shift 2
	mkdir -p "$dir/www"
	echo "hello" >"$dir/www/index.html"
	chmod 755 "$dir" "$dir/www"
	chmod 644 "$dir/www/index.html"
	chown www-data "$dir"
	cat >"$dir/lighttpd.conf" <<-EOF
		server.document-root = "$dir/www"
		server.bind = "127.0.0.1"
		server.port = $port
		server.username = "www-data"
		server.groupname = "www-data"
		server.errorlog = "$dir/error.log"
		server.modules = ("mod_accesslog")
		index-file.names = ("index.html")
		accesslog.filename = "|exec cat >>$dir/access.log"
		accesslog.format = "%a %s %U"
	EOF
	ds_bg "$dir" lighttpd "$@" -- lighttpd -D -f "$dir/lighttpd.conf"
	pid=$DS_PID
	ds_wait 10 ds_listening "$port" || {
		echo "lighttpd did not start:" >&2
		cat "$dir/error.log" "$dir/lighttpd.err" >&2 2>/dev/null
		return 1
	}
	DS_PID=$pid
}

# ---- memcached ----
# ds_memcached_start DIR PORT [VAR=VALUE...]: memcached with 4 worker threads on
# 127.0.0.1:PORT (TCP only), as nobody when started as root; verbose log in
# DIR/memcached/memcached.err. Sets DS_PID.
ds_memcached_start() {
	local dir=$1/memcached port=$2 pid user=()
	shift 2
	mkdir -p "$dir"
	[[ $(id -u) == 0 ]] && user=(-u nobody)
	ds_bg "$dir" memcached "$@" -- memcached -t 4 -l 127.0.0.1 -p "$port" -U 0 -m 16 -v "${user[@]}"
	pid=$DS_PID
	ds_wait 10 ds_listening "$port" || {
		echo "memcached did not start:" >&2
		cat "$dir/memcached.err" >&2 2>/dev/null
		return 1
	}
	DS_PID=$pid
}

# ds_memcached_cmd PORT COMMAND: one command over a new connection; its reply up to END.
ds_memcached_cmd() {
	printf '%s\r\nquit\r\n' "$2" | socat -t 2 - "TCP:127.0.0.1:$1" | tr -d '\r'
}
