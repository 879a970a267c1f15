#!/usr/bin/env bats
# UDP, receiving side: on a socket bound to a port of
# PROXYSHIM_UDP_PORTS, the recv family strips the v2 header of a trusted proxy's datagram
# and reports the header's source; refused datagrams never reach the application (not
# even as readiness); replies to an introduced client go back to its proxy.
#
# The server is tests/helpers/udpsrv (one line per datagram: from= len= flags= [dst=]
# payload=, see its header comment), the proxy is tests/helpers/udpsend (headers built
# from -H CLIENT,DEST), the load is tests/helpers/udpstorm. Every address, including
# those inside headers, is a loopback address (127.0.0.0/8, ::1): a bug that sends a
# reply to the address a header claims stays on this machine.

load helpers
load udp

# ---- every mode: source and payload ----

@test "every, IPv4: each datagram reports its header's client, payload stripped" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 3
	usend $PROXY -H "$(hdst $C11)" -H "$(hdst $C12)" -H "$(hdst $C13)" -- \
		'hello' 'bin\x00\r\n\xff' 'PROXY TCP4 127.0.0.66 127.0.0.1 1 2\r\n'
	srv_done
	expect_srv "$(dline $C11 hello)" "$(dline $C12 'bin\x00\r\n\xff')" \
		"$(dline $C13 'PROXY TCP4 127.0.0.66 127.0.0.1 1 2\r\n')"
}

@test "every, IPv6 (::1): the header's client is reported, payload stripped" {
	udp_start -6 PROXYSHIM_TRUSTED=::1 -- -n 2
	usend ::1 -H "$(hdst '[::1]:10011')" -H "$(hdst '[::1]:10012')" -- hello 'x\x00y'
	srv_done
	expect_srv "$(dline '[::1]:10011' hello)" "$(dline '[::1]:10012' 'x\x00y')"
}

@test "every: an IPv4 client on a dual-stack IPv6 socket is reported as ::ffff:a.b.c.d" {
	# as for TCP (README): IPv4 addresses on an IPv6 socket are v4-mapped
	udp_start -6 PROXYSHIM_TRUSTED=$PROXY -- -l :: -n 1
	SRV_ADDR=127.0.0.1
	usend $PROXY -H "$(hdst $C11)" -- hello
	srv_done
	expect_srv "$(dline '[::ffff:127.0.0.11]:10011' hello)"
}

@test "every: TLVs and a correct CRC32C are accepted and stripped with the header" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2
	usend $PROXY -H "$(hdst $C11)" -T "$(tlv 04 000000)$(tlv_str 05 id-1)" -- one
	usend $PROXY -H "$(hdst $C12)" -K -- two
	srv_done
	expect_srv "$(dline $C11 one)" "$(dline $C12 two)"
}

@test "v2 LOCAL (with or without an address block) keeps the proxy's real source" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2
	usend $PROXY:$sp -L -- one
	usend $PROXY:$sp -L -H "$(hdst $C11)" -- two
	srv_done
	expect_srv "$(dline $PROXY:$sp one)" "$(dline $PROXY:$sp two)"
}

@test "v2 LOCAL, family 00 with an IPv4 block (Netty's layout): the real source, payload stripped" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2
	usend $PROXY:$sp -X "$(v2_hex 20 00 "$(addr_block TCP4 127.0.0.11 127.0.0.1 10011 "$UPORT")")" \
		-- one
	usend $PROXY:$sp -H "$(hdst $C12)" -- two
	srv_done
	expect_srv "$(dline $PROXY:$sp one)" "$(dline $C12 two)"
}

# ---- every receive call ----

# two_clients UDPSRV-ARGS...: C11 and C12 through $PROXY, received with these options.
two_clients() {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 "$@"
	usend $PROXY -H "$(hdst $C11)" -H "$(hdst $C12)" -- hello 'x\x00y'
	srv_done
}

@test "recvfrom" {
	two_clients -m recvfrom
	expect_srv "$(dline $C11 hello)" "$(dline $C12 'x\x00y')"
}

@test "recvfrom, fortified (__recvfrom_chk)" {
	two_clients -m recvfrom -f
	expect_srv "$(dline $C11 hello)" "$(dline $C12 'x\x00y')"
}

@test "recvmsg" {
	two_clients -m recvmsg
	expect_srv "$(dline $C11 hello)" "$(dline $C12 'x\x00y')"
}

@test "recvmmsg with MSG_WAITFORONE" {
	two_clients -m recvmmsg -b 4 -W
	expect_srv "$(dline $C11 hello)" "$(dline $C12 'x\x00y')"
}

@test "libuv's way: recvmmsg and sendmmsg through syscall(SYS_recvmmsg/SYS_sendmmsg): headers stripped, replies routed to the proxy" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -m recvmmsg -b 4 -W -S -e sendmmsg
	usend_r 2 $PROXY:$sp -H "$(hdst $C11)" -H "$(hdst $C12)" -- one two
	srv_done
	expect_srv "$(dline $C11 one)" "$(dline $C12 two)"
	expect_replies "$(rline "from=$C11 one")" "$(rline "from=$C12 two")"
}

