#!/usr/bin/env python3
"""udpmany: N UDP sockets bound to ports the kernel picks on 127.0.0.1 (all selected when
PROXYSHIM_UDP_PORTS covers them). Prints 'ports=P1 P2 ... PN' once bound, then, for each
datagram, 'sock=I from=ADDR:PORT payload=BYTES' (I from 1); the first datagram of the
last socket is preceded by 'read0=LEN' (a read() of 0 bytes: must return at once and
leave the datagram queued). Exits 0 once every socket has received one datagram;
bounded by a 10 s timeout.

  --echo          answer each datagram with b'from=ADDR:PORT ' + payload, by sendto to
                  the reported source
  --sibling ADDR  a second socket bound to ADDR and the last socket's port
                  (SO_REUSEADDR, SO_REUSEPORT) sends the last socket's answers
  --fork          a fork child serves the sockets (the parent waits for it)
  --epoll         non-blocking sockets, all in one epoll instance; a socket reported
                  readable with nothing to read prints 'spurious sock=I'"""
import os
import select
import socket
import sys
import time

args = sys.argv[1:]
n = int(args.pop(0))
echo = "--echo" in args
fork = "--fork" in args
use_epoll = "--epoll" in args
sibling_addr = args[args.index("--sibling") + 1] if "--sibling" in args else None


def reusable():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return s


socks = []
for i in range(n):
    s = reusable() if sibling_addr and i == n - 1 else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
last = socks[-1]
sibling = None
if sibling_addr:
    sibling = reusable()
    sibling.bind((sibling_addr, last.getsockname()[1]))
print("ports=%s" % " ".join(str(s.getsockname()[1]) for s in socks), flush=True)

if fork:
    pid = os.fork()
    if pid:
        _, st = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(st))

ep = None
if use_epoll:
    ep = select.epoll()
    for s in socks:
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN)
by_fd = {s.fileno(): s for s in socks}


def wait(left):
    if left <= 0:
        return []
    if ep:
        return [by_fd[fd] for fd, _ in ep.poll(left)]
    return select.select(socks, [], [], left)[0]


pending = set(range(n))
read0 = False
end = time.monotonic() + 10
while pending:
    ready = wait(end - time.monotonic())
    if not ready:
        sys.exit("udpmany: no datagram for sockets %s" % sorted(i + 1 for i in pending))
    for s in ready:
        i = socks.index(s)
        if s is last and not read0:
            print("read0=%d" % len(os.read(s.fileno(), 0)), flush=True)
            read0 = True
        try:
            data, addr = s.recvfrom(2048)
        except BlockingIOError:
            print("spurious sock=%d" % (i + 1), flush=True)
            continue
        print("sock=%d from=%s:%d payload=%r" % (i + 1, addr[0], addr[1], data), flush=True)
        if echo:
            out = sibling if s is last and sibling else s
            out.sendto(b"from=%s:%d " % (addr[0].encode(), addr[1]) + data, addr)
        pending.discard(i)
