#!/usr/bin/python3
"""udpproxy: a small UDP proxy that speaks PROXY protocol v2 to its upstream, for the
UDP tests. Python 3 standard library only; bounded in flows and in lifetime.

Each client (address and port seen on --listen) is a flow with its own upstream
socket (bound to --upstream-source, port chosen by the kernel, connected to
--upstream): the upstream sees one proxy port per client flow. Replies that arrive on a
flow's socket go back to that client from --listen, unchanged.

Modes (what goes upstream):
  every         each datagram is prefixed with a v2 header (like dnsdist's
                useProxyProtocol)
  first         a flow's first datagram is a header alone, then the client's datagrams
                follow without header (like Cloudflare Spectrum)
  first-inline  the header is prefixed to the flow's first datagram only
The header: signature, 0x21 (v2, PROXY), 0x12 (UDP over IPv4) or 0x22 (UDP over IPv6),
length, source = the client (or --src-override ADDR:PORT), destination = the address
and port of --listen. Both must be of --listen's family.

A flow is forgotten after --idle seconds without a datagram either way (a new flow,
new socket and new header follow); beyond --max-flows the oldest is dropped. The
program exits after --lifetime seconds, on SIGTERM or SIGINT.

--log FILE gets one line per event, flushed at once:
  flow CLIENT via PROXYADDR:PORT src=SRC      a new flow and its upstream socket
  up CLIENT via PROXYADDR:PORT header=yes|no|only bytes=N
  down CLIENT bytes=N                          a reply relayed to the client
  expire CLIENT | evict CLIENT
Addresses are written ADDR:PORT (IPv4) or [ADDR]:PORT (IPv6).
"""
import argparse
import os
import selectors
import signal
import socket
import struct
import sys
import time

SIG = b'\r\n\r\n\x00\r\nQUIT\n'


def parse_addr(text):
    """'127.0.0.1:53' or '[::1]:53' -> (family, (host, port))."""
    host, sep, port = text.rpartition(':')
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError('expected ADDR:PORT or [ADDR]:PORT: %r' % text)
    if host.startswith('[') and host.endswith(']'):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET, (host, int(port))


def fmt(addr):
    host, port = addr[0], addr[1]
    return '[%s]:%d' % (host, port) if ':' in host else '%s:%d' % (host, port)


def header(family, src, dst):
    """A v2 PROXY header for a UDP datagram from src to dst (both of family)."""
    fam = 0x12 if family == socket.AF_INET else 0x22
    body = (socket.inet_pton(family, src[0]) + socket.inet_pton(family, dst[0]) +
            struct.pack('!HH', src[1], dst[1]))
    return SIG + bytes([0x21, fam]) + struct.pack('!H', len(body)) + body


class Flow:
    def __init__(self, client, sock):
        self.client = client
        self.sock = sock
        self.last = time.monotonic()
        self.sent = 0           # datagrams sent upstream


class Proxy:
    def __init__(self, a):
        self.a = a
        self.family, listen = a.listen
        ufam, self.upstream = a.upstream
        if ufam != self.family:
            sys.exit('udpproxy: --listen and --upstream must be of one family')
        self.override = None
        if a.src_override:
            ofam, self.override = a.src_override
            if ofam != self.family:
                sys.exit('udpproxy: --src-override must be of --listen\'s family')
        self.log_file = open(a.log, 'a') if a.log else None
        self.sel = selectors.DefaultSelector()
        self.front = socket.socket(self.family, socket.SOCK_DGRAM)
        self.front.bind(listen)
        self.front_addr = self.front.getsockname()[:2]
        self.sel.register(self.front, selectors.EVENT_READ, None)
        self.flows = {}         # client (host, port) -> Flow, oldest first

    def log(self, line):
        if self.log_file:
            self.log_file.write(line + '\n')
            self.log_file.flush()

    def new_flow(self, client):
        if len(self.flows) >= self.a.max_flows:
            oldest = next(iter(self.flows))
            self.log('evict %s' % fmt(oldest))
            self.drop(oldest)
        s = socket.socket(self.family, socket.SOCK_DGRAM)
        s.bind((self.a.upstream_source or ('127.0.0.1' if self.family == socket.AF_INET
                                           else '::1'), 0))
        s.connect(self.upstream)
        f = Flow(client, s)
        self.flows[client] = f
        self.sel.register(s, selectors.EVENT_READ, f)
        self.log('flow %s via %s src=%s' % (fmt(client), fmt(s.getsockname()),
                                            fmt(self.override or client)))
        return f

    def drop(self, client):
        f = self.flows.pop(client)
        self.sel.unregister(f.sock)
        f.sock.close()

    def from_client(self):
        data, client = self.front.recvfrom(65535)
        client = client[:2]
        f = self.flows.get(client) or self.new_flow(client)
        f.last = time.monotonic()
        hdr = header(self.family, self.override or client, self.front_addr)
        via = fmt(f.sock.getsockname())
        mode = self.a.mode
        try:
            if mode == 'every' or (mode == 'first-inline' and f.sent == 0):
                f.sock.send(hdr + data)
                self.log('up %s via %s header=yes bytes=%d' % (fmt(client), via, len(data)))
            else:
                if mode == 'first' and f.sent == 0:
                    f.sock.send(hdr)
                    self.log('up %s via %s header=only bytes=0' % (fmt(client), via))
                f.sock.send(data)
                self.log('up %s via %s header=no bytes=%d' % (fmt(client), via, len(data)))
            f.sent += 1
        except OSError as e:    # ECONNREFUSED from an earlier datagram: keep going
            self.log('error %s: %s' % (fmt(client), e))

    def from_upstream(self, f):
        try:
            data = f.sock.recv(65535)
        except OSError as e:
            self.log('error %s: %s' % (fmt(f.client), e))
            return
        f.last = time.monotonic()
        self.front.sendto(data, f.client)
        self.log('down %s bytes=%d' % (fmt(f.client), len(data)))

    def expire(self):
        now = time.monotonic()
        for client in [c for c, f in self.flows.items() if now - f.last > self.a.idle]:
            self.log('expire %s' % fmt(client))
            self.drop(client)

    def run(self):
        if self.a.port_file:
            tmp = self.a.port_file + '.tmp'
            with open(tmp, 'w') as pf:
                pf.write('%d\n' % self.front_addr[1])
            os.rename(tmp, self.a.port_file)
        end = time.monotonic() + self.a.lifetime
        while time.monotonic() < end:
            for key, _ in self.sel.select(timeout=0.1):
                if key.data is None:
                    self.from_client()
                else:
                    self.from_upstream(key.data)
            self.expire()
        self.log('lifetime over')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--listen', type=parse_addr, required=True,
                   help='ADDR:PORT or [ADDR]:PORT (port 0: chosen, see --port-file)')
    p.add_argument('--upstream', type=parse_addr, required=True)
    p.add_argument('--mode', choices=('every', 'first', 'first-inline'), default='every')
    p.add_argument('--src-override', type=parse_addr,
                   help='source to put in every header instead of the client')
    p.add_argument('--upstream-source', help='address the upstream sockets bind to')
    p.add_argument('--log', help='file for the event lines')
    p.add_argument('--port-file', help='file that gets the listen port once bound')
    p.add_argument('--idle', type=float, default=60.0, help='flow idle seconds')
    p.add_argument('--max-flows', type=int, default=256)
    p.add_argument('--lifetime', type=float, default=120.0, help='exit after seconds')
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        Proxy(a).run()
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