@test "recvmmsg filling a whole batch (blocking, no MSG_WAITFORONE)" {
	two_clients -m recvmmsg -b 2
	expect_srv "$(dline $C11 hello)" "$(dline $C12 'x\x00y')"
}

@test "recv (no source to report: payload stripped)" {
	two_clients -m recv
	expect_srv "$(dline - hello)" "$(dline - 'x\x00y')"
}

@test "recv, fortified (__recv_chk)" {
	two_clients -m recv -f
	expect_srv "$(dline - hello)" "$(dline - 'x\x00y')"
}

@test "read" {
	two_clients -m read
	expect_srv "$(dline - hello)" "$(dline - 'x\x00y')"
}

@test "read, fortified (__read_chk)" {
	two_clients -m read -f
	expect_srv "$(dline - hello)" "$(dline - 'x\x00y')"
}

@test "readv (the payload spread over two iovecs)" {
	two_clients -m readv -s 4
	expect_srv "$(dline - hell - 4)" "$(dline - 'x\x00y')"   # 4 bytes fitted
}

@test "recv and read after connect() to the proxy: stripped; getpeername is the proxy" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m read -c $PROXY:$sp
	grep -qx "connected peer=$PROXY:$sp" "$T/srv.out" || fail "$(cat "$T/srv.out")"
	usend $PROXY:$sp -H "$(hdst $C11)" -- hello
	srv_done
	expect_srv "$(dline $PROXY:$sp hello)"
	new_port
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m recv -c $PROXY:$sp
	usend $PROXY:$sp -H "$(hdst $C12)" -- world
	srv_done
	expect_srv "$(dline $PROXY:$sp world)"
}

# ---- MSG_TRUNC, MSG_PEEK, pktinfo ----

@test "small buffer, recvmsg: len is what fitted, msg_flags TRUNC, as for the payload alone" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -m recvmsg -s 5
	usend $PROXY -H "$(hdst $C11)" -- 'hello world' 'hello'
	srv_done
	# the second payload fits exactly (header + payload would not): no TRUNC
	expect_srv "$(dline $C11 hello TRUNC 5)" "$(dline $C11 hello - 5)"
}

@test "small buffer, recvmmsg: msg_len and msg_flags TRUNC per message" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -m recvmmsg -b 4 -W -s 4
	usend $PROXY -H "$(hdst $C11)" -H "$(hdst $C12)" -- 'hello world' 'abc'
	srv_done
	expect_srv "$(dline $C11 hell TRUNC 4)" "$(dline $C12 abc - 3)"
}

@test "MSG_TRUNC in flags: the payload's real length is returned (recvfrom, recvmsg, recv)" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m recvfrom -s 4 -x
	usend $PROXY -H "$(hdst $C11)" -- 'hello world'
	srv_done
	expect_srv "$(dline $C11 hell - 11)"
	new_port
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m recvmsg -s 4 -x
	usend $PROXY -H "$(hdst $C11)" -- 'hello world'
	srv_done
	expect_srv "$(dline $C11 hell TRUNC 11)"
	new_port
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m recv -f -s 4 -x
	usend $PROXY -H "$(hdst $C11)" -- 'hello world'
	srv_done
	expect_srv "$(dline - hell - 11)"
}

@test "MSG_PEEK then receive: both see the client and the payload alone" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -m recvfrom -k
	usend $PROXY -H "$(hdst $C11)" -H "$(hdst $C12)" -- hello world
	srv_done
	expect_srv "peek $(dline $C11 hello)" "$(dline $C11 hello)" \
		"peek $(dline $C12 world)" "$(dline $C12 world)"
}

@test "MSG_PEEK with recvmsg and a small buffer; read after a recv peek" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m recvmsg -k -s 4
	usend $PROXY -H "$(hdst $C11)" -- 'hello'
	srv_done
	expect_srv "peek $(dline $C11 hell TRUNC 4)" "$(dline $C11 hell TRUNC 4)"
	new_port
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m read -k
	usend $PROXY -H "$(hdst $C11)" -- 'hello'
	srv_done
	expect_srv "peek $(dline - hello)" "$(dline - hello)"
}

@test "MSG_PEEK on a blocking socket skips a refused datagram" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m recvfrom -k -G "$T/go"
	usend $PROXY -- 'no header'
	usend $PROXY -H "$(hdst $C11)" -- good
	go
	srv_done
	expect_srv "peek $(dline $C11 good)" "$(dline $C11 good)"
}

@test "IP_PKTINFO passes through recvmsg; a sendmsg reply carrying it reaches the proxy" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -m recvmsg -i -e sendmsg
	usend_r 1 $PROXY -H "$(hdst $C11)" -- hello
	srv_done
	expect_srv "$(dline $C11 hello - '' ' dst=127.0.0.1')"
	expect_replies "$(rline "from=$C11 hello")"
}

