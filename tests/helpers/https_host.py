"""A real HTTPS image host on localhost, for the URL fetcher (``safe_fetch``) and the Lambda's URL events.

Real TLS with a throwaway certificate, so certificate checking runs for real; paths for every fetch
outcome (an image, oversized bodies, a 404, a slow drip, redirects to unsafe places).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, so the fetcher's TLS verification runs for real."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class QuietServer(ThreadingHTTPServer):
    """Clients that abort on purpose (TLS refusal, timeouts) are expected here, not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def serve_in_thread(server: ThreadingHTTPServer) -> str:
    """Serve in a daemon thread (stop with ``server.shutdown()``); returns ``host:port``."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return f"{host}:{port}"


def image_host(cert: Path, key: Path, image: bytes, big_size: int) -> ThreadingHTTPServer:
    """HTTPS server with an image, an oversized body, a 404, a slow drip and several redirects."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.server.paths.append(self.path)
            port = self.server.server_address[1]
            redirects = {
                "/redirect-ok": "/dog.jpg",
                "/redirect-metadata": "https://169.254.169.254/latest/meta-data/",
                "/redirect-http": f"http://127.0.0.1:{port}/dog.jpg",
                "/redirect-loop": "/redirect-loop",
            }
            if self.path == "/dog.jpg":
                self._send(200, image, {"Content-Type": "image/jpeg"})
            elif self.path == "/big":
                self._send(200, b"\xff" * big_size, {"Content-Type": "image/jpeg"})
            elif self.path == "/big-chunked":  # no Content-Length: the limit must hold while reading
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"\xff" * big_size)
            elif self.path == "/slow":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif self.path in redirects:
                self._send(302, headers={"Location": redirects[self.path]})
            else:
                self._send(404, b"not here")

    server = QuietServer(("127.0.0.1", 0), Handler)
    server.paths = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
