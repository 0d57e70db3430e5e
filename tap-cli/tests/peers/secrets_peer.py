"""Servers and clients of the secrets canary test (tests/secrets.rs).

Every canary comes from a JSON file (kind -> value), never from the
command line. A server or client takes a LABEL ("plain" or "tls") and uses
the canaries of its kinds with that suffix ("<kind>-<label>"), so each value
appears in one place of the traffic only.

    http     CANARIES LABEL HOST PORT [CERT KEY]  HTTP/1.1 server
    ws       CANARIES LABEL HOST PORT [CERT KEY]  WebSocket server
    grpc     HOST PORT                            gRPC server (grpcio, no stubs)
    kafka    HOST PORT [CERT KEY]                 a Kafka listener answering
                                                  ApiVersions, SaslHandshake and
                                                  SaslAuthenticate
    requests CANARIES LABEL BASE                  Python requests client
    wsclient CANARIES LABEL URL                   websockets client
    grpccall CANARIES HOST PORT                   grpcio client
    kafkasasl CANARIES LABEL HOST PORT            a Kafka SASL/PLAIN exchange
    stream   URL OUT [HEADER=VALUE ...]           records a hub's WebSocket
                                                  stream into OUT until killed

Non-secret values ("visible-...") are sent beside the secrets; the test
checks that they are shown.
"""

import functools
import http.server
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
from concurrent import futures


def load(path):
    with open(path) as f:
        return json.load(f)


def tls_context(argv):
    if len(argv) < 2:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(argv[0], argv[1])
    return context


# --- HTTP/1.1 ---------------------------------------------------------------


def http_server(canaries, label, host, port, rest):
    set_cookie = canaries["set-cookie-" + label]
    resp_token = canaries["response-json-token-" + label]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body, extra=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Served-By", "visible-server-" + label)
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.startswith("/login"):
                # A session cookie and a token in a JSON answer.
                self.answer(
                    200,
                    {"ok": True, "session": {"token": resp_token}},
                    [("Set-Cookie", "id=" + set_cookie + "; Path=/; HttpOnly")],
                )
            elif self.path.startswith("/missing"):
                self.answer(404, {"ok": False})
            else:
                self.answer(200, {"ok": True})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            if self.path.startswith("/graphql"):
                self.answer(200, {"data": {"login": {"ok": True}}})
            elif self.path.startswith("/form"):
                self.answer(201, {"ok": True})
            else:
                self.answer(200, {"ok": True})

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server((host, port), Handler)
    context = tls_context(rest)
    if context:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def requests_client(canaries, label, base):
    import requests
    import urllib3

    urllib3.disable_warnings()
    c = lambda kind: canaries[kind + "-" + label]
    s = requests.Session()
    # Per request: REQUESTS_CA_BUNDLE in the environment would override the
    # session's setting.
    s.request = functools.partial(s.request, verify=False)

    def check(r, status):
        assert r.status_code == status, (r.request.url, r.status_code, r.text)

    # JSON at depth.
    r = s.post(
        base + "/json",
        json={"a": {"b": [{"password": c("json-deep-password")}]},
              "token": c("json-token"), "note": "visible-note-" + label},
        headers={"X-Request-Id": "visible-json-" + label},
    )
    check(r, 200)
    # GraphQL variables.
    r = s.post(
        base + "/graphql",
        json={
            "query": "mutation Login($password: String!) { login(password: $password) { ok } }",
            "operationName": "Login",
            "variables": {"password": c("graphql-password")},
        },
        headers={"X-Request-Id": "visible-graphql-" + label},
    )
    check(r, 200)
    # A form body.
    r = s.post(
        base + "/form",
        data={"password": c("form-password"), "note": "visible-form-" + label},
        headers={"X-Request-Id": "visible-form-" + label},
    )
    check(r, 201)
    # Basic authentication: base64 of user:password on the wire.
    r = s.get(
        base + "/basic",
        auth=(c("basic-user"), c("basic-password")),
        headers={"X-Request-Id": "visible-basic-" + label},
    )
    check(r, 200)
    s.close()


# --- WebSocket --------------------------------------------------------------


def ws_server(canaries, label, host, port, rest):
    # The synchronous API: its TLS is an ssl socket (SSL_set_fd), which the
    # worker joins to its connection; asyncio's memory BIOs it cannot.
    from websockets.sync.server import serve
    from websockets.exceptions import ConnectionClosed

    reply = json.dumps({"session": {"token": canaries["ws-reply-token-" + label]},
                        "note": "visible-ws-reply-" + label})

    def handler(ws):
        try:
            for _ in ws:
                ws.send(reply)
        except ConnectionClosed:
            pass

    with serve(handler, host, port, ssl=tls_context(rest), compression=None) as server:
        server.serve_forever()