@test "IPV6_PKTINFO passes through recvmmsg (::1)" {
	udp_start -6 PROXYSHIM_TRUSTED=::1 -- -n 2 -m recvmmsg -b 4 -W -i -e sendmmsg
	usend_r 2 ::1 -H "$(hdst '[::1]:10011')" -H "$(hdst '[::1]:10012')" -- one two
	srv_done
	expect_srv "$(dline '[::1]:10011' one - '' ' dst=::1')" \
		"$(dline '[::1]:10012' two - '' ' dst=::1')"
	expect_replies "$(rline 'from=[::1]:10011 one')" "$(rline 'from=[::1]:10012 two')"
}

# ---- untrusted sources ----

@test "untrusted, UNTRUSTED=pass (default): delivered untouched, header bytes included" {
	local sp hex
	sp=$(free_udp $UNTRUSTED)
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -e sendto
	hex=$(udp4_hex 127.0.0.11 10011)
	usend_r 1 $UNTRUSTED:$sp -H "$(hdst $C11)" -- 'hello'
	# and the reply, to an address no proxy introduced, went straight to it
	expect_replies "$(rline "from=$UNTRUSTED:$sp $(esc "$hex")hello")"
	usend $UNTRUSTED:$sp -- 'plain'
	srv_done
	expect_srv "$(dline $UNTRUSTED:$sp "$(esc "$hex")hello")" "$(dline $UNTRUSTED:$sp plain)"
}

@test "untrusted, UNTRUSTED=reject: a header is dropped, headerless datagrams pass" {
	local sp
	sp=$(free_udp $UNTRUSTED)
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UNTRUSTED=reject -- -n 2
	usend $UNTRUSTED:$sp -H "$(hdst $C11)" -- 'spoofed'
	usend $UNTRUSTED:$sp -- 'plain'
	usend $PROXY -H "$(hdst $C12)" -- good
	srv_done
	expect_srv "$(dline $UNTRUSTED:$sp plain)" "$(dline $C12 good)"
	expect_dropped_log
}

# ---- refused datagrams from the trusted proxy ----

# refused [UDPSEND-OPTS...] -- PAYLOAD...: sent from $PROXY, never delivered; the good
# datagram after it is (blocking recvfrom goes on), and the drop is logged.
refused() {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1
	usend $PROXY "$@"
	usend $PROXY -H "$(hdst 127.0.0.99:10099)" -- good
	srv_done
	expect_srv "$(dline 127.0.0.99:10099 good)"
	expect_dropped_log
}

@test "require: a datagram without a header is dropped, the next one delivered" {
	refused -- 'no header'
}

@test "require: an empty datagram is dropped" {
	refused -- ''
}

@test "a v1 header is dropped (only v2 describes UDP)" {
	new_port
	refused --v1 -H "$(hdst $C11)" -- hello
}

@test "a truncated header is dropped (cut in the fixed part, in the address block)" {
	new_port
	refused -H "$(hdst $C11)" --trunc 14 -- ''
	stop_all
	new_port
	refused -H "$(hdst $C11)" --trunc 27 -- ''
}

@test "a signature alone, or most of it, is dropped" {
	refused -X "$V2_SIG" -- ''
	new_port
	stop_all
	refused -X "${V2_SIG:0:22}" -- 'x'
}

@test "invalid command nibble, invalid version: dropped" {
	refused -X "$(v2_hex 22 12 "$(addr_block TCP4 127.0.0.11 127.0.0.1 10011 53)")" -- hello
	new_port
	stop_all
	refused -X "$(v2_hex 11 12 "$(addr_block TCP4 127.0.0.11 127.0.0.1 10011 53)")" -- hello
}

@test "a TLV running past the header, a wrong CRC32C: dropped" {
	refused -X "$(v2_hex 21 12 "$(addr_block TCP4 127.0.0.11 127.0.0.1 10011 53)0400ff")" -- x
	new_port
	stop_all
	refused -X "$(with_crc "$(v2_hex 21 12 \
		"$(addr_block TCP4 127.0.0.11 127.0.0.1 10011 53)$(tlv 03 00000000)")" bad)" -- x
}

@test "v2 LOCAL with a wrong CRC32C: dropped" {
	refused -X "$(with_crc "$(v2_hex 20 00 "$(tlv 03 00000000)")" bad)" -- x
}

@test "POLICY=optional: a headerless datagram is delivered with its real source" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_POLICY=optional -- -n 2
	usend $PROXY:$sp -- 'no header'
	usend $PROXY:$sp -H "$(hdst $C11)" -- 'with header'
	srv_done
	expect_srv "$(dline $PROXY:$sp 'no header')" "$(dline $C11 'with header')"
}

@test "blocking recvfrom goes on past queued refused datagrams to the next good one" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -G "$T/go"
	usend $PROXY -- 'no header'
	usend $PROXY --v1 -H "$(hdst $C11)" -- v1
	usend $PROXY -H "$(hdst $C11)" --trunc 20 -- ''
	usend $PROXY -H "$(hdst $C12)" -- good
	go
	srv_done
	expect_srv "$(dline $C12 good)"
}

