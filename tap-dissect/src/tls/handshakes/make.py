#!/usr/bin/env python3
"""Writes the TLS unit tests' fixtures: real handshakes between Python's
ssl client and server (OpenSSL) run over memory BIOs, no sockets. Each file
is one connection, one flight per line: `C <hex>` (client to server) or
`S <hex>` (server to client), in the order they were sent.

    python3 make.py   # in this folder; needs the openssl command

It writes the same connections as fuzz seeds, fuzz/seeds/tls/<name>.

The certificate is made fresh (EC P-256, CN and SANs below, valid ten
years from the day it is made), so rerunning changes the bytes and the
certificate's not-after date, which the tests read: update them.
"""
import os
import ssl
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def certificate(tmp):
    key, crt = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", crt, "-subj", "/O=kubetap/CN=shop.internal",
         "-addext", "subjectAltName=DNS:shop.internal,DNS:*.shop.internal,IP:10.0.0.9",
         "-days", "3650"],
        check=True, capture_output=True)
    return crt, key


def converse(crt, key, *, version, sni, alpn_client, alpn_server,
             client_ciphers=None, server_ciphers=None, server_group=None,
             verify=False, resume=False, data=True):
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(crt, key)
    srv.minimum_version = srv.maximum_version = version
    if alpn_server:
        srv.set_alpn_protocols(alpn_server)
    if server_ciphers:
        srv.set_ciphers(server_ciphers)
    if server_group:
        srv.set_ecdh_curve(server_group)
    cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli.check_hostname = False
    # Verifying against no trusted CA fails: the client's alert.
    cli.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    cli.maximum_version = version
    if alpn_client:
        cli.set_alpn_protocols(alpn_client)
    if client_ciphers:
        cli.set_ciphers(client_ciphers)
    session = None
    if resume:
        # A first handshake whose session the captured one resumes.
        first = converse_with(cli, srv, sni, None, [])
        session = first.session
    flights = []
    converse_with(cli, srv, sni, session, flights, data)
    return flights


def converse_with(cli, srv, sni, session, flights, data=True):
    bios = [ssl.MemoryBIO() for _ in range(4)]
    c = cli.wrap_bio(bios[0], bios[1], server_side=False, server_hostname=sni,
                     session=session)
    s = srv.wrap_bio(bios[2], bios[3], server_side=True)

    def pump():
        moved = False
        out = bios[1].read()
        if out:
            flights.append(("C", out))
            bios[2].write(out)
            moved = True
        out = bios[3].read()
        if out:
            flights.append(("S", out))
            bios[0].write(out)
            moved = True
        return moved

    done = [False, False]
    for _ in range(20):
        for i, end in enumerate((c, s)):
            if done[i]:
                continue
            try:
                end.do_handshake()
                done[i] = True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except ssl.SSLError:
                done[i] = True
        if not pump() and all(done):
            break
    if data and all(done):
        try:
            c.write(b"GET / HTTP/1.1\r\nHost: shop.internal\r\n\r\n")
            pump()
            s.read(4096)
            s.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            pump()
            c.read(4096)
            pump()
        except ssl.SSLError:
            pump()
    return c


def write(name, flights):
    with open(os.path.join(HERE, name), "w") as f:
        for d, b in flights:
            f.write(f"{d} {b.hex()}\n")
    seed(name.removesuffix(".hex"), flights)


def seed(name, flights):
    """The same connection as a fuzz seed (fuzz/fuzz_targets/records): a
    control byte (bit 0: from the server), a length byte, at most 255 bytes."""
    out = bytearray()
    for d, b in flights:
        for at in range(0, len(b), 255):
            part = b[at:at + 255]
            out += bytes([0 if d == "C" else 1, len(part)]) + part
    seeds = os.path.join(HERE, "..", "..", "..", "..", "fuzz", "seeds", "tls")
    os.makedirs(seeds, exist_ok=True)
    with open(os.path.join(seeds, name), "wb") as f:
        f.write(out)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        crt, key = certificate(tmp)
        v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
        write("tls12.hex", converse(crt, key, version=v12, sni="shop.internal",
                                    alpn_client=["h2", "http/1.1"], alpn_server=["http/1.1"],
                                    server_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
        write("tls13.hex", converse(crt, key, version=v13, sni="api.shop.internal",
                                    alpn_client=["h2", "http/1.1"], alpn_server=["h2"]))
        write("tls13_no_sni.hex", converse(crt, key, version=v13, sni=None,
                                           alpn_client=None, alpn_server=None))
        write("tls13_hello_retry.hex", converse(
            crt, key, version=v13, sni="shop.internal", alpn_client=None, alpn_server=None,
            server_group="prime256v1"))
        write("tls12_resumed.hex", converse(
            crt, key, version=v12, sni="shop.internal", alpn_client=None, alpn_server=None,
            resume=True))
        write("tls12_client_rejects.hex", converse(
            crt, key, version=v12, sni="shop.internal", alpn_client=None, alpn_server=None,
            verify=True))
        write("handshake_failure.hex", converse(
            crt, key, version=v12, sni="shop.internal", alpn_client=None, alpn_server=None,
            client_ciphers="ECDHE-ECDSA-AES256-SHA", server_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))


if __name__ == "__main__":
    main()
