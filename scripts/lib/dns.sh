# shellcheck shell=bash
# DNS daemons on loopback for the UDP tests: dnsmasq (a legacy daemon, run under the
# shim), dnsdist (a proxy that sends PROXY v2 on every datagram) and unbound (a native
# proxy-protocol receiver). Sourced after scripts/lib/daemons.sh, whose ds_bg, ds_wait,
# ds_alive, ds_stop and ds_listening it uses; the same rules hold: every daemon runs in
# the foreground as a child of the caller, on loopback, on the port it is given, with
# its configuration, pid and logs under the given directory; every wait is bounded;
# nothing reaches the network beyond loopback (local records only, no upstream, no
# security polling, no trust-anchor updates). Each start function sets DS_PID.
#
# The zone every daemon serves (name -> A record); other names get REFUSED. (-g: bats
# sources this file inside a function.)
declare -gA DS_DNS_RECORDS=([alpha.test]=127.0.1.1 [beta.test]=127.0.1.2 [health.test]=127.0.1.9)

# ---- ports and queries ----

# ds_udp_bound PORT [ADDR]: a UDP socket is bound to ADDR (127.0.0.1; or ::1) port PORT
# (read from /proc/net/udp{,6}: no datagram is sent, so nothing is logged).
ds_udp_bound() {
	local p
	p=$(printf '%04X' "$1")
	if [[ ${2:-127.0.0.1} == ::1 ]]; then
		grep -Eq "^ *[0-9]+: 00000000000000000000000001000000:$p " /proc/net/udp6
	else
		grep -Eq "^ *[0-9]+: 0100007F:$p " /proc/net/udp
	fi
}

# ds_free_dns_port: a port below the ephemeral range that no TCP or UDP socket (IPv4 or
# IPv6) uses now: DNS daemons bind both protocols on the same number.
ds_free_dns_port() {
	local i p used
	used=$(awk 'NR > 1 { split($2, a, ":"); print a[2] }' \
		/proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null)
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + (RANDOM % 12000)))
		grep -qx "$(printf '%04X' "$p")" <<<"$used" || { echo "$p"; return 0; }
	done
	return 1
}

# ds_dns_up PORT [ADDR]: UDP bound and TCP listening on ADDR:PORT (ADDR 127.0.0.1 only
# for the TCP check: ds_listening reads /proc/net/tcp).
ds_dns_up() { ds_udp_bound "$1" "${2:-127.0.0.1}" && ds_listening "$1"; }

# ds_dig SERVER PORT SOURCE NAME [DIG-OPTS...]: one A query, one try, 2 s (cut at 10 s
# in any case); prints dig's full output. SOURCE is ADDR or ADDR#PORT (dig -b). Its
# status is dig's (9: no reply).
ds_dig() {
	local server=$1 port=$2 src=$3 name=$4
	shift 4
	timeout -k 1 10 dig "@$server" -p "$port" -b "$src" +time=2 +tries=1 +nocookie "$@" "$name" A
}

# ds_dig_answer OUTPUT: the A record of dig's answer section (empty if none).
ds_dig_answer() { awk '$4 == "A" && !/^;/ { print $5 }' <<<"$1"; }

# ds_dig_status OUTPUT: the rcode (NOERROR, REFUSED, ...), empty if no reply came.
ds_dig_status() { sed -n 's/.*->>HEADER<<-.* status: \([A-Z]*\),.*/\1/p' <<<"$1"; }

