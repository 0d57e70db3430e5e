"""The demo shop's services: `cargo xtask demo` runs each role in its own
network-namespace "pod"; they find each other by name through the shop's
DNS server (dnsmasq in the `dns` pod) and talk real protocols:

    frontend   HTTP/1 server; per request it calls catalogue (HTTP/1),
               cache (Redis) and orders (gRPC)
    catalogue  HTTP/1 JSON API
    orders     gRPC server (shop.Orders), keeps orders in PostgreSQL
    loadgen    a steady mix of shoppers' requests to frontend, some failing

    python3 shop.py ROLE PORT

Redis is redis-server, PostgreSQL a real server, DNS dnsmasq: started by
xtask, not here. gRPC messages are protobuf written by hand (no protoc).
"""

import json
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOMAIN = "shop.svc"

ITEMS = [
    {"id": i, "name": name, "price_cents": price}
    for i, (name, price) in enumerate(
        [
            ("socks", 499),
            ("tea", 350),
            ("mug", 1200),
            ("sticker", 150),
            ("hoodie", 4500),
            ("cap", 1800),
            ("notebook", 700),
            ("pen", 250),
        ],
        start=1,
    )
]


def host(service):
    return f"{service}.{DOMAIN}"


# --- protobuf by hand -------------------------------------------------------


def varint(value):
    out = b""
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(number << 3 | 2) + varint(len(data)) + data


def parse(message):
    """{field number: [values]} of a flat message (varints and bytes)."""
    out, i = {}, 0
    while i < len(message):
        key, i = read_varint(message, i)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, i = read_varint(message, i)
        elif kind == 2:
            n, i = read_varint(message, i)
            value, i = message[i : i + n], i + n
        else:
            raise ValueError(f"wire type {kind}")
        out.setdefault(number, []).append(value)
    return out


def read_varint(data, i):
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


# --- catalogue ----------------------------------------------------------------


class Catalogue(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/items/"):
            try:
                item = next(i for i in ITEMS if i["id"] == int(self.path[7:]))
            except (ValueError, StopIteration):
                return self.reply(404, {"error": "no such item"})
            return self.reply(200, item)
        if self.path.startswith("/items"):
            return self.reply(200, {"items": ITEMS})
        self.reply(404, {"error": "not found"})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


# --- orders (gRPC) --------------------------------------------------------------


def orders_server(port):
    import grpc
    import pg8000.native

    db = pg8000.native.Connection("postgres", host=host("db"), database="postgres")
    lock = threading.Lock()
    db.run(
        "CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item int, qty int, at timestamptz DEFAULT now())"
    )

    def place(request, context):
        # PlaceOrder {1: item id, 2: quantity} -> {1: order id, 2: total cents}
        f = parse(request)
        item, qty = f.get(1, [0])[0], f.get(2, [1])[0]
        match = [i for i in ITEMS if i["id"] == item]
        if not match:
            context.abort(grpc.StatusCode.NOT_FOUND, f"item {item} does not exist")
        if qty > 10:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 10 per order")
        with lock:
            rows = db.run(
                "INSERT INTO orders (item, qty) VALUES (:item, :qty) RETURNING id",
                item=item,
                qty=qty,
            )
        return field_varint(1, rows[0][0]) + field_varint(2, match[0]["price_cents"] * qty)

    def recent(request, context):
        # ListOrders {1: limit} -> stream of {1: order id, 2: item, 3: qty}
        limit = parse(request).get(1, [5])[0]
        with lock:
            rows = db.run(
                "SELECT id, item, qty FROM orders ORDER BY id DESC LIMIT :n", n=limit
            )
        for oid, item, qty in rows:
            yield field_varint(1, oid) + field_varint(2, item) + field_varint(3, qty)

    handlers = {
        "PlaceOrder": grpc.unary_unary_rpc_method_handler(place),
        "ListOrders": grpc.unary_stream_rpc_method_handler(recent),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("shop.Orders", handlers),)
    )
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    server.wait_for_termination()


