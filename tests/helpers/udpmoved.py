#!/usr/bin/env python3
"""udpmoved: where a UDP server's reply goes when the client's flow changed after the
replying thread received from it. Run under the shim with PROXYSHIM_UDP_PORTS=PORT and
127.0.0.21 and 127.0.0.22 trusted. Two proxy sockets (127.0.0.21, 127.0.0.22) and the
client's own socket (127.0.0.11) are plain sockets of this process; the server socket
is 127.0.0.1:PORT.

  moved PORT  thread A receives client C through proxy 1; thread B then receives C
              through proxy 2; thread A answers C. Prints 'reply via=proxy2' (the
              table's latest mapping) or 'via=proxy1' / 'via=client' / 'via=none'.
  idle PORT   the main thread receives C through proxy 1, waits past
              PROXYSHIM_UDP_IDLE_MS (taken from the environment), answers C: the flow
              is gone, so 'reply via=client' is right.
Bounded: every receive times out after 5 s."""
import os
import socket
import struct
import sys
import threading
import time

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
CLIENT = ("127.0.0.11", 0)


def header(src, dst):
    """A v2 PROXY header for a UDP-over-IPv4 datagram (family 0x12)."""
    block = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + struct.pack("!HH", src[1], dst[1])
    return SIG + bytes([0x21, 0x12]) + struct.pack("!H", len(block)) + block


def bound(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(5)
    return s


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    server = bound(("127.0.0.1", port))
    proxy1, proxy2, client = bound(("127.0.0.21", 0)), bound(("127.0.0.22", 0)), bound(CLIENT)
    c = client.getsockname()
    dst = ("127.0.0.1", port)

    def through(proxy, payload):
        proxy.sendto(header(c, dst) + payload, dst)

    def receive(expect):
        data, frm = server.recvfrom(2048)
        if data != expect or frm != c:
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
    else:
        through(proxy1, b"one")
        receive(b"one")
        time.sleep(int(os.environ["PROXYSHIM_UDP_IDLE_MS"]) / 1000 + 0.2)
    server.sendto(b"reply", c)

    for name, s in (("proxy1", proxy1), ("proxy2", proxy2), ("client", client)):
        s.settimeout(0.3)
        try:
            if s.recvfrom(2048)[0] == b"reply":
                print(f"reply via={name}", flush=True)
                return
        except socket.timeout:
            pass
    print("reply via=none", flush=True)


main()
