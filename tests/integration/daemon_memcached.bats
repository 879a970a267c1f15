#!/usr/bin/env bats
# memcached behind HAProxy: Debian's memcached (no PROXY protocol of its own), with 4
# worker threads (the listener thread accepts, workers serve), preloaded with the shim,
# as nobody. HAProxy connects from 127.0.0.10 (trusted) with send-proxy-v2 or
# send-proxy; clients reach HAProxy from chosen loopback sources (socat binds them) and
# hold their connections open. The assertion is on memcached's own `stats conns`: each
# open connection's "addr tcp:ADDR:PORT".

load helpers
load daemons

setup_file() {
	need_cmds memcached haproxy socat
	id nobody >/dev/null 2>&1 || skip "no nobody user"
	file_dir
	export MC_PORT MC0_PORT FE_V2 FE_V1 FE_N0
	MC_PORT=$(free_port)
	ds_memcached_start "$FT/shim" "$MC_PORT" "${SHIM_ENV[@]}" PROXYSHIM_TRUSTED=127.0.0.10 \
		PROXYSHIM_LOG="$FT/proxyshim.log" PROXYSHIM_LOG_LEVEL=info || fail "memcached did not start"
	file_track "$DS_PID"
	MC0_PORT=$(free_port)
	ds_memcached_start "$FT/plain" "$MC0_PORT" || fail "memcached (plain) did not start"
	file_track "$DS_PID"
	file_haproxy "V2:$MC_PORT:send-proxy-v2" \
		"V1:$MC_PORT:send-proxy" \
		"N0:$MC0_PORT:"
}

teardown_file() {
	file_cleanup
}

# hold NAME SOURCE PORT: a client from SOURCE to 127.0.0.1:PORT that sends `version`,
# reads the reply into $T/NAME.reply and keeps the connection open (up to 20 s; stopped
# in teardown). Sets HELD to the client's own address:port once it replied.
hold() {
	printf '#!/bin/sh\nprintf "version\\r\\n"\nread -r r\necho "$r" >%s\nexec sleep 20\n' \
		"$T/$1.reply" >"$T/$1.sh"
	chmod 755 "$T/$1.sh"
	socat -d -d EXEC:"$T/$1.sh" "TCP:127.0.0.1:$3,bind=$2" 2>"$T/$1.err" 3>&- &
	track $!
	ds_wait 5 grep -q '^VERSION ' "$T/$1.reply" || fail "client $1 got no reply:" "$(cat "$T/$1.err")"
	HELD=$(ds_relay_source "$T/$1.err")
}

# mc SOURCE PORT COMMAND: one command from SOURCE; OUT is the reply up to END, ME the
# client's own address:port.
mc() {
	OUT=$(printf '%s\r\nquit\r\n' "$3" | socat -d -d -t 2 - "TCP:127.0.0.1:$2,bind=$1" 2>"$T/mc.err" | tr -d '\r')
	ME=$(ds_relay_source "$T/mc.err")
}

# conns PORT: the "addr" of every connection in `stats conns`, asked directly from
# 127.0.0.79 (untrusted), sorted.
conns() {
	mc 127.0.0.79 "$1" "stats conns"
	sed -n 's/^STAT [0-9]*:addr tcp:\(.*\)$/\1/p' <<<"$OUT" | sort
}

@test "memcached, send-proxy-v2: stats conns shows the held connection as its client" {
	hold c77 127.0.0.77 "$FE_V2"
	expect_match "$HELD" '^127\.0\.0\.77:[0-9]+$' "client address"
	local all
	all=$(conns "$MC_PORT")
	grep -qxF "$HELD" <<<"$all" || fail "no connection $HELD in stats conns:" "$all"
	! grep -q '^127\.0\.0\.10:' <<<"$all" || fail "HAProxy's address in stats conns:" "$all"
}

@test "memcached, send-proxy (v1): stats conns shows the held connection as its client" {
	hold c78 127.0.0.78 "$FE_V1"
	local all
	all=$(conns "$MC_PORT")
	grep -qxF "$HELD" <<<"$all" || fail "no connection $HELD in stats conns:" "$all"
	! grep -q '^127\.0\.0\.10:' <<<"$all" || fail "HAProxy's address in stats conns:" "$all"
}

@test "memcached: 8 connections held at once over 4 worker threads, v2 and v1, each its own client" {
	local i want=() all
	for i in 1 2 3 4 5 6 7 8; do
		if ((i % 2)); then hold "m$i" "127.0.0.$((40 + i))" "$FE_V2"; else hold "m$i" "127.0.0.$((40 + i))" "$FE_V1"; fi
		want+=("$HELD")
	done
	all=$(conns "$MC_PORT")
	for i in "${want[@]}"; do
		grep -qxF "$i" <<<"$all" || fail "no connection $i in stats conns:" "$all"
	done
	expect_eq "$(grep -c '^127\.0\.0\.4[1-8]:' <<<"$all")" 8 "connections from .41-.48"
}

@test "memcached: a direct client from an untrusted address is seen as itself" {
	mc 127.0.0.79 "$MC_PORT" "stats conns"
	expect_match "$ME" '^127\.0\.0\.79:[0-9]+$' "client address"
	grep -qx "STAT [0-9]*:addr tcp:$ME" <<<"$OUT" || fail "no line for $ME:" "$OUT"
}

@test "control, no shim: through HAProxy memcached sees HAProxy (127.0.0.10)" {
	hold n77 127.0.0.77 "$FE_N0"
	local all
	all=$(conns "$MC0_PORT")
	! grep -qxF "$HELD" <<<"$all" || fail "the client itself in stats conns without the shim"
	grep -q '^127\.0\.0\.10:' <<<"$all" || fail "no connection from 127.0.0.10:" "$all"
}