@test "blocking recvmmsg filling a batch: refused datagrams inside it are left out" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 3 -m recvmmsg -b 3 -G "$T/go"
	usend $PROXY -H "$(hdst $C11)" -- one
	usend $PROXY -- 'no header'
	usend $PROXY -H "$(hdst $C12)" -- two
	usend $PROXY --v1 -H "$(hdst $C11)" -- v1
	usend $PROXY -H "$(hdst $C13)" -- three
	go
	srv_done
	expect_srv "$(dline $C11 one)" "$(dline $C12 two)" "$(dline $C13 three)"
}

# ---- non-blocking sockets and readiness ----

@test "non-blocking: only a refused datagram queued gives EAGAIN, then a good one arrives" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -N -G "$T/go"
	usend $PROXY -- 'no header'
	go
	wait_until 5 grep -qx eagain "$T/srv.out" || fail "no EAGAIN:" "$(cat "$T/srv.out")"
	usend $PROXY -H "$(hdst $C11)" -- good
	srv_done
	expect_srv eagain "$(dline $C11 good)"
}

@test "non-blocking recvmmsg: a refused datagram between two good ones is left out" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -N -m recvmmsg -b 8 -G "$T/go"
	usend $PROXY -H "$(hdst $C11)" -- one
	usend $PROXY -- 'no header'
	usend $PROXY -H "$(hdst $C12)" -- two
	go
	srv_done
	grep -v '^eagain$' "$T/srv.out" >"$T/srv.lines"
	mv "$T/srv.lines" "$T/srv.out"
	expect_srv "$(dline $C11 one)" "$(dline $C12 two)"
}

# no_readiness WAIT: a non-blocking server waiting with WAIT; with only a refused datagram
# queued the wait must time out ("idle", never "spurious": readable, then EAGAIN); a good
# datagram sent then is delivered.
no_readiness() {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -N -w "$@" -G "$T/go"
	usend $PROXY -- 'no header'
	usend $PROXY --v1 -H "$(hdst $C11)" -- v1
	go
	wait_until 5 grep -qx idle "$T/srv.out" || fail "no idle wait:" "$(cat "$T/srv.out")"
	usend $PROXY -H "$(hdst $C11)" -- good
	srv_done
	expect_srv idle "$(dline $C11 good)"
}

@test "poll never reports a socket readable for refused datagrams only" {
	no_readiness poll
}

@test "ppoll never reports a socket readable for refused datagrams only" {
	no_readiness ppoll
}

@test "fortified poll and ppoll (__poll_chk, __ppoll_chk: _FORTIFY_SOURCE builds) never report refused datagrams either" {
	no_readiness poll -f
	kill "$SRV_PID" 2>/dev/null || true
	UPORT=
	: >"$T/srv.out"
	rm -f "$T/go"
	no_readiness ppoll -f
}

@test "epoll: another descriptor registered with the same event data keeps its events (an ambiguous event is not filtered)" {
	# a readable pipe shares the socket's data.fd: epoll_wait must report it at once, so
	# udpsrv (which cannot tell the two apart) sees readiness and then EAGAIN
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -N -w epoll -D -t 5
	wait_until 3 grep -qx spurious "$T/srv.out" ||
		fail "the pipe's event was withheld:" "$(cat "$T/srv.out")"
	! grep -qx idle "$T/srv.out" || fail "epoll_wait timed out instead:" "$(cat "$T/srv.out")"
}

@test "select never reports a socket readable for refused datagrams only" {
	no_readiness select
}

@test "pselect never reports a socket readable for refused datagrams only" {
	no_readiness pselect
}

@test "epoll_wait never reports a socket readable for refused datagrams only" {
	no_readiness epoll
}

@test "poll with a refused and a good datagram queued: readable, only the good one read" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 1 -N -w poll -G "$T/go"
	usend $PROXY -- 'no header'
	usend $PROXY -H "$(hdst $C11)" -- good
	go
	srv_done
	expect_srv "$(dline $C11 good)"
}

# ---- first mode ----

@test "first: a header-only datagram introduces the client; later headerless ones are its" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_MODE=first -- -n 3
	usend $PROXY:$sp -H "$(hdst $C11)" --first -- '' q1 q2
	usend $PROXY:$sp -- q3
	srv_done
	expect_srv "$(dline $C11 q1)" "$(dline $C11 q2)" "$(dline $C11 q3)"
}

@test "first: a first datagram with header and payload delivers the payload" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_MODE=first -- -n 2
	usend $PROXY:$sp -H "$(hdst $C11)" --first -- q1 q2
	srv_done
	expect_srv "$(dline $C11 q1)" "$(dline $C11 q2)"
}

