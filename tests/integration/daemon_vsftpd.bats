#!/usr/bin/env bats
# vsftpd behind HAProxy: Debian's vsftpd, standalone (it forks a process per
# connection), anonymous and read-only, its files in a temp dir. HAProxy carries the
# control connection only, from 127.0.0.10 (the trusted address), with send-proxy-v2
# or send-proxy; passive data connections go from the client straight to vsftpd's
# passive ports (curl --interface binds both to the client's source address). The
# assertions are on vsftpd's own records (its protocol log and xferlog) and on the
# passive transfers, which vsftpd allows only from the address it believes the control
# connection came from (pasv_promiscuous=NO).
#
# PROXYSHIM_PORTS names the control port alone: a data connection never carries a
# header, so a client whose address is trusted (one on the proxy's own host) would
# have its passive connections closed for want of one if the passive ports were
# selected. The last test shows that with the shim applied to every port.

load helpers
load daemons

setup_file() {
	if [[ -n ${PS_ASAN_RUNTIME:-} ]]; then
		file_skip "under the ASan runtime: vsftpd confines its processes with a seccomp filter that the ASan runtime breaks"
		return 0
	fi
	need_cmds vsftpd haproxy curl
	file_dir
	export FTP_PORT FTP_OFF_PORT FTP_ALL_PORT FE_V2 FE_V1 FE_OFF FE_PLAIN FE_ALL
	local base
	FTP_PORT=$(free_port)
	base=$(ds_free_port)
	ds_vsftpd_start "$FT/on" "$FTP_PORT" "$base" $((base + 4)) LD_PRELOAD="$PS_PRELOAD" \
		PROXYSHIM_TRUSTED=127.0.0.10 PROXYSHIM_PORTS="$FTP_PORT" PROXYSHIM_LOG_LEVEL=info
	file_track "$DS_PID"
	# the control: no shim
	FTP_OFF_PORT=$(free_port)
	base=$(ds_free_port)
	ds_vsftpd_start "$FT/off" "$FTP_OFF_PORT" "$base" $((base + 4))
	file_track "$DS_PID"
	# the shim on every port (PROXYSHIM_PORTS unset)
	FTP_ALL_PORT=$(free_port)
	base=$(ds_free_port)
	ds_vsftpd_start "$FT/all" "$FTP_ALL_PORT" "$base" $((base + 4)) LD_PRELOAD="$PS_PRELOAD" \
		PROXYSHIM_TRUSTED=127.0.0.10 PROXYSHIM_TIMEOUT_MS=1000 PROXYSHIM_LOG_LEVEL=info
	file_track "$DS_PID"

	file_haproxy "V2:$FTP_PORT:send-proxy-v2" \
		"V1:$FTP_PORT:send-proxy" \
		"OFF:$FTP_OFF_PORT:send-proxy" \
		"PLAIN:$FTP_OFF_PORT:" \
		"ALL:$FTP_ALL_PORT:send-proxy-v2"
}

teardown_file() {
	file_cleanup
}

# ftp SOURCE PORT PATH [CURL-OPTIONS...]: curl from SOURCE (control and data) to
# 127.0.0.1:PORT, passive mode (EPSV, then PASV). Sets OUT and STATUS.
ftp() {
	local src=$1 port=$2 path=$3
	shift 3
	STATUS=0
	OUT=$(curl -sS --max-time 10 --ftp-pasv --interface "$src" "$@" \
		"ftp://127.0.0.1:$port/$path" 2>&1) || STATUS=$?
	printf '%s\n' "curl $src -> $port/$path: status $STATUS" "$OUT" >>"$T/clients.log"
}

vlog() { cat "$FT/$1/vsftpd/vsftpd.log"; }

@test "vsftpd behind HAProxy send-proxy-v2: its log names the client; a passive (EPSV) listing works" {
	ftp 127.0.0.77 "$FE_V2" ""
	expect_status 0
	expect_match "$OUT" 'file\.txt'
	grep -q 'CONNECT: Client "127.0.0.77"' "$FT/on/vsftpd/vsftpd.log" || fail "no CONNECT line for 127.0.0.77:" "$(vlog on)"
	grep -q 'OK LOGIN: Client "127.0.0.77"' "$FT/on/vsftpd/vsftpd.log" || fail "no login of 127.0.0.77:" "$(vlog on)"
	grep -q '"LIST"' "$FT/on/vsftpd/vsftpd.log"
	! grep -q '127\.0\.0\.10' "$FT/on/vsftpd/vsftpd.log" || fail "HAProxy's address in the log:" "$(vlog on)"
}

