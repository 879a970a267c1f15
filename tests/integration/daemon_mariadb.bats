#!/usr/bin/env bats
# The MariaDB scenario:
# Debian's mariadbd, unmodified and without its own proxy_protocol_networks, preloaded
# with the shim behind a real HAProxy (mode tcp, send-proxy / send-proxy-v2, mysql-check
# health checks). Clients reach HAProxy from 127.0.0.11 and 127.0.0.12 (one-shot socat
# relays give them those sources). Every assertion is on MariaDB's own output:
# PROCESSLIST, USER()/CURRENT_USER(), access-denied errors, the general and slow logs,
# host blocking; and on HAProxy's view of its health checks.
#
# One shimmed MariaDB (PROXYSHIM_TRUSTED=127.0.0.1,127.0.0.10: HAProxy connects from
# 127.0.0.1, and from 127.0.0.10 for the host-blocking test, an address MariaDB does not
# exempt from its host cache as it does 127.0.0.1) and one plain MariaDB (the control:
# the problem the shim solves, and proof that these tests can fail) are shared by the file.

load helpers
load daemons

setup_file() {
	need_cmds mariadbd mariadb-install-db mariadb haproxy socat
	file_dir
	mkdir -p "$FT/shim" "$FT/plain" "$FT/haproxy"
	ds_mariadb_init "$FT/shim" || fail "mariadb-install-db failed: $(tail "$FT/shim/install.log")"
	cp -a "$FT/shim/data" "$FT/plain/"
	export MDB_PORT MDB0_PORT
	MDB_PORT=$(free_port)
	ds_mariadb_start "$FT/shim" "$MDB_PORT" 2 "${SHIM_ENV[@]}" \
		PROXYSHIM_TRUSTED=127.0.0.1,127.0.0.10 \
		PROXYSHIM_LOG="$FT/shim/proxyshim.log" PROXYSHIM_LOG_LEVEL=info
	file_track "$DS_PID"
	MDB0_PORT=$(free_port)
	ds_mariadb_start "$FT/plain" "$MDB0_PORT" 2
	file_track "$DS_PID"
	ds_mariadb_users "$FT/shim"
	ds_mariadb_users "$FT/plain"

	# Frontends (one port each) -> backends:
	#   V2, V1      shimmed MariaDB, send-proxy-v2 / send-proxy, mysql-check every 500 ms
	#   P10V2,P10V1 the same from source 127.0.0.10, checks every 100 ms
	#   N0          plain MariaDB, no header, mysql-check (the usual set-up without PROXY)
	#   N0_P10      plain MariaDB, no header, from 127.0.0.10, no checks
	#   H0V2, H0V1  plain MariaDB, send-proxy-v2 / send-proxy, no checks (clients only)
	#   C0V2, C0V1  plain MariaDB, send-proxy-v2 / send-proxy, checks only
	local h=$FT/haproxy chk="option mysql-check user haproxy_check" name
	export FE_V2 FE_V1 FE_P10V2 FE_P10V1 FE_N0 FE_N0_P10 FE_H0V2 FE_H0V1 FE_C0V2 FE_C0V1
	for name in V2 V1 P10V2 P10V1 N0 N0_P10 H0V2 H0V1 C0V2 C0V1; do
		printf -v "FE_$name" %s "$(free_port)"
	done
	ds_haproxy_config "$h"
	ds_haproxy_route "$h" V2 "$FE_V2" "127.0.0.1:$MDB_PORT" "send-proxy-v2 check inter 500" "$chk"
	ds_haproxy_route "$h" V1 "$FE_V1" "127.0.0.1:$MDB_PORT" "send-proxy check inter 500" "$chk"
	ds_haproxy_route "$h" P10V2 "$FE_P10V2" "127.0.0.1:$MDB_PORT" \
		"send-proxy-v2 check inter 100 source 127.0.0.10" "$chk"
	ds_haproxy_route "$h" P10V1 "$FE_P10V1" "127.0.0.1:$MDB_PORT" \
		"send-proxy check inter 100 source 127.0.0.10" "$chk"
	ds_haproxy_route "$h" N0 "$FE_N0" "127.0.0.1:$MDB0_PORT" "check inter 500" "$chk"
	ds_haproxy_route "$h" N0_P10 "$FE_N0_P10" "127.0.0.1:$MDB0_PORT" "source 127.0.0.10"
	ds_haproxy_route "$h" H0V2 "$FE_H0V2" "127.0.0.1:$MDB0_PORT" "send-proxy-v2"
	ds_haproxy_route "$h" H0V1 "$FE_H0V1" "127.0.0.1:$MDB0_PORT" "send-proxy"
	ds_haproxy_route "$h" C0V2 "$FE_C0V2" "127.0.0.1:$MDB0_PORT" "send-proxy-v2 check inter 200" "$chk"
	ds_haproxy_route "$h" C0V1 "$FE_C0V1" "127.0.0.1:$MDB0_PORT" "send-proxy check inter 200" "$chk"
	ds_haproxy_start "$h"
	file_track "$DS_PID"
}

