#!/usr/bin/env bats
# PostgreSQL behind HAProxy: Debian's postmaster, unmodified (it has no PROXY protocol
# of its own), preloaded with the shim, as the postgres user, its cluster in a temp dir.
# HAProxy connects from 127.0.0.10 (the one trusted address) with send-proxy-v2 or
# send-proxy; clients reach HAProxy from 127.0.0.77 (allowed by pg_hba.conf) or
# 127.0.0.78 (rejected) through one-shot socat relays. Every assertion is on
# PostgreSQL's own view: inet_client_addr(), pg_stat_activity, pg_hba.conf decisions,
# its log_connections lines, and its postmaster's answers to reload and fast shutdown,
# which it handles only inside select(): the shim must never keep it in accept.

load helpers
load daemons

hba() {
	cat <<-EOF
		local all all trust
		host all all 127.0.0.77/32 trust
		host all all 127.0.0.78/32 reject
		host all all 127.0.0.1/32 trust
	EOF
}

setup_file() {
	need_cmds haproxy socat setpriv
	[[ -x $(ds_pg_bin)/postgres ]] || skip "postgresql not installed (scripts/install-deps)"
	id postgres >/dev/null 2>&1 || skip "no postgres user (scripts/install-deps)"
	# With the ASan runtime preloaded (make sanitize), Debian's postgres hangs at start
	# (`postgres --version` too), with or without the shim, as curl does (send.bash).
	if [[ -n ${PS_ASAN_RUNTIME:-} ]] &&
		! timeout 3 env LD_PRELOAD="$PS_ASAN_RUNTIME" "$(ds_pg_bin)/postgres" --version >/dev/null 2>&1; then
		file_skip "postgres hangs at start with the ASan runtime preloaded (not the shim: libasan alone does it)"
		return 0
	fi
	file_dir
	export PG PG_TEMPLATE PG_PORT PG_PRELOAD
	PG_TEMPLATE=$(file_world_dir)  # the postgres user must reach it
	ds_postgres_init "$PG_TEMPLATE" || fail "initdb failed: $(tail "$PG_TEMPLATE/initdb.log")"
	hba >"$PG_TEMPLATE/data/pg_hba.conf"
	PG_PRELOAD="${PS_ASAN_RUNTIME:+$PS_ASAN_RUNTIME }$PG_TEMPLATE/libproxyshim.so"
	PG=$(pg_start_copy) || fail "postgres did not start"
	PG_PORT=$(<"$PG/port")

	file_haproxy "V2:$PG_PORT:send-proxy-v2" \
		"V1:$PG_PORT:send-proxy"
}

teardown_file() {
	file_cleanup
}

# pg_start_copy: a postmaster under the shim on a copy of the template cluster, on a
# free port; prints its directory (the port in DIR/port). Recorded for teardown.
pg_start_copy() {
	local d port
	d=$(file_world_dir)
	cp -a "$PG_TEMPLATE/data" "$d/"
	chown postgres:postgres "$d"
	port=$(free_port)
	echo "$port" >"$d/port"
	ds_postgres_start "$d" "$port" LD_PRELOAD="$PG_PRELOAD" PROXYSHIM_TRUSTED=127.0.0.10 \
		PROXYSHIM_TIMEOUT_MS=3000 PROXYSHIM_LOG_LEVEL=info >&2
	local st=$?
	file_track "$DS_PID"  # stopped at the end even if it never came up
	((st == 0)) || return 1
	echo "$DS_PID" >"$d/pid"
	echo "$d"
}

# q FRONTEND SOURCE SQL: psql from SOURCE through HAProxy's FRONTEND port (OUT, STATUS).
q() { via "$2" "$1" psql_relay "$3"; }
psql_relay() { ds_psql "$RELAY_PORT" "$1"; }

pg_log() { cat "$1/postgres.err"; }

@test "postgres behind HAProxy send-proxy-v2: inet_client_addr() and pg_stat_activity show the client" {
	q "$FE_V2" 127.0.0.77 "SELECT inet_client_addr(), (SELECT client_addr FROM pg_stat_activity WHERE pid = pg_backend_pid())"
	expect_status 0
	expect_eq "$OUT" "127.0.0.77|127.0.0.77"
}

