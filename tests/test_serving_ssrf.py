"""URL fetching (off by default): unsafe targets are refused *before* any connection is made.

Connections are observed with a real audit hook on ``socket.connect`` (no mocks). A name that must
look public points at a local HTTPS server (real TLS, certificate checked) through an injected resolver
and address policy; everything else goes through the production checks.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import urllib.request
from contextlib import contextmanager

import pytest
from lambda_servers import image_host, self_signed_cert, start

from conf.loader import load_config
from deploy.endpoint import start_in_thread
from deploy.package import build_package, unpack
from deploy.serving.safe_fetch import FetchRules, UnsafeURLError, address_refusal, fetch

_connects: list | None = None
_lock = threading.Lock()


def _audit(event, args):
    if event == "socket.connect" and _connects is not None:
        _connects.append(args[1])


sys.addaudithook(_audit)


@contextmanager
def recorded_connections():
    global _connects
    with _lock:
        _connects = []
        try:
            yield _connects
        finally:
            _connects = None


JPEG = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
NAMES = {
    "localhost": ["127.0.0.1"],  # the test image host, treated as public below
    "internal.example.test": ["10.0.0.7"],
    "mixed.example.test": ["93.184.216.34", "10.0.0.7"],
}


def resolver(host, port):
    return NAMES[host]


def policy_trusting_test_host(address):
    return None if address == "127.0.0.1" else address_refusal(address)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    server = image_host(cert, key, JPEG, big_size=200_000)
    address = start(server)
    yield server, int(address.rsplit(":", 1)[1]), ssl.create_default_context(cafile=str(cert))
    server.shutdown()


def get(url, context, **rules):
    rules = FetchRules(**{"allowed_hosts": ("localhost", "*.example.test"), **rules})
    return fetch(url, rules, resolver=resolver, refusal=policy_trusting_test_host, context=context)


def test_allowed_host_and_checked_redirect_are_fetched(host):
    server, port, context = host
    assert get(f"https://localhost:{port}/dog.jpg", context) == JPEG
    assert get(f"https://localhost:{port}/redirect-ok", context) == JPEG


@pytest.mark.parametrize(
    ("url", "status", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", 400, "only https://"),
        ("https://169.254.169.254/latest/meta-data/", 403, "link-local"),
        ("https://127.0.0.1:{port}/dog.jpg", 403, "loopback"),
        ("https://[::ffff:127.0.0.1]:{port}/dog.jpg", 403, "loopback"),
        ("https://internal.example.test/dog.jpg", 403, "10.0.0.7 is not a public address"),
        ("https://mixed.example.test/dog.jpg", 403, "10.0.0.7 is not a public address"),
        ("https://user:pw@localhost:{port}/dog.jpg", 400, "credentials"),
    ],
)
def test_unsafe_targets_are_refused_without_connecting(host, url, status, reason):
    server, port, context = host
    before = len(server.paths)
    with recorded_connections() as connects, pytest.raises(UnsafeURLError, match=reason) as err:
        # The production address policy: 127.0.0.1 is not special-cased here.
        fetch(url.format(port=port), FetchRules(("*",)), resolver=resolver, context=context)
    assert err.value.status == status
    assert connects == [] and len(server.paths) == before


def test_host_off_the_allowlist_is_refused(host):
    _, port, context = host
    with (
        recorded_connections() as connects,
        pytest.raises(UnsafeURLError, match="not on the allowlist") as err,
    ):
        get(f"https://localhost:{port}/dog.jpg", context, allowed_hosts=("images.example.com",))
    assert err.value.status == 403 and connects == []


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/redirect-metadata", "link-local"),
        ("/redirect-http", "only https://"),
        ("/redirect-loop", "redirects"),
    ],
)
def test_redirects_are_checked_like_the_first_url(host, path, reason):
    server, port, context = host
    with recorded_connections() as connects, pytest.raises(UnsafeURLError, match=reason):
        get(f"https://localhost:{port}{path}", context, allowed_hosts=("*",))
    assert set(connects) == {("127.0.0.1", port)}


@pytest.mark.parametrize(("path", "status"), [("/big", 413), ("/big-chunked", 413), ("/missing", 400)])
def test_size_limit_and_http_errors(host, path, status):
    _, port, context = host
    with pytest.raises(UnsafeURLError) as err:
        get(f"https://localhost:{port}{path}", context, max_bytes=100_000)
    assert err.value.status == status


def test_slow_body_hits_the_time_limit(host):
    _, port, context = host
    with pytest.raises(UnsafeURLError, match="time limit"):
        get(f"https://localhost:{port}/slow", context, timeout_s=0.5)


def test_endpoint_with_url_fetching_refuses_metadata_and_keeps_serving(trained_run, tmp_path):
    result, _ = trained_run
    folder = unpack(build_package(result.best_checkpoint, tmp_path / "model.tar.gz"), tmp_path / "model")
    cfg = load_config(
        ["serve.port=0", "serve.url_fetch.enabled=true", "serve.url_fetch.allowed_hosts=[*]"]
    ).serve
    endpoint = start_in_thread(folder, cfg)
    try:
        for url, status in [
            ("https://169.254.169.254/latest/meta-data/iam/", 403),
            ("http://example.com/", 400),
        ]:
            request = urllib.request.Request(
                f"{endpoint.url}/invocations",
                data=json.dumps({"url": url}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with recorded_connections() as connects, pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(request, timeout=30)
            assert err.value.code == status
            assert not [c for c in connects if c[0] != "127.0.0.1"]  # only the test's own connection
        with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=5) as ping:
            assert ping.status == 200
    finally:
        endpoint.stop()