@test "first: two proxy ports, two flows, kept apart" {
	local sp1 sp2
	sp1=$(free_udp $PROXY)
	sp2=$(free_udp 127.0.0.9)
	udp_start PROXYSHIM_TRUSTED=127.0.0.8/29 PROXYSHIM_UDP_MODE=first -- -n 4
	usend $PROXY:$sp1 -H "$(hdst $C11)" --first -- '' a1
	usend 127.0.0.9:$sp2 -H "$(hdst $C12)" --first -- '' b1
	usend $PROXY:$sp1 -- a2
	usend 127.0.0.9:$sp2 -- b2
	srv_done
	expect_srv "$(dline $C11 a1)" "$(dline $C12 b1)" "$(dline $C11 a2)" "$(dline $C12 b2)"
}

@test "first: a headerless datagram from a proxy port never introduced is dropped" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_MODE=first -- -n 1
	usend $PROXY -- 'unknown flow'
	usend $PROXY:$sp -H "$(hdst $C11)" --first -- '' good
	srv_done
	expect_srv "$(dline $C11 good)"
	expect_dropped_log
}

@test "first: a flow idle for PROXYSHIM_UDP_IDLE_MS is forgotten" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_MODE=first PROXYSHIM_UDP_IDLE_MS=300 -- -n 2
	usend $PROXY:$sp -H "$(hdst $C11)" --first -- '' q1
	sleep 1
	usend $PROXY:$sp -- 'after expiry'       # dropped: no flow any more
	usend $PROXY:$sp -H "$(hdst $C12)" --first -- '' q2
	srv_done
	expect_srv "$(dline $C11 q1)" "$(dline $C12 q2)"
	expect_dropped_log
}

@test "first: a flow in use stays (idle time, not lifetime)" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_MODE=first PROXYSHIM_UDP_IDLE_MS=1000 -- -n 6
	usend $PROXY:$sp -H "$(hdst $C11)" --first -d 300 -- '' a b c d e f   # 1.8 s in all
	srv_done
	expect_srv "$(dline $C11 a)" "$(dline $C11 b)" "$(dline $C11 c)" "$(dline $C11 d)" \
		"$(dline $C11 e)" "$(dline $C11 f)"
}

@test "first: replies to the client reach the proxy port that introduced it" {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_MODE=first -- -n 2 -e sendto
	usend_r 2 $PROXY:$sp -H "$(hdst $C11)" --first -- '' q1 q2
	srv_done
	expect_replies "$(rline "from=$C11 q1")" "$(rline "from=$C11 q2")"
}

# ---- replies ----

# replies_via ECHO [UDPSRV-ARGS...]: three clients through one proxy socket; the server
# answers each with ECHO; all three replies reach that socket, each naming its client.
replies_via() {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 3 -e "$@"
	usend_r 3 $PROXY -H "$(hdst $C11)" -H "$(hdst $C12)" -H "$(hdst $C13)" -- one two three
	srv_done
	expect_replies "$(rline "from=$C11 one")" "$(rline "from=$C12 two")" \
		"$(rline "from=$C13 three")"
}

@test "replies: sendto to the client goes to its proxy" {
	replies_via sendto
}

@test "replies: sendmsg to the client goes to its proxy" {
	replies_via sendmsg -m recvmsg
}

@test "replies: sendmmsg answering a recvmmsg batch goes to the proxy, per message" {
	(sleep 0.5 && go) &    # the three datagrams are queued before the first call
	replies_via sendmmsg -m recvmmsg -b 8 -W -G "$T/go"
}

@test "replies over IPv6 (::1): sendto to the client goes to its proxy" {
	udp_start -6 PROXYSHIM_TRUSTED=::1 -- -n 1 -e sendto
	usend_r 1 ::1 -H "$(hdst '[::1]:10011')" -- hello
	srv_done
	expect_replies "$(rline 'from=[::1]:10011 hello')"
}

# connected_to_client ECHO: the server connects to the first datagram's client; send()
# or write() replies reach the proxy; getpeername reports the client.
connected_to_client() {
	local sp
	sp=$(free_udp $PROXY)
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 2 -C -e "$1"
	usend_r 2 $PROXY:$sp -H "$(hdst $C11)" -d 200 -- one two
	srv_done
	expect_srv "$(dline $C11 one)" "connected peer=$C11" "$(dline $C11 two)"
	expect_replies "$(rline "from=$C11 one")" "$(rline "from=$C11 two")"
}

@test "connect() to a mapped client: getpeername reports it, send() replies reach the proxy" {
	connected_to_client send
}

@test "connect() to a mapped client: write() replies reach the proxy" {
	connected_to_client write
}