@test "vsftpd behind HAProxy send-proxy (v1): a PASV download, and xferlog names the client" {
	ftp 127.0.0.77 "$FE_V1" file.txt --disable-epsv
	expect_status 0
	expect_eq "$OUT" "hello over ftp"
	grep -q '"PASV"' "$FT/on/vsftpd/vsftpd.log" || fail "no PASV command logged:" "$(vlog on)"
	grep -Eq ' 127\.0\.0\.77 15 /file\.txt b _ o a ' "$FT/on/vsftpd/xferlog" ||
		fail "xferlog:" "$(cat "$FT/on/vsftpd/xferlog")"
	grep -q 'OK DOWNLOAD: Client "127.0.0.77", "/file.txt", 15 bytes' "$FT/on/vsftpd/vsftpd.log"
	! grep -q '127\.0\.0\.10' "$FT/on/vsftpd/vsftpd.log" "$FT/on/vsftpd/xferlog"
}

@test "vsftpd under the shim: an untrusted direct client is served as itself" {
	ftp 127.0.0.20 "$FTP_PORT" file.txt
	expect_status 0
	expect_eq "$OUT" "hello over ftp"
	grep -q 'OK DOWNLOAD: Client "127.0.0.20", "/file.txt"' "$FT/on/vsftpd/vsftpd.log" ||
		fail "no download by 127.0.0.20:" "$(vlog on)"
}

@test "vsftpd under the shim: a client on the proxy's own address through HAProxy is served (data ports not selected)" {
	ftp 127.0.0.10 "$FE_V2" file.txt
	expect_status 0
	expect_eq "$OUT" "hello over ftp"
}

@test "vsftpd without the shim (control): it logs HAProxy's 127.0.0.10 and refuses the client's data connection" {
	ftp 127.0.0.77 "$FE_PLAIN" file.txt
	[[ $STATUS != 0 ]] || fail "curl succeeded without the shim: $OUT"
	grep -q 'CONNECT: Client "127.0.0.10"' "$FT/off/vsftpd/vsftpd.log" || fail "$(vlog off)"
	grep -q 'Client "127.0.0.10", "425 Security: Bad IP connecting."' "$FT/off/vsftpd/vsftpd.log" ||
		fail "$(vlog off)"
	! grep -q 'Client "127.0.0.77"' "$FT/off/vsftpd/vsftpd.log"
}

@test "vsftpd without the shim (control): HAProxy's send-proxy header is taken for an FTP command" {
	ftp 127.0.0.77 "$FE_OFF" file.txt
	expect_match "$OUT" 'Access denied: 530'
	grep -q 'FTP command: Client "127.0.0.10", "PROXY TCP4 127.0.0.77 ' "$FT/off/vsftpd/vsftpd.log" ||
		fail "$(vlog off)"
	! grep -q 'Client "127.0.0.77"' "$FT/off/vsftpd/vsftpd.log"
}

# vsftpd polls its passive listener, then accepts on it non-blocking: the shim keeps the
# headerless connection aside for its header and returns EAGAIN, and vsftpd answers 425
# at once and closes the listener (which releases the kept connection, without a log
# line of the shim's).
@test "vsftpd with the shim on every port: a trusted client's headerless data connection is taken for a proxy's, the transfer fails" {
	ftp 127.0.0.77 "$FE_ALL" file.txt
	expect_status 0
	expect_eq "$OUT" "hello over ftp"
	ftp 127.0.0.10 "$FE_ALL" file.txt
	[[ $STATUS != 0 ]] || fail "transfer succeeded: $OUT"
	expect_match "$OUT" 'RETR response: 425'
	grep -q 'Client "127.0.0.10", "425 Failed to establish connection."' "$FT/all/vsftpd/vsftpd.log" ||
		fail "$(vlog all)"
}
