#!/usr/bin/env python3
"""A real HTTP/1.1 server for kubetap's tests: keep-alive, chunked with
trailers, gzip, POST echo (with 100-continue), HEAD, 204, 304, 404,
close-delimited bodies and a 101 upgrade. Usage: http_server.py PORT"""
import gzip
import http.server
import json
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/hello":
            self.send_body(200, b"hello, kubetap\n")
        elif path.startswith("/size/"):
            n = int(path.rsplit("/", 1)[1])
            self.send_body(200, b"x" * n, "application/octet-stream")
        elif path == "/json":
            body = json.dumps({"items": list(range(50)), "path": self.path}).encode()
            self.send_body(200, body, "application/json")
        elif path == "/gzip":
            body = gzip.compress(json.dumps({"compressed": True, "n": list(range(200))}).encode())
            self.send_body(200, body, "application/json", [("Content-Encoding", "gzip")])
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            if self.command == "HEAD":
                return
            for part in (b"first chunk\n", b"second, longer chunk\n" * 20, b"last\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Checksum: 1234\r\n\r\n")
        elif path == "/nocontent":
            self.send_response(204)
            self.end_headers()
        elif path == "/cached":
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()
        elif path == "/close":
            # No length: the body ends when the connection closes.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"until close\n" * 10)
            self.close_connection = True
        elif path == "/upgrade":
            self.send_response(101)
            self.send_header("Upgrade", "kubetap-test")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            data = self.rfile.read(5)
            self.wfile.write(b"GET / HTTP/1.1\r\n\r\n" + data)  # looks like HTTP, must not be parsed
            self.close_connection = True
        else:
            self.send_body(404, b"not found\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.send_body(201 if self.path == "/create" else 200, body, self.headers.get("Content-Type", "text/plain"))

    do_PUT = do_POST
    do_DELETE = do_GET


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    srv.serve_forever()
