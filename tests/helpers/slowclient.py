#!/usr/bin/python3
"""slowclient: a trusted proxy that is slow with its header, for the tests of kept
connections. Every wait is bounded by --timeout.

One connection (default):
  connects from --src, appends "connected" to --status, sends --part (a file of bytes;
  one byte every --trickle ms if given), appends "held", waits until the file --release
  exists (if given), sends --rest, half-closes (unless --keep), reads the reply to EOF
  and prints it on stdout; appends "end=eof|reset|timeout bytes=N" to --status.
  Exit status 0, or 2 if connecting or sending failed (the line "error=..." says why).

Many connections (--many N):
  opens N connections from --src, each sending --part and keeping its write side open,
  appends "held N", then waits until the server has closed all of them; appends
  "closed=K" (EOF or reset seen on K of them). Exit status 0 if all N were closed,
  4 otherwise.
"""
import argparse
import os
import select
import socket
import sys
import time


def status(path, line):
    if path:
        with open(path, 'a') as f:
            f.write(line + '\n')


def connect(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((a.src, 0))
    s.settimeout(a.timeout)
    s.connect((a.host, a.port))
    return s


def one(a, part, rest, deadline):
    try:
        s = connect(a)
    except OSError as e:
        status(a.status, 'error=connect %s' % e)
        return 2
    status(a.status, 'connected')
    try:
        if a.trickle:
            for i in range(len(part)):
                s.sendall(part[i:i + 1])
                time.sleep(a.trickle / 1000.0)
        else:
            s.sendall(part)
    except OSError as e:
        status(a.status, 'error=send part %s' % e)
        return 2
    status(a.status, 'held')
    if a.release:
        while not os.path.exists(a.release):
            if time.monotonic() > deadline:
                status(a.status, 'error=no release')
                return 2
            time.sleep(0.02)
    try:
        if rest:
            s.sendall(rest)
        if not a.keep:
            s.shutdown(socket.SHUT_WR)
    except OSError as e:
        status(a.status, 'error=send rest %s' % e)
        return 2
    reply, end = b'', 'timeout'
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            break
        except ConnectionResetError:
            end = 'reset'
            break
        if not chunk:
            end = 'eof'
            break
        reply += chunk
    sys.stdout.write(reply.decode('latin-1'))
    sys.stdout.flush()
    status(a.status, 'end=%s bytes=%d' % (end, len(reply)))
    return 0


def many(a, part, deadline):
    socks = []
    for _ in range(a.many):
        s = connect(a)
        s.sendall(part)
        s.setblocking(False)
        socks.append(s)
    status(a.status, 'held %d' % len(socks))
    open_ = {s.fileno(): s for s in socks}
    closed = 0
    while open_ and time.monotonic() < deadline:
        r, _, _ = select.select(list(open_), [], [], 0.1)
        for fd in r:
            s = open_[fd]
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b''
            if not data:   # application bytes would be a failure: never expected here
                closed += 1
            else:
                status(a.status, 'error=data %r' % data[:64])
            del open_[fd]
            s.close()
    status(a.status, 'closed=%d' % closed)
    return 0 if closed == a.many else 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--src', required=True)
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--part', required=True, help='file: bytes sent first')
    ap.add_argument('--rest', help='file: bytes sent after the release')
    ap.add_argument('--trickle', type=int, default=0, help='ms between bytes of --part')
    ap.add_argument('--release', help='file whose existence releases --rest')
    ap.add_argument('--status', help='file to append progress lines to')
    ap.add_argument('--keep', action='store_true', help='no half-close after sending')
    ap.add_argument('--many', type=int, default=0)
    ap.add_argument('--timeout', type=float, default=30.0)
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout
    with open(a.part, 'rb') as f:
        part = f.read()
    rest = b''
    if a.rest:
        with open(a.rest, 'rb') as f:
            rest = f.read()
    if a.many:
        return many(a, part, deadline)
    return one(a, part, rest, deadline)


if __name__ == '__main__':
    sys.exit(main())
