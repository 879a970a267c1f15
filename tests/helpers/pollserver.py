#!/usr/bin/python3
"""pollserver: a one-thread server on a non-blocking listener, driven by poll()
(select.poll, default) or select() (--select), for the tests of kept connections.

One line of stdout per connection, after the client's EOF (or RESET):
    conn accept=ADDR peer=ADDR data="ESCAPED"
accept= is the address accept() returned, peer= getpeername(); data= is escaped as
testserver does (printable ASCII as is, \\r \\n \\\\ \\" and \\xNN). The server then
writes "OK <peer>\\n" and closes. Exits 0 after --count connections, 3 at --hard-timeout.

--listeners N: N listeners in the same loop, their ports one per line in --port-file.
--idle-fds N: N more descriptors (read ends of pipes nobody writes) in every poll()
array, for the tests of large arrays (RLIMIT_NOFILE raised to its hard limit).
"""
import argparse
import os
import resource
import select
import signal
import socket
import sys


def esc(data):
    out = []
    for b in data:
        if b == 13:
            out.append('\\r')
        elif b == 10:
            out.append('\\n')
        elif b in (92, 34):
            out.append('\\' + chr(b))
        elif 32 <= b < 127:
            out.append(chr(b))
        else:
            out.append('\\x%02x' % b)
    return ''.join(out)


def fmt(addr):
    if len(addr) == 4:
        return '[%s]:%d' % (addr[0], addr[1])
    return '%s:%d' % (addr[0], addr[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port-file', required=True)
    ap.add_argument('--select', action='store_true', help='select() instead of poll()')
    ap.add_argument('--count', type=int, default=0)
    ap.add_argument('--hard-timeout', type=int, default=30)
    ap.add_argument('--listeners', type=int, default=1)
    ap.add_argument('--idle-fds', type=int, default=0)
    a = ap.parse_args()

    signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
    signal.alarm(a.hard_timeout)

    if a.idle_fds:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lsts = {}
    for _ in range(a.listeners):
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(('127.0.0.1', 0))
        lst.listen(128)
        lst.setblocking(False)
        lsts[lst.fileno()] = lst
    idle = []
    while len(idle) < a.idle_fds:
        r, w = os.pipe()
        idle += [r, w] if len(idle) + 1 < a.idle_fds else [r]
    tmp = a.port_file + '.tmp'
    with open(tmp, 'w') as f:
        for lst in lsts.values():
            f.write('%d\n' % lst.getsockname()[1])
    os.rename(tmp, a.port_file)

    conns = {}   # fd -> [socket, data, accept address]
    served = 0
    poller = None if a.select else select.poll()
    if poller:
        for fd in list(lsts) + idle:
            poller.register(fd, select.POLLIN)

    def finish(fd, end):
        nonlocal served
        s, data, acc = conns.pop(fd)
        if poller:
            poller.unregister(fd)
        try:
            peer = fmt(s.getpeername())
        except OSError as e:
            peer = 'ERROR(%s)' % e.strerror
        shown = '"%s"' % esc(data) if data else end
        print('conn accept=%s peer=%s data=%s' % (acc, peer, shown), flush=True)
        try:
            s.send(('OK %s\n' % peer).encode())
        except OSError:
            pass
        s.close()
        served += 1
        if a.count and served >= a.count:
            sys.exit(0)

    while True:
        if poller:
            ready = [fd for fd, _ in poller.poll(100)]
        else:
            r, _, _ = select.select(list(lsts) + idle + list(conns), [], [], 0.1)
            ready = r
        for fd in ready:
            if fd in lsts:
                lst = lsts[fd]
                while True:
                    try:
                        s, addr = lst.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    conns[s.fileno()] = [s, b'', fmt(addr)]
                    if poller:
                        poller.register(s.fileno(), select.POLLIN)
                continue
            if fd not in conns:
                continue
            c = conns[fd]
            while True:
                try:
                    chunk = c[0].recv(4096)
                except BlockingIOError:
                    break
                except ConnectionResetError:
                    finish(fd, 'RESET')
                    break
                if not chunk:
                    finish(fd, 'EOF')
                    break
                c[1] += chunk


if __name__ == '__main__':
    main()
