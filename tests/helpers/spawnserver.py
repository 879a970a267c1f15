#!/usr/bin/env python3
"""A server that starts a program for a client, the way CPython servers do: it accepts
one connection (its own proxy's, from 127.0.0.10, with a v1 header naming
127.0.0.77:5555), runs subprocess.run(["true"]) (CPython 3.10 and later vfork the child,
which closes every inherited descriptor before exec), then asks getpeername again.
Prints "before ADDR" and "after ADDR"."""
import socket
import subprocess

lsn = socket.socket()
lsn.bind(("127.0.0.1", 0))
lsn.listen(8)
port = lsn.getsockname()[1]
proxy = socket.socket()
proxy.bind(("127.0.0.10", 0))
proxy.connect(("127.0.0.1", port))
proxy.sendall(b"PROXY TCP4 127.0.0.77 127.0.0.1 5555 %d\r\nhello" % port)
conn, _ = lsn.accept()
print("before %s:%d" % conn.getpeername(), flush=True)
subprocess.run(["true"], check=True)
print("after %s:%d" % conn.getpeername(), flush=True)
