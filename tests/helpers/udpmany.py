#!/usr/bin/env python3
"""udpmany: N UDP sockets bound to ports the kernel picks on 127.0.0.1 (all selected
when PROXYSHIM_UDP_PORTS covers them, so more than the shim has flow tables for); the
last one receives one datagram sent by the test. Prints 'port=P' once bound, then
'read0=LEN' (a read() of 0 bytes: must return at once and leave the datagram queued),
then 'from=ADDR:PORT payload=BYTES' of the datagram. Bounded by a 10 s timeout."""
import os
import select
import socket
import sys

n = int(sys.argv[1])
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
last = socks[-1]
print("port=%d" % last.getsockname()[1], flush=True)
if not select.select([last], [], [], 10)[0]:
    sys.exit("udpmany: nothing arrived")
print("read0=%d" % len(os.read(last.fileno(), 0)), flush=True)
data, addr = last.recvfrom(2048)
print("from=%s:%d payload=%r" % (addr[0], addr[1], data), flush=True)
