#!/usr/bin/env bats
# MariaDB reachable only through the proxy (PROXYSHIM_UNTRUSTED=reject, header required):
# the shim has the kernel hold each connection until it speaks (TCP_DEFER_ACCEPT), and
# MariaDB speaks first. HAProxy writes its header at once, so clients and health checks
# through it work as before; a client that connects directly sends nothing, is held by
# the kernel for 1 s, then closed, and never sees a greeting.

load helpers
load daemons

setup_file() {
	need_cmds mariadbd mariadb-install-db mariadb haproxy socat
	file_dir
	mkdir -p "$FT/db" "$FT/haproxy"
	ds_mariadb_init "$FT/db" || fail "mariadb-install-db failed: $(tail "$FT/db/install.log")"
	export MDB_PORT FE_V2 FE_V1
	MDB_PORT=$(free_port)
	ds_mariadb_start "$FT/db" "$MDB_PORT" 2 "${SHIM_ENV[@]}" PROXYSHIM_TRUSTED=127.0.0.1 \
		PROXYSHIM_UNTRUSTED=reject \
		PROXYSHIM_LOG="$FT/db/proxyshim.log" PROXYSHIM_LOG_LEVEL=debug
	file_track "$DS_PID"
	ds_mariadb_users "$FT/db"
	local h=$FT/haproxy chk="option mysql-check user haproxy_check"
	FE_V2=$(free_port) FE_V1=$(free_port)
	ds_haproxy_config "$h"
	ds_haproxy_route "$h" V2 "$FE_V2" "127.0.0.1:$MDB_PORT" "send-proxy-v2 check inter 200" "$chk"
	ds_haproxy_route "$h" V1 "$FE_V1" "127.0.0.1:$MDB_PORT" "send-proxy check inter 200" "$chk"
	ds_haproxy_start "$h"
	file_track "$DS_PID"
}

teardown_file() {
	file_cleanup
}

mdb() { ds_mariadb_client "$RELAY_PORT" "$@"; }

# checked BACKEND: HAProxy's last health check of BACKEND logged in (L7OK).
checked() { [[ $(ds_haproxy_server "$FT/haproxy" "$1" check_status) == L7OK ]]; }

@test "proxy only: the kernel holds MariaDB's connections until the header (TCP_DEFER_ACCEPT, logged)" {
	expect_log "$FT/db/proxyshim.log" "port $MDB_PORT: the kernel holds each connection until it speaks \(TCP_DEFER_ACCEPT, 1 s\)"
}

@test "proxy only: through HAProxy (v2 and v1) USER() names each client; health checks stay up" {
	local fe be
	for fe in "$FE_V2" "$FE_V1"; do
		via 127.0.0.11 "$fe" mdb app app-pw "SELECT USER()"
		expect_status 0
		expect_eq "$OUT" "app@127.0.0.11" "USER() through $fe"
	done
	for be in V2 V1; do
		wait_until 10 checked "$be" || fail "backend $be: $(ds_haproxy_server "$FT/haproxy" "$be" check_status)"
		expect_eq "$(ds_haproxy_server "$FT/haproxy" "$be" chkfail)" 0 "backend $be chkfail"
	done
}

@test "proxy only: a client connecting directly gets no greeting and is closed after the kernel's hold (1 s)" {
	local t0 t1 ms
	t0=$(date +%s%N)
	via 127.0.0.20 "$MDB_PORT" mdb any any-pw "SELECT 1"
	t1=$(date +%s%N)
	[[ $STATUS != 0 ]] || fail "a direct client got in: $OUT"
	expect_match "$OUT" "Lost connection|reading initial communication packet" "direct client's error"
	ms=$(((t1 - t0) / 1000000))
	((ms >= 900 && ms < 5000)) || fail "closed after $ms ms"
	expect_log "$FT/db/proxyshim.log" "untrusted 127\.0\.0\.20:[0-9]+: connection closed"
}
