"""The local endpoint against hostile and unlucky clients, over real sockets: images that are expensive to
decode, clients that leave, trickle or never finish, bodies that do not end, and many slow image URLs."""

from __future__ import annotations

import io
import json
import select
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.hostile_images import many_scan_jpeg
from helpers.servers import post
from PIL import Image

from conf.loader import load_config
from deploy.local_endpoint.process import start_in_thread

LIMIT = 100_000  # serve.max_payload_bytes of these endpoints


def good_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (30, 90, 150)).save(buffer, "JPEG")
    return buffer.getvalue()


GOOD = good_jpeg()


def serve(served_package, *overrides):
    cfg = load_config(["serve.port=0", f"serve.max_payload_bytes={LIMIT}", *overrides]).serve
    return start_in_thread(served_package, cfg)


@pytest.fixture(scope="module")
def endpoint(served_package):
    server = serve(served_package, "serve.read_timeout_s=1", "serve.keep_alive_timeout_s=1")
    yield server
    server.stop()


def timed_post(url: str, body: bytes) -> tuple[int, dict, float]:
    start = time.monotonic()
    status, answer = post(f"{url}/invocations", body, "image/jpeg")
    return status, answer, time.monotonic() - start


def test_many_scan_jpeg_is_refused_before_decoding_and_others_keep_their_latency(endpoint):
    hostile = many_scan_jpeg(2000, 3000)  # about 30 KB; decoding it took tens of seconds
    normal = [timed_post(endpoint.url, GOOD)[2] for _ in range(5)]
    with ThreadPoolExecutor(6) as pool:
        attacks = [pool.submit(timed_post, endpoint.url, hostile) for _ in range(4)]
        time.sleep(0.05)
        meanwhile = [timed_post(endpoint.url, GOOD) for _ in range(5)]
        answers = [attack.result() for attack in attacks]
    for status, answer, seconds in answers:
        assert (status, answer["status"]) == (422, 422) and seconds < 3
        assert "3010 scans; the limit is 100" in answer["error"] and "baseline JPEG" in answer["error"]
    assert all(status == 200 for status, _, _ in meanwhile)
    assert max(seconds for _, _, seconds in meanwhile) < max(normal) + statistics.median(normal) + 1.0


def test_decoding_stops_at_the_request_deadline(served_package):
    """Allowed structure, still too costly: the deadline is enforced while the decoder runs."""
    server = serve(served_package, "serve.max_jpeg_scans=100000", "serve.request_timeout_s=1")
    try:
        status, answer, seconds = timed_post(server.url, many_scan_jpeg(2000, 2000))
        assert (status, answer["status"]) == (422, 422)
        assert "decoding the image took longer than this endpoint's 1 s request limit" in answer["error"]
        assert seconds < 3
        assert timed_post(server.url, GOOD)[0] == 200
    finally:
        server.stop()


def test_a_client_that_leaves_stops_its_decoding(served_package):
    """One decoding thread: the next request only gets it if the departed client's work stopped."""
    server = serve(served_package, "serve.max_jpeg_scans=100000", "serve.decode_threads=1")
    try:
        hostile = many_scan_jpeg(2000, 2000)  # seconds of decoding without the disconnect check
        with socket.create_connection(_address(server)) as sock:
            sock.sendall(_head("POST", len(hostile)) + hostile)
            time.sleep(0.5)  # the server is decoding now
        status, _, seconds = timed_post(server.url, GOOD)
        assert status == 200 and seconds < 2.5
    finally:
        server.stop()


def _address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _head(method: str, length: int | None = None, path: str = "/invocations", extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{size}{extra}\r\n".encode()


def _answer(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - start


def _first_answer(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """One complete response (head and Content-Length body), and how long it took to arrive."""
    start = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < _length(received):
        received += sock.recv(65536) or pytest.fail(f"connection closed after {received!r}")
    return received, time.monotonic() - start


def _length(received: bytes) -> int:
    head = received.partition(b"\r\n\r\n")[0].decode().lower()
    return int(head.split("content-length:")[1].split("\r\n")[0])


def _status_and_error(received: bytes) -> tuple[int, dict]:
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_idle_connection_is_closed(endpoint):
    with socket.create_connection(_address(endpoint)) as sock:
        received, seconds = _answer(sock, timeout=10)
    assert received == b"" and seconds < 3


def test_trickled_request_head_gets_a_408(endpoint):
    with socket.create_connection(_address(endpoint)) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        while not select.select([sock], [], [], 0.1)[0]:  # one byte per 0.1 s until the server answers
            assert time.monotonic() - start < 3, "the server kept waiting for the trickled head"
            sock.sendall(b"X")
        received, _ = _answer(sock, timeout=10)
    status, error = _status_and_error(received)
    assert status == 408 and "request head did not arrive within 1 s" in error["error"]


def test_trickled_body_gets_a_408(endpoint):
    with socket.create_connection(_address(endpoint)) as sock:
        sock.sendall(_head("POST", 1000) + b"x" * 10)
        received, seconds = _answer(sock, timeout=10)
    status, error = _status_and_error(received)
    assert status == 408 and "body did not arrive within 1 s" in error["error"] and seconds < 3


def test_idle_keep_alive_connection_is_closed_after_an_answer(endpoint):
    with socket.create_connection(_address(endpoint)) as sock:
        sock.sendall(_head("POST", len(GOOD)) + GOOD)
        received, seconds = _answer(sock, timeout=10)
    assert received.startswith(b"HTTP/1.1 200") and seconds < 3


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_body_gets_a_413_as_soon_as_it_crosses_the_limit(endpoint, declared):
    with socket.create_connection(_address(endpoint)) as sock:
        if declared:  # the header alone is enough: no byte of the body is sent
            sock.sendall(_head("POST", LIMIT + 1))
        else:  # chunks up to one byte past the limit, then the client waits without ending the body
            sock.sendall(_head("POST", extra="Transfer-Encoding: chunked\r\n"))
            for _ in range(LIMIT // 10_000):
                sock.sendall(b"%x\r\n%s\r\n" % (10_000, b"x" * 10_000))
            sock.sendall(b"1\r\nx\r\n")
        received, seconds = _first_answer(sock, timeout=10)
    status, error = _status_and_error(received)
    assert status == 413 and f"the limit is {LIMIT:,}" in error["error"]
    assert seconds < 0.9  # well before the 1 s body deadline could answer instead
