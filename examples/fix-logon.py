#!/usr/bin/env python3
"""Sends a FIX 4.4 Logon to HOST:PORT as SENDER to TARGET and prints the answer, with SOH
shown as |. A test aid for examples/fix.yaml."""
import socket
import sys


def message(fields):
    body = "".join(f"{tag}={value}\x01" for tag, value in fields)
    head = f"8=FIX.4.4\x019={len(body)}\x01"
    checksum = sum((head + body).encode()) % 256
    return (head + body + f"10={checksum:03}\x01").encode()


host, port = sys.argv[1].rsplit(":", 1)
sender, target = sys.argv[2], sys.argv[3]
logon = message([(35, "A"), (49, sender), (56, target), (34, 1),
                 (52, "20261128-12:00:00.000"), (98, 0), (108, 30)])
with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(logon)
    print(s.recv(4096).decode(errors="replace").replace("\x01", "|"))
