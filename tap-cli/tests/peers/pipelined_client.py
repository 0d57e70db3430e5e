#!/usr/bin/env python3
"""Sends pipelined HTTP/1.1 requests (several in one write) and an upgrade,
then reads the answers. Usage: pipelined_client.py PORT"""
import socket
import sys
import time

port = int(sys.argv[1])


def drain(s, until_closed=False, seconds=2.0):
    s.settimeout(0.3)
    deadline = time.time() + seconds
    data = b""
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            if not until_closed:
                break
            continue
        if not chunk:
            break
        data += chunk
    return data


s = socket.create_connection(("127.0.0.1", port))
s.sendall(
    b"GET /hello?pipelined=1 HTTP/1.1\r\nHost: test\r\n\r\n"
    b"GET /json?pipelined=2 HTTP/1.1\r\nHost: test\r\n\r\n"
    b"GET /missing?pipelined=3 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
)
drain(s, until_closed=True)
s.close()

u = socket.create_connection(("127.0.0.1", port))
u.sendall(b"GET /upgrade HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: kubetap-test\r\n\r\n")
time.sleep(0.2)
u.sendall(b"\x81\x05hello")
drain(u, until_closed=True)
u.close()