# --- frontend ------------------------------------------------------------------


class Frontend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cache = None
    orders = None

    def do_GET(self):
        if self.path == "/":
            return self.reply(200, {"items": self.items()})
        if self.path.startswith("/product/"):
            item_id = self.path[9:]
            key = f"product:{item_id}"
            cached = self.cache.get(key)
            if cached is not None:
                return self.reply(200, json.loads(cached), {"x-cache": "hit"})
            status, body = self.catalogue(f"/items/{item_id}")
            if status == 200:
                self.cache.set(key, json.dumps(body), ex=10)
            return self.reply(status, body, {"x-cache": "miss"})
        if self.path == "/orders":
            return self.reply(200, {"orders": self.recent_orders()})
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/order":
            return self.reply(404, {"error": "not found"})
        import grpc

        try:
            answer = self.orders.unary_unary("/shop.Orders/PlaceOrder")(
                field_varint(1, int(body.get("item", 0)))
                + field_varint(2, int(body.get("qty", 1))),
                timeout=5,
            )
        except grpc.RpcError as e:
            return self.reply(400, {"error": e.details(), "code": e.code().name})
        f = parse(answer)
        self.cache.incr("orders:placed")
        self.reply(201, {"order": f[1][0], "total_cents": f[2][0]})

    def items(self):
        cached = self.cache.get("catalogue")
        if cached is not None:
            return json.loads(cached)
        status, body = self.catalogue("/items")
        self.cache.set("catalogue", json.dumps(body["items"]), ex=5)
        return body["items"]

    def recent_orders(self):
        out = []
        for m in self.orders.unary_stream("/shop.Orders/ListOrders")(
            field_varint(1, 3), timeout=5
        ):
            f = parse(m)
            out.append({"id": f[1][0], "item": f[2][0], "qty": f[3][0]})
        return out

    def catalogue(self, path):
        try:
            with urllib.request.urlopen(f"http://{host('catalogue')}:8080{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def reply(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def frontend(port):
    import grpc
    import redis

    Frontend.cache = redis.Redis(host=host("cache"), port=6379)
    Frontend.orders = grpc.insecure_channel(f"{host('orders')}:9090")
    ThreadingHTTPServer(("0.0.0.0", port), Frontend).serve_forever()


# --- load generator --------------------------------------------------------------


def loadgen(port, rate=8.0):
    base = f"http://{host('frontend')}:{port}"
    rng = random.Random(7)
    while True:
        started = time.monotonic()
        roll = rng.random()
        try:
            # Each shopper resolves the name again, as short-lived clients do.
            socket.getaddrinfo(host("frontend"), port)
            if roll < 0.35:
                urllib.request.urlopen(base + "/", timeout=5).read()
            elif roll < 0.7:
                item = rng.randint(1, 10)  # 9 and 10 do not exist: 404s
                urllib.request.urlopen(f"{base}/product/{item}", timeout=5).read()
            elif roll < 0.9:
                order = {"item": rng.randint(1, 9), "qty": rng.choice([1, 1, 2, 3, 12])}
                req = urllib.request.Request(
                    base + "/order",
                    data=json.dumps(order).encode(),
                    headers={"content-type": "application/json"},
                )
                urllib.request.urlopen(req, timeout=5).read()
            else:
                urllib.request.urlopen(base + "/orders", timeout=5).read()
        except urllib.error.HTTPError:
            pass
        except OSError as e:
            print(f"loadgen: {e}", file=sys.stderr, flush=True)
            time.sleep(1)
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))


def main():
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "catalogue":
        ThreadingHTTPServer(("0.0.0.0", port), Catalogue).serve_forever()
    elif role == "orders":
        orders_server(port)
    elif role == "frontend":
        frontend(port)
    elif role == "loadgen":
        loadgen(port)
    else:
        sys.exit(f"unknown role {role}")


if __name__ == "__main__":
    main()