def ws_client(canaries, label, url):
    from websockets.sync.client import connect

    context = None
    if url.startswith("wss:"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with connect(url, ssl=context, compression=None) as ws:
        ws.send(json.dumps({"token": canaries["ws-token-" + label],
                            "note": "visible-ws-" + label}))
        answer = json.loads(ws.recv(timeout=10))
        assert answer["note"] == "visible-ws-reply-" + label, answer


# --- gRPC -------------------------------------------------------------------


def string_field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def grpc_server(host, port):
    import grpc

    def login(request, context):
        context.set_trailing_metadata((("x-served-by", "visible-grpc-server"),))
        return string_field(1, "visible-grpc-answer")

    handlers = {"Login": grpc.unary_unary_rpc_method_handler(login)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.Auth", handlers),))
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    server.wait_for_termination()


def grpc_call(canaries, host, port):
    import grpc
    import time

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        login = channel.unary_unary("/demo.Auth/Login")
        reply = login(
            string_field(1, "visible-grpc-request"),
            metadata=(
                ("authorization", "Bearer " + canaries["grpc-authorization"]),
                ("x-api-key", canaries["grpc-api-key"]),
                ("x-request-id", "visible-grpc"),
            ),
            timeout=10,
        )
        assert reply == string_field(1, "visible-grpc-answer"), reply
        time.sleep(0.2)


# --- Kafka ------------------------------------------------------------------


def read_frame(conn):
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (size,) = struct.unpack(">i", head)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def kstring(s):
    data = s.encode()
    return struct.pack(">h", len(data)) + data


def kafka_server(host, port, rest):
    """Answers ApiVersions v0, SaslHandshake v1 and SaslAuthenticate v1,
    each well formed, accepting any credentials; over TLS with a
    certificate and key."""
    listener = socket.create_server((host, port))
    context = tls_context(rest)

    def serve(conn):
        if context:
            try:
                conn = context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return  # a port check, not a client
        with conn:
            while True:
                frame = read_frame(conn)
                if frame is None:
                    return
                key, version, corr = struct.unpack(">hhi", frame[:8])
                if key == 18:  # ApiVersions v0
                    apis = [(18, 0, 0), (17, 0, 1), (36, 0, 1)]
                    body = struct.pack(">hi", 0, len(apis)) + b"".join(
                        struct.pack(">hhh", *a) for a in apis)
                elif key == 17:  # SaslHandshake v1
                    body = struct.pack(">hi", 0, 1) + kstring("PLAIN")
                elif key == 36:  # SaslAuthenticate v1
                    body = struct.pack(">hhiq", 0, -1, 0, 0)
                else:
                    return
                out = struct.pack(">i", corr) + body
                conn.sendall(struct.pack(">i", len(out)) + out)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def kafka_sasl(canaries, label, host, port):
    """What a Kafka client sends to log in with SASL/PLAIN: ApiVersions,
    SaslHandshake (mechanism PLAIN), SaslAuthenticate with
    "\\0user\\0password"; with LABEL tls, over TLS (SASL_SSL)."""
    user = canaries["kafka-sasl-user-" + label]
    password = canaries["kafka-sasl-password-" + label]
    client = kstring("visible-kafka-client")

    def request(conn, key, version, corr, body):
        out = struct.pack(">hhi", key, version, corr) + client + body
        conn.sendall(struct.pack(">i", len(out)) + out)
        answer = read_frame(conn)
        assert answer is not None and struct.unpack(">i", answer[:4])[0] == corr, answer
        return answer

    conn = socket.create_connection((host, port), timeout=10)
    if label == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = context.wrap_socket(conn)
    with conn:
        request(conn, 18, 0, 1, b"")
        request(conn, 17, 1, 2, kstring("PLAIN"))
        token = b"\0" + user.encode() + b"\0" + password.encode()
        answer = request(conn, 36, 1, 3, struct.pack(">i", len(token)) + token)
        assert struct.unpack(">h", answer[4:6])[0] == 0, answer


# --- the hub's stream -------------------------------------------------------


def stream(url, out, headers):
    from websockets.sync.client import connect

    with connect(url, max_size=None, additional_headers=headers) as ws:
        with open(out, "a") as f:
            print("subscribed", flush=True)
            for message in ws:
                f.write(message if isinstance(message, str) else message.decode("latin-1"))
                f.write("\n")
                f.flush()


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "http":
        http_server(load(args[0]), args[1], args[2], int(args[3]), args[4:])
    elif mode == "ws":
        ws_server(load(args[0]), args[1], args[2], int(args[3]), args[4:])
    elif mode == "grpc":
        grpc_server(args[0], int(args[1]))
    elif mode == "kafka":
        kafka_server(args[0], int(args[1]), args[2:])
    elif mode == "requests":
        requests_client(load(args[0]), args[1], args[2])
    elif mode == "wsclient":
        ws_client(load(args[0]), args[1], args[2])
    elif mode == "grpccall":
        grpc_call(load(args[0]), args[1], int(args[2]))
    elif mode == "kafkasasl":
        kafka_sasl(load(args[0]), args[1], args[2], int(args[3]))
    elif mode == "stream":
        headers = dict(h.split("=", 1) for h in args[2:])
        stream(args[0], args[1], headers)
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
