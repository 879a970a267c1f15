#!/usr/bin/env bats
# Sending side against Debian's MariaDB with its NATIVE PROXY support
# (proxy_protocol_networks=127.0.0.0/8, no shim in the server), reached with the
# `mariadb` client over TCP under libproxyshim-client.so. MariaDB speaks first (its
# greeting), so the client reads before it writes: the header must go out when the
# client learns its non-blocking connect finished (getsockopt(SO_ERROR)) or first
# reads, not at its first write.
#
# MariaDB on its own accepts the header in the first packet it reads, even after its
# greeting; the HAProxy test makes the order strict: HAProxy (`accept-proxy`) connects
# to MariaDB only once it has the header, so without a header before the client's first
# read, no greeting ever comes.
#
# One MariaDB (own datadir, port, socket, --skip-name-resolve) is shared by the file.

load helpers
load daemons
load send

setup_file() {
	need_client mariadbd mariadb-install-db mariadb haproxy
	file_dir
	ds_mariadb_init "$FT" || fail "mariadb-install-db failed: $(tail "$FT/install.log")"
	export MDB_PORT
	MDB_PORT=$(free_port)
	mariadb_pp_start "$FT" "$MDB_PORT" 127.0.0.0/8
	file_track "$DS_PID"
	ds_mariadb_sql "$FT" "
		CREATE USER 'u'@'127.0.0.66' IDENTIFIED BY 'u-pw';
		CREATE USER 'any'@'%' IDENTIFIED BY 'any-pw';" ||
		fail "cannot create the users"
}

teardown_file() {
	file_cleanup
}

WHO="SELECT host, USER(), CURRENT_USER() FROM information_schema.PROCESSLIST WHERE id = CONNECTION_ID()"

# mdb NAME PORT USER PASSWORD [VAR=VALUE...]: the mariadb client over TCP to 127.0.0.1:PORT
# under the client shim (sending to PORT), runs $WHO.
mdb() {
	local name=$1 port=$2 user=$3 pw=$4
	shift 4
	run_client "$name" PROXYSHIM_SEND_TO="127.0.0.1:$port" "$@" -- \
		mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$port" -u "$user" -p"$pw" \
		--connect-timeout=5 -N -B -e "$WHO"
}

@test "MariaDB proxy_protocol_networks, v1: PROCESSLIST host is 127.0.0.66:5555, grant 'u'@'127.0.0.66' applies" {
	mdb v1 "$MDB_PORT" u u-pw PROXYSHIM_SEND_VERSION=1 PROXYSHIM_SEND_SOURCE=127.0.0.66:5555
	expect_ok v1
	expect_eq "$OUT" $'127.0.0.66:5555\tu@127.0.0.66\tu@127.0.0.66' "host, USER(), CURRENT_USER()"
}

@test "MariaDB proxy_protocol_networks, v2: PROCESSLIST host is 127.0.0.66:5555, grant 'u'@'127.0.0.66' applies" {
	mdb v2 "$MDB_PORT" u u-pw PROXYSHIM_SEND_VERSION=2 PROXYSHIM_SEND_SOURCE=127.0.0.66:5555
	expect_ok v2
	expect_eq "$OUT" $'127.0.0.66:5555\tu@127.0.0.66\tu@127.0.0.66' "host, USER(), CURRENT_USER()"
}

@test "MariaDB client without --connect-timeout (it polls with no limit), v1 and v2: still 127.0.0.66:5555" {
	local ver
	for ver in 1 2; do
		run_client nb.$ver PROXYSHIM_SEND_TO="127.0.0.1:$MDB_PORT" PROXYSHIM_SEND_VERSION=$ver \
			PROXYSHIM_SEND_SOURCE=127.0.0.66:5555 -- \
			mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MDB_PORT" -u u -pu-pw -N -B -e "$WHO"
		expect_ok nb.$ver
		expect_eq "$OUT" $'127.0.0.66:5555\tu@127.0.0.66\tu@127.0.0.66' "v$ver"
	done
}

@test "MariaDB, control: without the client shim 'u' is refused (it is 'u'@'127.0.0.1')" {
	STATUS=0
	mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MDB_PORT" -u u -pu-pw \
		--connect-timeout=5 -N -B -e "$WHO" >"$T/plain.out" 2>&1 || STATUS=$?
	OUT=$(<"$T/plain.out")
	expect_status 1
	expect_match "$OUT" "Access denied for user 'u'@'127\.0\.0\.1'"
}

@test "MariaDB, v2: the header's source decides the grant ('u' from 127.0.0.67 is refused)" {
	mdb denied "$MDB_PORT" u u-pw PROXYSHIM_SEND_VERSION=2 PROXYSHIM_SEND_SOURCE=127.0.0.67:5555
	expect_status 1
	expect_match "$OUT$(cat "$T/denied.err")" "Access denied for user 'u'@'127\.0\.0\.67'"
}

@test "MariaDB, v1 and v2, source local: 'any'@'%' is seen from 127.0.0.1 with the client's port" {
	local ver
	for ver in 1 2; do
		mdb local.$ver "$MDB_PORT" any any-pw PROXYSHIM_SEND_VERSION=$ver
		expect_ok local.$ver
		expect_match "$OUT" $'^127\\.0\\.0\\.1:[0-9]+\tany@127\\.0\\.0\\.1\tany@%$' "v$ver"
	done
}

@test "mariadb client -> HAProxy accept-proxy -> MariaDB (send-proxy-v2): no greeting without an early header; v1 and v2" {
	local hap ver
	hap=$(free_port)
	haproxy_config
	cat >>"$T/haproxy.cfg" <<-EOF
		frontend fe_db
		    mode tcp
		    bind 127.0.0.1:$hap accept-proxy
		    default_backend be_db
		backend be_db
		    mode tcp
		    server db 127.0.0.1:$MDB_PORT send-proxy-v2
	EOF
	HAPROXY_PORTS=("$hap")
	haproxy_run
	for ver in 1 2; do
		mdb hap.$ver "$hap" u u-pw PROXYSHIM_SEND_VERSION=$ver PROXYSHIM_SEND_SOURCE=127.0.0.66:5555
		expect_ok hap.$ver
		expect_eq "$OUT" $'127.0.0.66:5555\tu@127.0.0.66\tu@127.0.0.66' "through HAProxy, v$ver"
	done
	wait_lines "$T/haproxy.out" 2
	expect_eq "$(grep -c "^client=127.0.0.66:5555 front=127.0.0.1:$hap " "$T/haproxy.out")" 2 "haproxy log"
}
