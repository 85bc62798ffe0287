#!/usr/bin/env python3
"""Sends the first segment of a plaintext MQ client (TSH, INITIAL_DATA, an ID structure with
CHANNEL and QMGR, ASCII) to HOST:PORT and prints what comes back. A test aid for
examples/mq.yaml; a real MQ client sends more fields, which the gateway passes on untouched."""
import socket
import struct
import sys

host, port = sys.argv[1].rsplit(":", 1)
channel, qmgr = sys.argv[2], sys.argv[3]
ident = (b"ID  " + bytes([13]) + bytes(19) + channel.ljust(20).encode()
         + bytes(4) + qmgr.ljust(48).encode() + bytes(8))
length = 28 + len(ident)
tsh = (b"TSH " + struct.pack(">I", length) + bytes([1, 0x01]) + bytes(14)
       + struct.pack(">H", 819) + bytes(2))
with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(tsh + ident)
    print(s.recv(4096).split(b"\n")[0].decode(errors="replace"))
