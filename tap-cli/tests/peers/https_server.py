# An HTTPS server (Python's http.server over ssl, so OpenSSL's SSL_read_ex
# and SSL_write_ex): python3 https_server.py HOST PORT CERT KEY. Answers
# every GET with "you asked for <path>", 404 for paths under /missing.
import http.server, ssl, sys
host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("you asked for " + self.path + "\n").encode()
        self.send_response(200 if not self.path.startswith("/missing") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((host, port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
