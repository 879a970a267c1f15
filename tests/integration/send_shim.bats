#!/usr/bin/env bats
# Sending side against the project's own receiving side: build/testserver under
# libproxyshim.so (PROXYSHIM_TRUSTED=127.0.0.1 or ::1, default policy `require`: a trusted
# peer that sends no header is closed, so every served connection proves a header came)
# <- rawsend under libproxyshim-client.so. The server's accept= shows the header's
# source; data= shows the application bytes, which must follow the header untouched.
# Also: bad PROXYSHIM_SEND_* values stop the program at load time.

load helpers
load daemons
load send

setup_file() {
	need_client
}

PAYLOAD='payload \x00\x01\xff\r\n end'

# shim_client HOST: rawsend (under the client shim, with the PROXYSHIM_SEND_* of the
# caller's SEND_ENV) from 127.0.0.1 or ::1 to HOST:$SERVER_PORT with $PAYLOAD.
shim_client() {
	local host=$1 n=$((++NCLIENT)) src=127.0.0.1
	[[ $host == *:* ]] && src=::1
	emit "$PAYLOAD" >"$T/payload.$n"
	CLIENT_STATUS=0
	under_client "${SEND_ENV[@]}" -- "$RAWSEND" -s "$src" -r -v "$host" "$SERVER_PORT" \
		<"$T/payload.$n" >"$T/reply.$n" 2>"$T/client.$n.err" || CLIENT_STATUS=$?
	REPLY=$(<"$T/reply.$n")
	CLIENT_LOCAL=$(sed -n 's/^rawsend: local=//p' "$T/client.$n.err")
}

@test "own receiving shim, IPv4, v1 and v2, fixed source: accept= is 127.0.0.55:4321" {
	local ver
	for ver in 1 2; do
		shim_server 127.0.0.1 -n 1
		SEND_ENV=(PROXYSHIM_SEND_TO="127.0.0.1:$SERVER_PORT" PROXYSHIM_SEND_VERSION=$ver
			PROXYSHIM_SEND_SOURCE=127.0.0.55:4321)
		shim_client 127.0.0.1
		expect_reply "OK 127.0.0.55:4321"
		server_done
		expect_output "$(conn_line 127.0.0.55:4321 "$PAYLOAD")"
	done
}

@test "own receiving shim, IPv4, v1 and v2, source local: accept= is the client's own address" {
	local ver
	for ver in 1 2; do
		shim_server 127.0.0.1 -n 1
		SEND_ENV=(PROXYSHIM_SEND_TO="127.0.0.1:$SERVER_PORT" PROXYSHIM_SEND_VERSION=$ver)
		shim_client 127.0.0.1
		expect_match "$CLIENT_LOCAL" '^127\.0\.0\.1:[0-9]+$' "rawsend's local address"
		expect_reply "OK $CLIENT_LOCAL"
		server_done
		expect_output "$(conn_line "$CLIENT_LOCAL" "$PAYLOAD")"
	done
}

@test "own receiving shim, control: no header for an unlisted destination, so the trusted peer is closed (policy require)" {
	shim_server 127.0.0.1 -n 1
	SEND_ENV=(PROXYSHIM_SEND_TO="127.0.0.2:$SERVER_PORT")   # not this destination
	shim_client 127.0.0.1
	expect_closed
	[[ ! -s $T/server.out ]] || fail "the server saw the connection: $(cat "$T/server.out")"
	# and the next one, with a header, is served (which also ends the server)
	SEND_ENV=(PROXYSHIM_SEND_TO="127.0.0.1:$SERVER_PORT" PROXYSHIM_SEND_SOURCE=127.0.0.55:4321)
	shim_client 127.0.0.1
	expect_reply "OK 127.0.0.55:4321"
	server_done
	expect_output "$(conn_line 127.0.0.55:4321 "$PAYLOAD")"
}

@test "own receiving shim, IPv6 (::1), v1 and v2, SEND_TO='[::1]:P', fixed source [2001:db8::55]:4321" {
	local ver
	for ver in 1 2; do
		shim_server ::1 -l ::1 -n 1
		SEND_ENV=(PROXYSHIM_SEND_TO="[::1]:$SERVER_PORT" PROXYSHIM_SEND_VERSION=$ver
			PROXYSHIM_SEND_SOURCE="[2001:db8::55]:4321")
		shim_client ::1
		expect_reply "OK [2001:db8::55]:4321"
		server_done
		expect_output "$(conn_line "[2001:db8::55]:4321" "$PAYLOAD" "[::1]:$SERVER_PORT")"
	done
}