# ---- dnsmasq ----
# Files under DIR/dnsmasq: dnsmasq.conf, dnsmasq.log (one line per query with
# log-queries=extra: "N ADDR/PORT query[A] NAME from ADDR", then "N ADDR/PORT config
# NAME is A"), dnsmasq.err (stderr).
# It runs with --keep-in-foreground (the production mode without forking away): each
# TCP connection is served by a forked child (killed when dnsmasq stops), so a TCP
# client that never sends a whole query (a PROXY header taken for a 3338-byte length
# prefix, without the shim) cannot stall the UDP side. DS_DNSMASQ_FG=--no-daemon selects
# dnsmasq's debug mode instead: TCP served in the main process (one stuck connection
# blocks everything), log lines copied to stderr, never any change of user. Without
# --no-daemon a dnsmasq started as root changes to --user, "nobody" by default (it
# also chowns the log file to it): --user/--group name the current user, so it keeps
# its identity (and the shim's PROXYSHIM_LOG stays writable).
# DS_DNSMASQ_LISTEN (default 127.0.0.1) is the listen-address list, e.g. 127.0.0.1,::1.

# ds_dnsmasq_start DIR PORT [VAR=VALUE...]: dnsmasq on DS_DNSMASQ_LISTEN port PORT (UDP
# and TCP), answering only DS_DNS_RECORDS (others: REFUSED, there is no upstream).
# Waits until it is bound. Sets DS_PID.
ds_dnsmasq_start() {
	local dir=$1/dnsmasq port=$2 name pid
	shift 2
	mkdir -p "$dir"
	{
		printf '%s\n' no-resolv no-hosts no-poll bind-interfaces log-queries=extra \
			"listen-address=${DS_DNSMASQ_LISTEN:-127.0.0.1}"
		for name in "${!DS_DNS_RECORDS[@]}"; do
			printf 'host-record=%s,%s\n' "$name" "${DS_DNS_RECORDS[$name]}"
		done
	} >"$dir/dnsmasq.conf"
	: >"$dir/dnsmasq.log"
	ds_bg "$dir" dnsmasq "$@" -- dnsmasq "${DS_DNSMASQ_FG:---keep-in-foreground}" \
		--conf-file="$dir/dnsmasq.conf" --port="$port" --pid-file="$dir/dnsmasq.pid" \
		--user="$(id -un)" --group="$(id -gn)" --log-facility="$dir/dnsmasq.log"
	pid=$DS_PID
	if ! ds_wait 10 ds_dnsmasq_up "$port" "$pid" || ! ds_alive "$pid"; then
		echo "dnsmasq did not start:" >&2
		cat "$dir/dnsmasq.err" >&2
		return 1
	fi
	DS_PID=$pid
}

ds_dnsmasq_up() {
	ds_alive "$2" || return 0 # dead: stop waiting, the caller reports it
	ds_dns_up "$1"
}

# ---- dnsdist ----
# Files under DIR/dnsdist: dnsdist.conf, dnsdist.err (its log: --supervised, no console,
# no syslog). One backend with useProxyProtocol=true: dnsdist prefixes every UDP
# datagram and every TCP connection to it with a v2 header (UDP: 0x21 0x12, TCP: 0x21
# 0x11; source = the client, destination = dnsdist's own listen address and port). It
# reaches the backend from SOURCE (newServer's `source`; else the kernel's choice,
# 127.0.0.1), over one UDP socket with one source port for all clients, and over TCP
# connections whose header names the client of the TCP connection it came in on.
# Health checks (CHECKS=auto): an A query for health.test every second, over UDP from
# SOURCE and a new ephemeral port each time, prefixed with a v2 LOCAL header (0x20,
# family 0, no addresses); a backend is marked down after maxCheckFailures (3) missed
# answers, and a down backend gets no queries at all (dropped, no SERVFAIL). CHECKS=up (the default)
# forces the backend up with setUp(): dnsdist 1.7 then sends no health checks at all.