teardown_file() {
	file_cleanup
}

# mdb USER PASSWORD SQL: the mariadb client through the current relay.
mdb() { ds_mariadb_client "$RELAY_PORT" "$@"; }

# junk: a client that sends one byte instead of a handshake response (a failed handshake,
# counted by MariaDB towards max_connect_errors).
junk() { printf x | "$RAWSEND" -r -t 3000 127.0.0.1 "$RELAY_PORT" >/dev/null; }

sql() { ds_mariadb_sql "$FT/shim" "$1"; }
sql0() { ds_mariadb_sql "$FT/plain" "$1"; }

# server_field BACKEND FIELD: HAProxy's `show stat` for the backend's server.
server_field() { ds_haproxy_server "$FT/haproxy" "$1" "$2"; }
server_is() { [[ $(server_field "$1" status) == "$2" ]]; }

# sleeping: the .11 client's SELECT SLEEP is running.
sleeping() {
	[[ -n $(sql "SELECT ID FROM information_schema.PROCESSLIST
		WHERE USER='any' AND INFO LIKE 'SELECT SLEEP%'") ]]
}

any_hosts() { sql "SELECT HOST FROM information_schema.PROCESSLIST WHERE USER='any'"; }
any_hosts_are() { [[ $(any_hosts) == "$1" ]]; }

# processlist FRONTEND: two clients at once, each seen as itself.
processlist() {
	local fe=$1 src11 id
	via_bg c11 127.0.0.11 "$fe" mdb any any-pw "SELECT SLEEP(20)"
	src11=$(relay_src c11) || fail "relay for .11 never connected"
	expect_match "$src11" '^127\.0\.0\.11:[0-9]+$' ".11 relay source"
	wait_until 10 sleeping || fail "the .11 client never ran its query"
	via 127.0.0.12 "$fe" mdb any any-pw \
		"SELECT HOST FROM information_schema.PROCESSLIST WHERE USER='any' ORDER BY ID"
	expect_status 0
	expect_match "$RELAY_SRC" '^127\.0\.0\.12:[0-9]+$' ".12 relay source"
	expect_eq "$OUT" "$src11"$'\n'"$RELAY_SRC" "PROCESSLIST.HOST seen by the .12 client"
	# root's view once the .12 client has gone: the .11 client, as itself
	wait_until 5 any_hosts_are "$src11" ||
		fail "PROCESSLIST.HOST seen by root: '$(any_hosts)', expected '$src11'"
	id=$(sql "SELECT ID FROM information_schema.PROCESSLIST WHERE HOST='$src11'")
	sql "KILL $id"
}

@test "send-proxy-v2: PROCESSLIST.HOST is each client's own address and port" {
	processlist "$FE_V2"
}

@test "send-proxy (v1): PROCESSLIST.HOST is each client's own address and port" {
	processlist "$FE_V1"
}

@test "IP grant: 'app'@'127.0.0.11' gets in from .11 and is refused from .12 (v2 and v1)" {
	local fe
	for fe in "$FE_V2" "$FE_V1"; do
		via 127.0.0.11 "$fe" mdb app app-pw "SELECT USER(), CURRENT_USER()"
		expect_status 0
		expect_eq "$OUT" $'app@127.0.0.11\tapp@127.0.0.11' "USER(), CURRENT_USER() from .11"
		via 127.0.0.12 "$fe" mdb app app-pw "SELECT USER()"
		expect_status 1
		expect_match "$OUT" "Access denied for user 'app'@'127\.0\.0\.12' \(using password: YES\)" \
			"error from .12"
	done
}

# general_connect MARKER: the general log's Connect argument for the connection that ran
# SELECT 'MARKER' (lines "[time]\t  ID Connect\tuser@host on  using TCP/IP",
# "\t\t  ID Query\tSELECT ...").
general_connect() {
	awk -v m="SELECT '$1'" '
		{ l = $0; sub(/^[^\t]*\t+ */, "", l); split(l, f, "\t"); split(f[1], w, " ") }
		w[2] == "Connect" { c[w[1]] = f[2] }
		w[2] == "Query" && f[2] == m { print c[w[1]]; exit }' "$FT/shim/general.log"
}
# slow_userhost MARKER: the slow log's User@Host line of the entry for SELECT 'MARKER'.
slow_userhost() {
	awk -v m="SELECT '$1';" '/^# User@Host:/ { uh = $0 } $0 == m { print uh; exit }' "$FT/shim/slow.log"
}

@test "the general log and the slow log (long_query_time=0) record the client's address" {
	local m11="marker-11-$RANDOM" m12="marker-12-$RANDOM"
	via 127.0.0.11 "$FE_V2" mdb any any-pw "SELECT '$m11'"
	expect_status 0
	via 127.0.0.12 "$FE_V1" mdb any any-pw "SELECT '$m12'"
	expect_status 0
	wait_until 5 grep -q "$m12" "$FT/shim/slow.log" || fail "query not in the slow log"
	expect_eq "$(general_connect "$m11")" "any@127.0.0.11 on  using TCP/IP" "general log Connect (.11, v2)"
	expect_eq "$(general_connect "$m12")" "any@127.0.0.12 on  using TCP/IP" "general log Connect (.12, v1)"
	expect_match "$(slow_userhost "$m11")" '^# User@Host: any\[any\] @  \[127\.0\.0\.11\]' "slow log (.11)"
	expect_match "$(slow_userhost "$m12")" '^# User@Host: any\[any\] @  \[127\.0\.0\.12\]' "slow log (.12)"
}

@test "HAProxy's mysql-check passes through the shim, as HAProxy itself (v2 LOCAL, v1 own addresses)" {
	local be
	for be in V2 V1 P10V2 P10V1; do
		wait_until 10 server_is "$be" UP || fail "backend $be: $(server_field "$be" status)"
		expect_eq "$(server_field "$be" check_status)" L7OK "backend $be check_status"
		expect_eq "$(server_field "$be" chkfail)" 0 "backend $be chkfail"
	done
	# the checks logged in as haproxy_check from HAProxy's own addresses
	expect_log "$FT/shim/general.log" $'Connect\thaproxy_check@localhost on  using TCP/IP'
	expect_log "$FT/shim/general.log" $'Connect\thaproxy_check@127\\.0\\.0\\.10 on  using TCP/IP'
	expect_log "$FT/shim/proxyshim.log" 'proxy 127\.0\.0\.1:[0-9]+ -> client 127\.0\.0\.11:[0-9]+'
}

# checks10: how many health checks from 127.0.0.10 logged in (general log).
checks10() { grep -c $'Connect\thaproxy_check@127.0.0.10 on ' "$FT/shim/general.log"; }
checks10_reach() { (($(checks10) >= $1)); }

# blocking FRONTEND BACKEND: many checks from 127.0.0.10, then two failed handshakes from
# .12: .12 is blocked; .11 and HAProxy's checks are not.
blocking() {
	local fe=$1 be=$2 n fail0
	sql "FLUSH HOSTS"
	n=$(checks10)
	wait_until 10 checks10_reach $((n + 10)) || fail "fewer than 10 health checks from 127.0.0.10 in 10 s"
	fail0=$(server_field "$be" chkfail)
	via 127.0.0.12 "$fe" junk
	via 127.0.0.12 "$fe" junk
	via 127.0.0.12 "$fe" mdb any any-pw "SELECT USER()"
	expect_status 1
	expect_match "$OUT" "Host '127\.0\.0\.12' is blocked because of many connection errors" "third .12 client"
	via 127.0.0.11 "$fe" mdb any any-pw "SELECT USER()"
	expect_status 0
	expect_eq "$OUT" "any@127.0.0.11" ".11 client after .12 was blocked"
	# more checks from 127.0.0.10 after the failures: still passing
	n=$(checks10)
	wait_until 5 checks10_reach $((n + 3)) || fail "health checks from 127.0.0.10 stopped"
	expect_eq "$(server_field "$be" status)" UP "backend $be"
	expect_eq "$(server_field "$be" chkfail)" "$fail0" "backend $be chkfail"
	sql "FLUSH HOSTS"
}

@test "max_connect_errors=2: failed handshakes block the client, never HAProxy (v2)" {
	blocking "$FE_P10V2" P10V2
}

@test "max_connect_errors=2: failed handshakes block the client, never HAProxy (v1)" {
	blocking "$FE_P10V1" P10V1
}

# ---- control: the same MariaDB without the shim ----

@test "control, no shim: through HAProxy every client is HAProxy (localhost = 127.0.0.1, or 127.0.0.10)" {
	via 127.0.0.11 "$FE_N0" mdb any any-pw \
		"SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
	expect_status 0
	expect_match "$OUT" '^localhost:[0-9]+$' "PROCESSLIST.HOST of the .11 client"
	via 127.0.0.11 "$FE_N0_P10" mdb any any-pw \
		"SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
	expect_status 0
	expect_match "$OUT" '^127\.0\.0\.10:[0-9]+$' "PROCESSLIST.HOST of the .11 client via 127.0.0.10"
	via 127.0.0.11 "$FE_N0" mdb app app-pw "SELECT USER()"
	expect_status 1
	expect_match "$OUT" "Access denied for user 'app'@'localhost'" "the IP grant for .11"
	wait_until 10 server_is N0 UP || fail "backend N0: $(server_field N0 status)"
}

@test "control, no shim: a header breaks the server (clients and health checks fail)" {
	local fe
	for fe in "$FE_H0V2" "$FE_H0V1"; do
		via 127.0.0.11 "$fe" mdb any any-pw "SELECT USER()"
		expect_status 1
		# MariaDB 10.11 recognises the header and refuses it (proxy_protocol_networks unset)
		expect_eq "$OUT" "ERROR 1130 (HY000): Proxy header is not accepted from 127.0.0.1" "client error"
	done
	wait_until 10 server_is C0V2 DOWN || fail "backend C0V2: $(server_field C0V2 status)"
	wait_until 10 server_is C0V1 DOWN || fail "backend C0V1: $(server_field C0V1 status)"
	# the reason is MariaDB's 1130 "Proxy header is not accepted", or a reset when MariaDB
	# closes before HAProxy's check has read the refusal
	expect_log "$FT/haproxy/haproxy.err" 'Server C0V2/srv is DOWN, reason: (Layer7 wrong status, code: 1130|Socket error)'
	expect_log "$FT/haproxy/haproxy.err" 'Server C0V1/srv is DOWN, reason: (Layer7 wrong status, code: 1130|Socket error)'
}

@test "control, no shim: two failed handshakes block HAProxy's address for every client" {
	sql0 "FLUSH HOSTS"
	via 127.0.0.12 "$FE_N0_P10" junk
	via 127.0.0.12 "$FE_N0_P10" junk
	via 127.0.0.11 "$FE_N0_P10" mdb any any-pw "SELECT USER()"
	sql0 "FLUSH HOSTS"
	expect_status 1
	expect_match "$OUT" "Host '127\.0\.0\.10' is blocked because of many connection errors" ".11 client"
}