# Mappings live by what arrives through the proxy, never by the daemon's own sends: a
# daemon beating every 100 ms to its master, which one header named as a client, beats
# to the proxy for PROXYSHIM_UDP_IDLE_MS (300) at most, then to the master again.
@test "replies: sends never keep a flow alive: heartbeats to a master a header named go straight to it after the idle time" {
	local mp master got last
	mp=$(free_udp 127.0.0.21)
	master=127.0.0.21:$mp
	udp_run master -- -l 127.0.0.21 -p "$mp"
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_IDLE_MS=300 -- -B "$master" -P 100
	wait_until 5 grep -q 'payload="beat' "$T/master.out" || fail "no beat reached the master"
	usend_r 0 $PROXY -H "$(hdst "$master")" -t 2000 -- 'I am the master'
	got=$(sed -n 's/^reply .*payload="beat \([0-9]*\)"$/\1/p' "$T/replies.out" | sort -n)
	last=$(tail -n 1 <<<"$got")
	# while mapped, beats went to the proxy (routing worked), for about 3 periods only
	[[ -n $got ]] || fail "no beat was routed to the proxy:" "$REPLIES"
	(($(wc -l <<<"$got") <= 6)) || fail "beats kept going to the proxy:" "$REPLIES"
	wait_until 3 grep -q "payload=\"beat $((last + 1))\"" "$T/master.out" ||
		fail "beat $((last + 1)) did not reach the master:" "$(tail -n 5 "$T/master.out")"
}

# reply_via MODE [VAR=VALUE...]: tests/helpers/udpreply.py MODE under the shim (its
# proxies trusted); prints which socket its reply reached.
reply_via() {
	local mode=$1 port
	shift
	port=$(free_udp 127.0.0.1)
	under_shim PROXYSHIM_TRUSTED=127.0.0.21,127.0.0.22,::1 PROXYSHIM_UDP_PORTS="$port" "$@" -- \
		timeout 20 /usr/bin/python3 "$BATS_TEST_DIRNAME/../helpers/udpreply.py" "$mode" "$port"
}

# A thread answers right after its receive without a lookup, from what it learned; that
# must never outlive a change another thread's receive made to the table.
@test "replies: a client that moved to another proxy (seen by another thread) is answered through the new proxy" {
	run reply_via moved
	[[ $status == 0 && $output == "reply via=proxy2" ]] || fail "$output"
}

@test "replies: an answer sent after the flow idled out goes to the client itself" {
	run reply_via idle PROXYSHIM_UDP_IDLE_MS=200
	[[ $status == 0 && $output == "reply via=client" ]] || fail "$output"
}

@test "replies from a socket that never saw the client: a sibling's IPv6 proxy does not count, the walk goes on to the IPv4 one" {
	run reply_via family
	[[ $status == 0 && $output == "reply via=proxy1" ]] || fail "$output"
}

# A receive in a signal handler, on another socket, while the thread records what it
# learned: the thread's replies must follow the tables, never a mix of the two records.
# The window is a few instructions: 15 s found the mix in 9 of 11 runs before the fix.
@test "replies: 15 s of a signal handler receiving on another port while the thread receives: no reply reaches a proxy the table does not name" {
	local pa pb
	pa=$(free_udp 127.0.0.1) pb=$(free_udp 127.0.0.1)
	run under_shim PROXYSHIM_TRUSTED=127.0.0.21,127.0.0.22 PROXYSHIM_UDP_PORTS="$pa,$pb" -- \
		timeout 40 "$PS_BUILD/udpsigmix" "$pa" "$pb" 15
	echo "# $output" >&3
	[[ $status == 0 && $output =~ handled=[1-9][0-9]*\ right=[1-9][0-9]*\ wrong=0$ ]] || fail "$output"
}

# sibling_replies ECHO [UDPSRV-ARGS...]: the server answers three clients from a second
# socket bound to 127.0.0.2 and the same port; each reply reaches the proxy, from there.
sibling_replies() {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -n 3 -A 127.0.0.2 -e "$@"
	usend_r 3 $PROXY -H "$(hdst $C11)" -H "$(hdst $C12)" -H "$(hdst $C13)" -- one two three
	srv_done
	SRV_ADDR=127.0.0.2    # where the replies come from
	expect_replies "$(rline "from=$C11 one")" "$(rline "from=$C12 two")" \
		"$(rline "from=$C13 three")"
}

@test "replies from another socket bound to the port (SO_REUSEPORT, another address): sendto goes to the proxy" {
	sibling_replies sendto
}

@test "replies from another socket bound to the port: sendmsg goes to the proxy" {
	sibling_replies sendmsg -m recvmsg
}

@test "replies from another socket bound to the port: sendmmsg goes to the proxy, per message" {
	(sleep 0.5 && go) &    # the three datagrams are queued before the first call
	sibling_replies sendmmsg -m recvmmsg -b 8 -W -G "$T/go"
}

# The "connected UDP server": the listener is on the wildcard address; a socket bound to
# the specific address and port is connected to the client (to the proxy, in truth).
@test "another socket of the port connected to a mapped client: getpeername reports the client, send() replies reach the proxy" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -l 0.0.0.0 -A 127.0.0.1 -C -n 1 -e send
	usend_r 1 $PROXY -H "$(hdst $C11)" -- one
	srv_done
	expect_srv "$(dline $C11 one)" "connected peer=$C11"
	expect_replies "$(rline "from=$C11 one")"
}

# ---- selection ----

