#!/usr/bin/env python3
"""Real HTTP/1.1 traffic for the UI's browser tests, against two real servers
(tap-cli/tests/peers/http_server.py) on loopback: plain requests, every kind
of body the entry view decodes (JSON, form, XML, protobuf, binary, a body
larger than kubetap keeps), and hostile strings (HTML and JavaScript in
paths, headers and bodies) that must render as text. Writes what it sent and
what the servers answered to EXPECTED (JSON), the tests' only source of
expected values.

Usage: traffic.py PORT_A PORT_B EXPECTED"""
import http.client
import json
import os
import sys

port_a, port_b, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sent = []


def varint(n):
    b = bytearray()
    while True:
        x = n & 0x7F
        n >>= 7
        if n:
            b.append(x | 0x80)
        else:
            b.append(x)
            return bytes(b)


def pb_field(num, wire, payload):
    return varint(num << 3 | wire) + payload


# message { 1: 150, 2: "kubetap", 3: { 1: 42 } }
inner = pb_field(1, 0, varint(42))
PROTOBUF = pb_field(1, 0, varint(150)) + pb_field(2, 2, varint(7) + b"kubetap") + pb_field(3, 2, varint(len(inner)) + inner)
BINARY = bytes(range(256))
HUGE = b"kubetap huge body line\n" * (3 * 1024 * 1024 // 23)
HOSTILE_BODY = (
    b"<script>window.__pwned='body-script';alert('body')</script>"
    b"<img src=x onerror=\"window.__pwned='body-img';alert('img')\">"
    b"<a href=\"javascript:alert('link')\">click</a>"
)


def request(conn, port, method, path, headers=None, body=None, kind=None):
    headers = dict(headers or {})
    headers.setdefault("X-Kubetap-Test", str(len(sent)))
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    sent.append(
        {
            "port": port,
            "method": method,
            "path": path,
            "status": resp.status,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body_kind": kind,
            "request_body_size": len(body) if body else 0,
            # Small bodies as sent, for the tests to compare with what the UI shows.
            "request_body_hex": body.hex() if body and len(body) <= 4096 else None,
            "response_body_size": len(data),
            "response_content_type": resp.getheader("Content-Type"),
        }
    )


a = http.client.HTTPConnection("127.0.0.1", port_a, timeout=30)
request(a, port_a, "GET", "/hello")
request(a, port_a, "GET", "/json?a=1&b=two")
request(a, port_a, "GET", "/missing")
request(
    a, port_a, "POST", "/echo",
    {"Content-Type": "application/json", "Authorization": "Bearer kubetap-secret-token"},
    json.dumps({"name": "kubetap", "items": [1, 2, 3], "nested": {"ok": True}}).encode(), "json",
)
request(a, port_a, "POST", "/create", {"Content-Type": "application/x-www-form-urlencoded"},
        b"name=kubetap&x=1&note=hello+world%21", "form")
request(a, port_a, "POST", "/echo", {"Content-Type": "application/xml"},
        b'<order><id>7</id><item sku="a1">pen</item><item sku="b2">ink</item></order>', "xml")
request(a, port_a, "POST", "/echo", {"Content-Type": "application/x-protobuf"}, PROTOBUF, "protobuf")
request(a, port_a, "POST", "/echo", {"Content-Type": "application/octet-stream"}, BINARY, "binary")
request(a, port_a, "POST", "/echo", {"Content-Type": "text/plain"}, HUGE, "huge")
request(a, port_a, "GET", "/size/2000000")
# Hostile strings: in the path, the query, headers and a body. None may run.
request(a, port_a, "GET", "/<script>window.__pwned='path';alert('path')</script>")
request(a, port_a, "GET", "/x?q=<svg/onload=alert('svg')>&r=\"><img/src=x/onerror=alert('q')>")
request(a, port_a, "GET", "/javascript:alert('js-path')", {
    "X-Evil": "<img src=x onerror=\"window.__pwned='header';alert('header')\">",
    "Referer": "javascript:alert('referer')",
    "User-Agent": "<script>alert('ua')</script>",
})
request(a, port_a, "POST", "/echo", {"Content-Type": "text/html"}, HOSTILE_BODY, "hostile")
a.close()

# A second server: its own edge in the service map, with its own count.
b = http.client.HTTPConnection("127.0.0.1", port_b, timeout=30)
for i in range(7):
    request(b, port_b, "GET", f"/hello?n={i}")
request(b, port_b, "GET", "/missing")
b.close()

tmp = out + ".partial"
with open(tmp, "w") as f:
    json.dump({"port_a": port_a, "port_b": port_b, "requests": sent, "protobuf_hex": PROTOBUF.hex()}, f, indent=1)
os.replace(tmp, out)
print(f"traffic: {len(sent)} requests", file=sys.stderr)
