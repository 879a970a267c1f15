#!/usr/bin/python3
"""deferaccept: whether the kernel holds a proxy's connection until it speaks. Run under
the shim. A listener on 127.0.0.1 (its port chosen by the kernel) and a client bound to
PROXY_ADDR in the same process. Prints, one per line:

  defer=N             TCP_DEFER_ACCEPT of the listener after listen()
  queued_silent=N     connections in the listener's accept queue 200 ms after the
                      client connected without sending anything (TCP_INFO tcpi_unacked)
  queued_spoken=N     the same 200 ms after it sent a v1 header and "hello\\n"
                      (not with --silent)
  accepted peer=ADDR:PORT data=BYTES
                      what accept() and the first read gave the server
  client closed after=S
                      --silent: when the server side closed the silent connection
  no connection       no accept() returned within 8 s

--preset N   the application sets TCP_DEFER_ACCEPT to N itself, before listen().
--fd N       the listener is descriptor N, listening already (handed over by the
             process that exec'd this one); listen() is called on it again, as a server
             does to set its own backlog.
--silent     the client never sends; it waits (8 s at most) for the close."""
import argparse
import select
import socket
import struct
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("proxy")
ap.add_argument("--preset", type=int)
ap.add_argument("--fd", type=int)
ap.add_argument("--silent", action="store_true")
a = ap.parse_args()


def queued(s):
    """tcpi_unacked of a listening socket: its accept queue's length."""
    return struct.unpack_from("I", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0]


if a.fd is not None:
    srv = socket.socket(fileno=a.fd)
else:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
if a.preset is not None:
    srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, a.preset)
srv.listen(16)
port = srv.getsockname()[1]
print(f"defer={srv.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT)}", flush=True)

cli = socket.socket()
cli.bind((a.proxy, 0))
cli.connect(("127.0.0.1", port))
t0 = time.monotonic()
time.sleep(0.2)
print(f"queued_silent={queued(srv)}", flush=True)


def wait_close():
    cli.settimeout(8)
    try:
        while cli.recv(100):
            pass
    except (socket.timeout, ConnectionError):
        pass
    print(f"client closed after={time.monotonic() - t0:.1f}", flush=True)


if a.silent:
    closer = threading.Thread(target=wait_close)
    closer.start()
else:
    cli.sendall(b"PROXY TCP4 127.0.0.11 127.0.0.1 10011 %d\r\nhello\n" % port)
    time.sleep(0.2)
    print(f"queued_spoken={queued(srv)}", flush=True)

srv.setblocking(False)
deadline = time.monotonic() + 8
while time.monotonic() < deadline and not (a.silent and not closer.is_alive()):
    select.select([srv], [], [], 0.1)
    try:
        conn, peer = srv.accept()
    except BlockingIOError:
        continue
    conn.settimeout(2)
    print(f"accepted peer={peer[0]}:{peer[1]} data={conn.recv(100)!r}", flush=True)
    conn.close()
    break
else:
    print("no connection", flush=True)
if a.silent:
    closer.join()