@test "own receiving shim, IPv6 (::1), v1 and v2, source local: accept= is the client's [::1]:port" {
	local ver
	for ver in 1 2; do
		shim_server ::1 -l ::1 -n 1
		SEND_ENV=(PROXYSHIM_SEND_TO="[::1]:$SERVER_PORT" PROXYSHIM_SEND_VERSION=$ver)
		shim_client ::1
		expect_match "$CLIENT_LOCAL" '^\[::1\]:[0-9]+$' "rawsend's local address"
		expect_reply "OK $CLIENT_LOCAL"
		server_done
		expect_output "$(conn_line "$CLIENT_LOCAL" "$PAYLOAD" "[::1]:$SERVER_PORT")"
	done
}

@test "own receiving shim, destination forms: ADDR, CIDR, '*', a list, ::1 as ADDR and as CIDR" {
	local to
	for to in 127.0.0.1 127.0.0.0/8 '*' '10.1.2.3,[::1]:1,127.0.0.0/24'; do
		shim_server 127.0.0.1 -n 1
		SEND_ENV=(PROXYSHIM_SEND_TO="$to" PROXYSHIM_SEND_SOURCE=127.0.0.55:4321)
		shim_client 127.0.0.1
		expect_reply "OK 127.0.0.55:4321" || fail "PROXYSHIM_SEND_TO='$to'"
		server_done
	done
	for to in ::1 ::1/128 '*' ::/0; do
		shim_server ::1 -l ::1 -n 1
		SEND_ENV=(PROXYSHIM_SEND_TO="$to" PROXYSHIM_SEND_SOURCE=[2001:db8::55]:4321)
		shim_client ::1
		expect_reply "OK [2001:db8::55]:4321" || fail "PROXYSHIM_SEND_TO='$to'"
		server_done
	done
}

# ---- bad values ----

# bad VAR VALUE: the program (touch) does not run, exit status 1, exactly one line
# `proxyshim: VAR: "VALUE": REASON` on stderr; the same with both libraries preloaded,
# in either order.
bad() {
	local var=$1 val=$2 pre err lines
	for pre in "$PS_CLIENT_PRELOAD" "$(preload "$PS_RECV_SO" "$PS_CLIENT_SO")" \
		"$(preload "$PS_CLIENT_SO" "$PS_RECV_SO")"; do
		rm -f "$T/ran"
		STATUS=0
		under_preload "$pre" PROXYSHIM_SEND_TO=127.0.0.1 "$var=$val" -- \
			touch "$T/ran" >"$T/bad.out" 2>"$T/bad.err" || STATUS=$?
		err=$(<"$T/bad.err")
		lines=$(wc -l <"$T/bad.err")
		[[ $STATUS == 1 && ! -e $T/ran && $lines == 1 && -z $(<"$T/bad.out") &&
			$err == "proxyshim: $var: \"$val\": "?* ]] ||
			fail "LD_PRELOAD='$pre' $var='$val': status $STATUS, ran: $([[ -e $T/ran ]] && echo yes || echo no)," \
				"stderr ($lines lines):" "$err"
	done
}

@test "bad PROXYSHIM_SEND_VERSION=3: exit 1, one line 'proxyshim: PROXYSHIM_SEND_VERSION: \"3\": …'" {
	bad PROXYSHIM_SEND_VERSION 3
}

@test "bad PROXYSHIM_SEND_TO=1.2.3.4:0: exit 1, one line" {
	bad PROXYSHIM_SEND_TO 1.2.3.4:0
}

@test "bad PROXYSHIM_SEND_SOURCE=nowhere: exit 1, one line" {
	bad PROXYSHIM_SEND_SOURCE nowhere
}

@test "more bad values: SEND_TO empty, 300.1.1.1, [::1]:65536, 127.0.0.1/33; SEND_VERSION empty, v2; SEND_SOURCE 1.2.3.4, 1.2.3.4:0" {
	local spec
	for spec in PROXYSHIM_SEND_TO= PROXYSHIM_SEND_TO=300.1.1.1 'PROXYSHIM_SEND_TO=[::1]:65536' \
		PROXYSHIM_SEND_TO=127.0.0.1/33 PROXYSHIM_SEND_VERSION= PROXYSHIM_SEND_VERSION=v2 \
		PROXYSHIM_SEND_SOURCE=1.2.3.4 PROXYSHIM_SEND_SOURCE=1.2.3.4:0; do
		bad "${spec%%=*}" "${spec#*=}"
	done
}
