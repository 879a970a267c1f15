#!/usr/bin/python3
"""synhold: how long silent untrusted connections can hold a trusted proxy out of a
listener whose kernel holds connections until they speak (the shim's TCP_DEFER_ACCEPT
under PROXYSHIM_UNTRUSTED=reject). Run as root inside a network namespace of its own
(unshare -n): it brings lo up and turns SYN cookies off there, so that a full SYN queue
refuses new connections.

  synhold.py -- SERVER-COMMAND...
      SERVER-COMMAND (the shim's environment and `synhold.py --serve`) is started; 16
      clients from 127.0.0.50 connect to it and stay silent, filling its SYN queue
      (backlog 8); then the proxy 127.0.0.10 connects, sends a v1 header and "hi", and
      the time until the server's answer is printed: "proxy answered after S", or
      "proxy failed after S: ERROR".
  synhold.py --serve   the server: 127.0.0.1:7000, backlog 8, answers "ok" + the first
      bytes of each connection."""
import socket
import subprocess
import sys
import time

PORT = 7000

if sys.argv[1] == "--serve":
    s = socket.socket()
    s.bind(("127.0.0.1", PORT))
    s.listen(8)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.settimeout(5)
        try:
            c.sendall(b"ok " + c.recv(100))
        except OSError:
            pass
        c.close()

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open("/proc/sys/net/ipv4/tcp_syncookies", "w") as f:
    f.write("0")
server = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE)
try:
    if server.stdout.readline() != b"ready\n":
        sys.exit("server did not start")
    silent = []
    for _ in range(16):
        s = socket.socket()
        s.bind(("127.0.0.50", 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", PORT))
        except BlockingIOError:
            pass
        silent.append(s)
    time.sleep(0.3)
    p = socket.socket()
    p.bind(("127.0.0.10", 0))
    p.settimeout(20)
    t0 = time.monotonic()
    try:
        p.connect(("127.0.0.1", PORT))
        p.sendall(b"PROXY TCP4 127.0.0.11 127.0.0.1 10011 7000\r\nhi")
        answer = p.recv(100)
        print(f"proxy answered after {time.monotonic() - t0:.1f} ({answer!r})", flush=True)
    except OSError as e:
        print(f"proxy failed after {time.monotonic() - t0:.1f}: {e}", flush=True)
finally:
    server.kill()
    server.wait()
