"""A small SOCKS5 proxy (RFC 1928, RFC 1929) for the SOCKS oracle test.

Usage: peer.py PORT [USER PASSWORD]. Listens on 127.0.0.1:PORT; with a user
and password it asks every client for them (method 2), else for nothing
(method 0). CONNECT only: a destination that refuses gets reply 5. Prints
"ready" on stderr once it listens; serves until killed.
"""

import socket
import sys
import threading


def exact(c, n):
    b = b""
    while len(b) < n:
        part = c.recv(n - len(b))
        if not part:
            raise EOFError
        b += part
    return b


def relay(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def handle(c, creds):
    try:
        _, n = exact(c, 2)
        methods = exact(c, n)
        want = 2 if creds else 0
        if want not in methods:
            c.sendall(b"\x05\xff")
            return
        c.sendall(bytes([5, want]))
        if want == 2:
            _, ulen = exact(c, 2)
            user = exact(c, ulen)
            (plen,) = exact(c, 1)
            password = exact(c, plen)
            ok = (user.decode(), password.decode()) == creds
            c.sendall(bytes([1, 0 if ok else 1]))
            if not ok:
                return
        _, cmd, _, atyp = exact(c, 4)
        if atyp == 1:
            host = socket.inet_ntoa(exact(c, 4))
        elif atyp == 3:
            (n,) = exact(c, 1)
            host = exact(c, n).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, exact(c, 16))
        port = int.from_bytes(exact(c, 2), "big")
        if cmd != 1:
            c.sendall(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        try:
            r = socket.create_connection((host, port), timeout=5)
        except OSError:
            c.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
            return
        bound_ip, bound_port = r.getsockname()[:2]
        c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton(bound_ip) + bound_port.to_bytes(2, "big"))
        t = threading.Thread(target=relay, args=(r, c), daemon=True)
        t.start()
        relay(c, r)
        t.join()
        r.close()
    except (EOFError, OSError):
        pass
    finally:
        c.close()


def main():
    port = int(sys.argv[1])
    creds = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else None
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    print("ready", file=sys.stderr, flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, creds), daemon=True).start()


main()