# ds_dnsdist_start DIR PORT BACKEND-PORT SOURCE [auto|up]: dnsdist on 127.0.0.1:PORT
# (UDP and TCP), one backend 127.0.0.1:BACKEND-PORT reached from SOURCE. Never
# preloaded. Waits until it is bound. Sets DS_PID.
ds_dnsdist_start() {
	local dir=$1/dnsdist port=$2 bport=$3 src=$4 checks=${5:-up} pid
	mkdir -p "$dir"
	cat >"$dir/dnsdist.conf" <<-EOF
		setLocal("127.0.0.1:$port")
		setACL({"127.0.0.0/8"})
		-- no outgoing security-status lookup (it would query the system resolver)
		setSecurityPollSuffix("")
		setVerboseHealthChecks(true)
		backend = newServer{address="127.0.0.1:$bport", source="$src", useProxyProtocol=true,
		                    checkName="health.test.", checkInterval=1, maxCheckFailures=3}
	EOF
	[[ $checks == up ]] && echo 'backend:setUp()' >>"$dir/dnsdist.conf"
	ds_bg "$dir" dnsdist -- dnsdist --supervised --disable-syslog -C "$dir/dnsdist.conf"
	pid=$DS_PID
	if ! ds_wait 10 ds_dns_up "$port" || ! ds_alive "$pid"; then
		echo "dnsdist did not start:" >&2
		cat "$dir/dnsdist.out" "$dir/dnsdist.err" >&2
		return 1
	fi
	DS_PID=$pid
}

# ---- unbound ----
# Files under DIR/unbound: unbound.conf, unbound.log (with log-queries and log-replies,
# for each query "info: ADDR NAME. A IN" and "info: ADDR NAME. A IN RCODE TIME CACHED
# SIZE"; ADDR is the PROXY header's source on the proxy-protocol port; no port is
# logged. A datagram without a header on that port: "error: proxy_protocol: could not
# match PROXYv2 header", dropped). access-control: 127.0.0.0/8 allowed except
# 127.0.0.99 (refused: "info: 127.0.0.99 null TYPE0 CLASS0 REFUSED ...").
# module-config "iterator" (no validator, no trust anchor), `local-zone: "." refuse`
# so that nothing outside DS_DNS_RECORDS is ever looked up (REFUSED instead).

# ds_unbound_start DIR PORT PP-PORT: unbound on 127.0.0.1:PORT (plain) and
# 127.0.0.1:PP-PORT (proxy-protocol-port: a v2 header required on every datagram and
# TCP connection), UDP and TCP. Never preloaded. Waits until it is bound. Sets DS_PID.
ds_unbound_start() {
	local dir=$1/unbound port=$2 ppport=$3 name pid
	mkdir -p "$dir"
	{
		cat <<-EOF
			server:
			    do-daemonize: no
			    username: ""
			    chroot: ""
			    directory: "$dir"
			    pidfile: "$dir/unbound.pid"
			    logfile: "$dir/unbound.log"
			    use-syslog: no
			    log-time-ascii: yes
			    verbosity: 1
			    log-queries: yes
			    log-replies: yes
			    num-threads: 1
			    do-ip6: no
			    port: $port
			    interface: 127.0.0.1@$port
			    interface: 127.0.0.1@$ppport
			    proxy-protocol-port: $ppport
			    access-control: 127.0.0.0/8 allow
			    access-control: 127.0.0.99/32 refuse
			    module-config: "iterator"
			    local-zone: "." refuse
			    local-zone: "test." static
		EOF
		for name in "${!DS_DNS_RECORDS[@]}"; do
			printf '    local-data: "%s. 300 IN A %s"\n' "$name" "${DS_DNS_RECORDS[$name]}"
		done
		printf 'remote-control:\n    control-enable: no\n'
	} >"$dir/unbound.conf"
	unbound-checkconf "$dir/unbound.conf" >"$dir/checkconf.out" 2>&1 || {
		echo "unbound.conf:" >&2
		cat "$dir/checkconf.out" >&2
		return 1
	}
	ds_bg "$dir" unbound -- unbound -d -c "$dir/unbound.conf"
	pid=$DS_PID
	if ! ds_wait 10 ds_dns_up "$ppport" || ! ds_dns_up "$port" || ! ds_alive "$pid"; then
		echo "unbound did not start:" >&2
		cat "$dir/unbound.log" "$dir/unbound.err" >&2 2>/dev/null
		return 1
	fi
	DS_PID=$pid
}