@test "postgres behind HAProxy send-proxy (v1): inet_client_addr() is the client, its port the relay's" {
	q "$FE_V1" 127.0.0.77 "SELECT host(inet_client_addr()) || ':' || inet_client_port()"
	expect_status 0
	expect_eq "$OUT" "$RELAY_SRC"
}

@test "postgres: a pg_hba.conf rule on the client's address allows 127.0.0.77 and rejects 127.0.0.78" {
	q "$FE_V2" 127.0.0.78 "SELECT 1"
	expect_status 2
	expect_match "$OUT" 'pg_hba.conf rejects connection for host "127.0.0.78"'
	q "$FE_V2" 127.0.0.77 "SELECT 1"
	expect_status 0
}

@test "postgres: log_connections names the client, never HAProxy" {
	q "$FE_V2" 127.0.0.77 "SELECT 1"
	expect_status 0
	local port=${RELAY_SRC##*:}
	grep -q "connection received: host=127.0.0.77 port=$port" "$PG/postgres.err" ||
		fail "no log line for 127.0.0.77:$port:" "$(grep 'connection received' "$PG/postgres.err")"
	! grep -q "connection received: host=127.0.0.10" "$PG/postgres.err"
}

@test "postgres: a direct client from an untrusted address is served as itself" {
	OUT=$(ds_psql "$PG_PORT" "SELECT inet_client_addr()")
	expect_eq "$OUT" "127.0.0.1"
}

# The postmaster takes signals only inside select(); before the fix a trusted
# connection without a header left it blocked in accept until another came.
@test "postgres: a trusted connection without a header, then reload is logged within 1 s and a client served" {
	local d pid
	d=$(pg_start_copy)
	pid=$(<"$d/pid")
	printf 'junk\n' | "$RAWSEND" -s 127.0.0.10 -r -t 2000 127.0.0.1 "$(<"$d/port")" >/dev/null || true
	sleep 0.2
	kill -HUP "$pid"
	ds_wait 1 grep -q "received SIGHUP, reloading configuration files" "$d/postgres.err" ||
		fail "reload not logged within 1 s:" "$(tail "$d/postgres.err")"
	OUT=$(ds_psql "$(<"$d/port")" "SELECT 1")
	expect_eq "$OUT" 1
	ds_stop "$pid"
}

@test "postgres: a silent trusted connection holds neither a client nor reload nor fast shutdown (within 3 s)" {
	local d pid port
	d=$(pg_start_copy)
	pid=$(<"$d/pid")
	port=$(<"$d/port")
	"$PS_BUILD/hammer" -s 127.0.0.10 -p 0 -e keep -t 8000 127.0.0.1 "$port" </dev/null >/dev/null 2>&1 &
	track $!
	sleep 0.3
	local t0=$SECONDS
	OUT=$(ds_psql "$port" "SELECT 1")
	expect_eq "$OUT" 1
	kill -HUP "$pid"
	ds_wait 1 grep -q "received SIGHUP, reloading configuration files" "$d/postgres.err" ||
		fail "reload not logged within 1 s:" "$(tail "$d/postgres.err")"
	kill -INT "$pid"
	ds_wait 3 ds_dead "$pid" || fail "fast shutdown took more than 3 s:" "$(tail "$d/postgres.err")"
	((SECONDS - t0 < 3))
}

@test "control: postgres behind HAProxy without the shim sees HAProxy (127.0.0.10)" {
	local d port
	d=$(file_world_dir)
	cp -a "$PG_TEMPLATE/data" "$d/"
	chown postgres:postgres "$d"
	echo "host all all 127.0.0.10/32 trust" >>"$d/data/pg_hba.conf"
	port=$(free_port)
	ds_postgres_start "$d" "$port"
	track "$DS_PID"
	ds_alive "$DS_PID" || fail "postgres did not start"
	local h=$T/haproxy
	mkdir -p "$h"
	local fe
	fe=$(free_port)
	ds_haproxy_config "$h"
	ds_haproxy_route "$h" N0 "$fe" "127.0.0.1:$port" "source 127.0.0.10"
	ds_haproxy_start "$h"
	track "$DS_PID"
	q "$fe" 127.0.0.77 "SELECT inet_client_addr()"
	expect_eq "$OUT" "127.0.0.10"
}