@test "a port outside PROXYSHIM_UDP_PORTS is untouched, byte for byte" {
	local sp hex
	sp=$(free_udp $PROXY)
	udp_start --bare PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_PORTS=53,5300-5310 -- -n 2 -e sendto
	hex=$(udp4_hex 127.0.0.11 10011)
	usend_r 1 $PROXY:$sp -H "$(hdst $C11)" -- 'hello\x00\r\n'
	usend $PROXY:$sp -- 'no header'
	srv_done
	expect_srv "$(dline $PROXY:$sp "$(esc "$hex")hello\\x00\\r\\n")" "$(dline $PROXY:$sp 'no header')"
	expect_replies "$(rline "from=$PROXY:$sp $(esc "$hex")hello\\x00\\r\\n")"
}

@test "PROXYSHIM_UDP_PORTS unset: UDP untouched, the header is data" {
	local sp hex
	sp=$(free_udp $PROXY)
	udp_start --bare PROXYSHIM_TRUSTED=$PROXY -- -n 1
	hex=$(udp4_hex 127.0.0.11 10011)
	usend $PROXY:$sp -H "$(hdst $C11)" -- hello
	srv_done
	expect_srv "$(dline $PROXY:$sp "$(esc "$hex")hello")"
}

@test "PROXYSHIM_UDP_PORTS list with a range selects the port inside the range" {
	UPORT=$(free_udp 127.0.0.1)
	udp_start --bare PROXYSHIM_TRUSTED=$PROXY \
		"PROXYSHIM_UDP_PORTS=53,$((UPORT - 1))-$((UPORT + 1)),5300" -- -n 1
	usend $PROXY -H "$(hdst $C11)" -- hello
	srv_done
	expect_srv "$(dline $C11 hello)"
}

# ---- load ----

# storm UDPSTORM-ARGS...: udpstorm from $PROXY against the server. STORM: its summary line;
# STORM_STATUS: its exit status.
storm() {
	STORM_STATUS=0
	STORM=$("$UDPSTORM" -b "$PROXY" "$@" "$SRV_ADDR" "$UPORT" 2>>"$T/storm.err") ||
		STORM_STATUS=$?
	printf '%s\n' "$STORM" >>"$T/storm.out"
}

# storm_field NAME: a field of STORM.
storm_field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$STORM"; }

