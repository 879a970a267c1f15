#!/usr/bin/env python3
"""udpreply: where a UDP server's reply to a client goes, when what the replying thread
learned last is not what the tables say now. Run under the shim with
PROXYSHIM_UDP_PORTS=PORT and 127.0.0.21, 127.0.0.22 and ::1 trusted. The proxy sockets
(127.0.0.21, 127.0.0.22, [::1]) and the client's own socket (127.0.0.11) are plain
sockets of this process; the server socket is 127.0.0.1:PORT.

  moved PORT  thread A receives client C through proxy 1; thread B then receives C
              through proxy 2; thread A answers C. Prints 'reply via=proxy2' (the
              table's latest mapping) or 'via=proxy1' / 'via=client' / 'via=none'.
  idle PORT   the main thread receives C through proxy 1, waits past
              PROXYSHIM_UDP_IDLE_MS (taken from the environment), answers C: the flow
              is gone, so 'reply via=client' is right.
  family PORT two more sockets of PORT: 127.0.0.2 learns C through proxy 1, [::1]
              (IPv6 only) through the IPv6 proxy [::1]; the server socket, which never
              saw C, answers C: the IPv6 proxy cannot be reached from an IPv4 socket,
              so the walk over the port's sockets goes on to 'reply via=proxy1'.
Bounded: every receive times out after 5 s."""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from udpproxy import header  # noqa: E402  (the v2 DGRAM header the test proxy writes)

CLIENT = ("127.0.0.11", 0)


def bound(addr, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(addr)
    s.settimeout(5)
    return s


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    server = bound(("127.0.0.1", port))
    proxy1, proxy2, client = bound(("127.0.0.21", 0)), bound(("127.0.0.22", 0)), bound(CLIENT)
    proxy6 = bound(("::1", 0), socket.AF_INET6)
    c = client.getsockname()
    dst = ("127.0.0.1", port)

    def through(proxy, payload, to=dst):
        proxy.sendto(header(socket.AF_INET, c, dst) + payload, to)

    def receive(expect, sock=server):
        data, frm = sock.recvfrom(2048)
        if data != expect or frm[:2] not in (c, ("::ffff:" + c[0], c[1])):
            print(f"unexpected from={frm[0]}:{frm[1]} payload={data!r}", flush=True)
            sys.exit(2)

    if mode == "moved":
        b_turn, a_turn = threading.Event(), threading.Event()

        def thread_b():
            b_turn.wait(5)
            through(proxy2, b"two")
            receive(b"two")
            a_turn.set()

        t = threading.Thread(target=thread_b)
        t.start()
        through(proxy1, b"one")
        receive(b"one")
        b_turn.set()
        a_turn.wait(5)
        t.join(5)
    elif mode == "idle":
        through(proxy1, b"one")
        receive(b"one")
        time.sleep(int(os.environ["PROXYSHIM_UDP_IDLE_MS"]) / 1000 + 0.2)
    else:
        sibling, six = bound(("127.0.0.2", port)), bound(("::1", port), socket.AF_INET6)
        through(proxy6, b"six", ("::1", port))
        receive(b"six", six)
        through(proxy1, b"four", ("127.0.0.2", port))
        receive(b"four", sibling)
    server.sendto(b"reply", c)

    for name, s in (("proxy1", proxy1), ("proxy2", proxy2), ("proxy6", proxy6),
                    ("client", client)):
        s.settimeout(0.3)
        try:
            if s.recvfrom(2048)[0] == b"reply":
                print(f"reply via={name}", flush=True)
                return
        except socket.timeout:
            pass
    print("reply via=none", flush=True)


main()
