#!/usr/bin/env bats
# lighttpd behind HAProxy: Debian's lighttpd, unmodified (its mod_extforward, which can
# take a PROXY header itself, is not loaded), preloaded with the shim, in the foreground
# (-D) with a configuration of our own, as www-data after binding. HAProxy connects from
# 127.0.0.10 (trusted) with send-proxy-v2 or send-proxy; curl reaches HAProxy from
# 127.0.0.77. The assertion is on lighttpd's own access log (mod_accesslog, %a).

load helpers
load daemons

setup_file() {
	need_cmds lighttpd haproxy curl
	id www-data >/dev/null 2>&1 || skip "no www-data user"
	file_dir
	# lighttpd opens its logs as www-data: a directory it can reach (bats' are root's)
	export LT LT_PORT LT0_PORT FE_V2 FE_V1 FE_N0
	LT=$(file_world_dir)
	mkdir -p "$LT/shim" "$LT/plain"
	LT_PORT=$(free_port)
	ds_lighttpd_start "$LT/shim" "$LT_PORT" \
		LD_PRELOAD="${PS_ASAN_RUNTIME:+$PS_ASAN_RUNTIME }$LT/libproxyshim.so" PROXYSHIM_TRUSTED=127.0.0.10 \
		PROXYSHIM_LOG="$LT/shim/proxyshim.log" PROXYSHIM_LOG_LEVEL=info || fail "lighttpd did not start"
	file_track "$DS_PID"
	LT0_PORT=$(free_port)
	ds_lighttpd_start "$LT/plain" "$LT0_PORT" || fail "lighttpd (plain) did not start"
	file_track "$DS_PID"
	file_haproxy "V2:$LT_PORT:send-proxy-v2" \
		"V1:$LT_PORT:send-proxy" \
		"N0:$LT0_PORT:"
}

teardown_file() {
	file_cleanup
}

eval "daemons_$(declare -f teardown)"
teardown() {
	[[ ${BATS_TEST_COMPLETED:-} == 1 ]] || dump_dir "$LT"
	daemons_teardown
}

# get SOURCE PORT: curl from SOURCE to 127.0.0.1:PORT/ (CODE, OUT, LOCAL as curl's own
# address:port), then waits (2 s) for the access log line of DIR: "%a 200 /".
get() {
	local res
	res=$(curl -sS -m 5 --interface "$1" -o "$T/body" -w '%{http_code} %{local_ip}:%{local_port}' \
		"http://127.0.0.1:$2/" 2>"$T/curl.err") || true
	CODE=${res%% *} LOCAL=${res#* }
	OUT=$(cat "$T/body" 2>/dev/null)
}

logged() {
	ds_wait 2 grep -qxF "$2" "$LT/$1/lighttpd/access.log" ||
		fail "no line '$2' in the access log:" "$(tail -n 5 "$LT/$1/lighttpd/access.log")"
}

@test "lighttpd, send-proxy-v2: the access log shows the client" {
	get 127.0.0.77 "$FE_V2"
	expect_eq "$CODE $OUT" "200 hello"
	logged shim "127.0.0.77 200 /"
	expect_log "$LT/shim/proxyshim.log" "proxy 127\.0\.0\.10:[0-9]+ -> client $LOCAL\$"
}

@test "lighttpd, send-proxy (v1): the access log shows the client" {
	get 127.0.0.78 "$FE_V1"
	expect_eq "$CODE $OUT" "200 hello"
	logged shim "127.0.0.78 200 /"
	expect_log "$LT/shim/proxyshim.log" "proxy 127\.0\.0\.10:[0-9]+ -> client $LOCAL\$"
}

@test "lighttpd: a direct client from an untrusted address is logged as itself" {
	get 127.0.0.79 "$LT_PORT"
	expect_eq "$CODE $OUT" "200 hello"
	logged shim "127.0.0.79 200 /"
}

@test "control, no shim: through HAProxy lighttpd logs HAProxy (127.0.0.10)" {
	get 127.0.0.77 "$FE_N0"
	expect_eq "$CODE $OUT" "200 hello"
	logged plain "127.0.0.10 200 /"
	! grep -q '^127\.0\.0\.77 ' "$LT/plain/lighttpd/access.log"
}