# expect_storm SENT: all SENT datagrams answered, none wrong, none lost, status 0.
expect_storm() {
	[[ $STORM_STATUS == 0 && $(storm_field sent) == "$1" && $(storm_field replies) == "$1" &&
		$(storm_field wrong) == 0 && $(storm_field lost) == 0 ]] ||
		fail "udpstorm status $STORM_STATUS: $STORM" "$(tail -n 20 "$T/storm.err")"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

@test "stress: 100,000 datagrams from 1,000 clients, every reply to its client, RSS flat" {
	udp_start PROXYSHIM_TRUSTED=$PROXY -- -q -m recvmmsg -b 64 -W -e sendmmsg -t 600
	storm -c 1000 -d 5000 -t 60              # warm-up: every client introduced once
	expect_storm 5000
	local rss0 rss1
	rss0=$(rss_kb "$SRV_PID")
	storm -c 1000 -d 100000 -t 300
	expect_storm 100000
	rss1=$(rss_kb "$SRV_PID")
	echo "# every, 1000 clients: $STORM; VmRSS $rss0 -> $rss1 kB" >&3
	((rss1 - rss0 <= 512)) || fail "server RSS grew from $rss0 to $rss1 kB"
}

@test "stress: 5,000 clients (more than the default 4096-flow table): evictions logged, 0 wrong" {
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_LOG_LEVEL=info -- -q -e sendto -t 600
	storm -c 5000 -d 20000 -t 300
	echo "# every, 5000 clients: $STORM" >&3
	expect_storm 20000
	expect_log "$T/srv.err" '[Ff]low table full|[Ee]vict'
}

@test "stress, first mode: 200 flows, header-only first datagrams, 10,000 datagrams" {
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_MODE=first -- -q -e sendto -t 600
	storm -m first -c 200 -d 10000 -t 300
	echo "# first, 200 flows: $STORM" >&3
	expect_storm 10000
}

# ---- limits ----

# many_start ARGS...: tests/helpers/udpmany.py ARGS under the shim, every port from 1024
# selected; waits for its ports. PORTS: them, in order.
many_start() {
	local many=$BATS_TEST_DIRNAME/../helpers/udpmany.py
	under_shim --exec PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_PORTS=1024-65535 -- \
		/usr/bin/python3 "$many" "$@" >"$T/many.out" 2>"$T/many.err" &
	MANY_PID=$!
	PIDS+=("$MANY_PID")
	wait_until 5 grep -q '^ports=' "$T/many.out" || fail "udpmany did not start" "$(cat "$T/many.err")"
	read -ra PORTS <<<"$(sed -n 's/^ports=//p' "$T/many.out")"
}

# many_replies N [--sibling ADDR] [--fork]: N selected sockets (more than 64) in one
# process; through the proxy, each gets a datagram from its own client (127.0.0.11, port
# 20000 + I) and answers it: every answer reaches the proxy and names that client (the
# last socket's from ADDR with --sibling), so every socket has a flow table. The last
# socket's read() of 0 bytes returns at once and leaves the datagram queued.
many_replies() {
	local n=$1 i got want
	shift
	many_start "$n" --echo "$@"
	for ((i = 1; i <= n; i++)); do
		UPORT=${PORTS[i - 1]}
		usend_r 1 $PROXY -H "127.0.0.11:$((20000 + i)),127.0.0.1:$UPORT" -- "m$i"
		((i == n)) && [[ $1 == --sibling ]] && SRV_ADDR=$2    # where the reply comes from
		expect_replies "$(rline "from=127.0.0.11:$((20000 + i)) m$i")"
	done
	wait_exit "$MANY_PID" 10 || fail "udpmany did not finish" "$(cat "$T/many.err")"
	got=$(grep -v '^ports=' "$T/many.out")
	want=$(for ((i = 1; i <= n; i++)); do
		((i == n)) && echo read0=0
		echo "sock=$i from=127.0.0.11:$((20000 + i)) payload=b'm$i'"
	done)
	[[ $got == "$want" ]] || fail "udpmany printed:" "$got" "expected:" "$want"
	! grep -q 'no flow table' "$T/many.err" || fail "$(cat "$T/many.err")"
}

@test "more than 64 selected sockets (150): each maps its client, every reply reaches the proxy; read() of 0 bytes leaves the datagram queued" {
	many_replies 150
}

@test "more than 64 selected sockets: the last one's replies from another socket of its port (127.0.0.2) reach the proxy" {
	many_replies 70 --sibling 127.0.0.2
}

@test "more than 64 selected sockets in one epoll instance (70): a refused datagram never reports the last one readable" {
	many_start 70 --epoll
	local i
	for ((i = 1; i <= 70; i++)); do
		UPORT=${PORTS[i - 1]}
		((i == 70)) && usend $PROXY -- 'no header' && sleep 0.3
		usend $PROXY -H "127.0.0.11:$((20000 + i)),127.0.0.1:$UPORT" -- "m$i"
	done
	wait_exit "$MANY_PID" 10 || fail "udpmany did not finish" "$(cat "$T/many.err")"
	! grep -q '^spurious' "$T/many.out" || fail "readiness for a refused datagram:" "$(grep spurious "$T/many.out")"
	grep -qx "sock=70 from=127.0.0.11:20070 payload=b'm70'" "$T/many.out" || fail "$(cat "$T/many.out")"
	expect_log "$T/many.err" 'dropped|refused|no valid'
}

@test "more than 64 selected sockets, served by a fork child: every reply reaches the proxy" {
	many_replies 70 --fork
}

# PROXYSHIM_UDP_FLOWS=16, 40 clients (127.0.1.1..40, one port P that a catcher on
# 0.0.0.0:P listens on): all 40 datagrams are received before any answer (one recvmmsg
# batch, one sendmmsg), so the 24 oldest flows are forgotten, each logged: their answers
# go to the clients themselves, the 16 newest to the proxy. None lost, none misdirected.
@test "PROXYSHIM_UDP_FLOWS=16 with 40 clients: the 24 oldest forgotten and logged (answered directly), the 16 newest answered through the proxy" {
	local cp i hs=() ps=() direct=() proxied=() got
	cp=$(free_udp 0.0.0.0)
	udp_run catch -- -l 0.0.0.0 -p "$cp" -n 24
	new_port
	for ((i = 1; i <= 40; i++)); do
		hs+=(-H "$(hdst "127.0.1.$i:$cp")")
		ps+=("c$i")
		if ((i <= 24)); then
			direct+=("$(dline "127.0.0.1:$UPORT" "from=127.0.1.$i:$cp c$i")")
		else
			proxied+=("$(rline "from=127.0.1.$i:$cp c$i")")
		fi
	done
	udp_start PROXYSHIM_TRUSTED=$PROXY PROXYSHIM_UDP_FLOWS=16 PROXYSHIM_LOG_LEVEL=info -- \
		-n 40 -m recvmmsg -b 64 -W -e sendmmsg -G "$T/go"
	(sleep 0.5 && go) &    # the 40 datagrams are queued before the first call
	usend_r 16 $PROXY "${hs[@]}" -t 3000 -- "${ps[@]}"
	expect_replies "${proxied[@]}"
	srv_done
	wait_exit "$RUN_PID" 5 || fail "the catcher got:" "$(cat "$T/catch.out")"
	got=$(sed '0,/^ready$/d' "$T/catch.out" | LC_ALL=C sort)
	[[ $got == "$(printf '%s\n' "${direct[@]}" | LC_ALL=C sort)" ]] ||
		fail "direct answers:" "$got"
	expect_log "$T/srv.err" 'flow table full \(16 flows\): forgot the oldest, 127\.0\.1\.1:'"$cp"' via '
	! grep -qE 'flow table full.*127\.0\.1\.(2[5-9]|3[0-9]|40):' "$T/srv.err" ||
		fail "a newest flow was forgotten:" "$(cat "$T/srv.err")"
}
