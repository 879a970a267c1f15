#!/usr/bin/env bats
# Debian's HAProxy (not preloaded) in front of the preloaded test server: clients reach
# HAProxy from 127.0.0.11 and 127.0.0.12; the server must see each client's own address,
# not HAProxy's 127.0.0.1.

load helpers

setup_file() {
	[[ -x $HAPROXY ]] || skip "no $HAPROXY"
}

# through_haproxy SERVER-OPTIONS: two clients, each reported as itself.
through_haproxy() {
	local c11 c12
	start_server PROXYSHIM_TRUSTED=127.0.0.1 -- -n 2
	start_haproxy "$1"
	client 127.0.0.11 'hello from 11\r\n'
	c11=$CLIENT_LOCAL
	expect_reply "OK $c11"
	client 127.0.0.12 'hello from 12\r\n'
	c12=$CLIENT_LOCAL
	expect_reply "OK $c12"
	server_done
	expect_output "$(conn_line "$c11" 'hello from 11\r\n')" "$(conn_line "$c12" 'hello from 12\r\n')"
}

@test "haproxy send-proxy (v1)" {
	through_haproxy send-proxy
}

@test "haproxy send-proxy-v2" {
	through_haproxy send-proxy-v2
}

@test "haproxy send-proxy-v2 with proxy-v2-options crc32c" {
	through_haproxy "send-proxy-v2 proxy-v2-options crc32c"
}

@test "haproxy without send-proxy: the trusted source's connection is refused (require)" {
	start_server PROXYSHIM_TRUSTED=127.0.0.1 -- -n 1
	start_haproxy ""
	client 127.0.0.11 'hello from 11\r\n'
	expect_closed
	TARGET_PORT=$SERVER_PORT PROXY=127.0.0.1
	expect_next_served
}
