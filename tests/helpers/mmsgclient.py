#!/usr/bin/env python3
"""mmsgclient HOST PORT: a TCP client that connects without blocking, waits until the
connection is up, then sends "hello\\n" with libc's sendmmsg() (through ctypes, so an
LD_PRELOAD interposer sees the call) and shuts down writing. Exit 0 when all 6 bytes
went out in one message; bounded by a 5 s timeout."""
import ctypes
import select
import socket
import sys


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(IOVec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]


libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setblocking(False)
s.connect_ex((sys.argv[1], int(sys.argv[2])))
if not select.select([], [s], [], 5)[1]:
    sys.exit("mmsgclient: connect did not finish")
data = ctypes.create_string_buffer(b"hello\n", 6)
iov = IOVec(ctypes.cast(data, ctypes.c_void_p), 6)
msg = MMsgHdr(MsgHdr(None, 0, ctypes.pointer(iov), 1, None, 0, 0), 0)
n = libc.sendmmsg(s.fileno(), ctypes.byref(msg), 1, 0)
if n != 1 or msg.len != 6:
    sys.exit("mmsgclient: sendmmsg returned %d (msg_len %d, errno %d)"
             % (n, msg.len, ctypes.get_errno()))
s.shutdown(socket.SHUT_WR)
