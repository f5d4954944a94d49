"""The SSRF-safe URL fetcher, tested once for both artifacts that ship it, then the endpoint's use of it.

``lightning_app/serving/safe_fetch.py`` is the single source: it is copied into ``model.tar.gz`` and (through the
``lambda/safe_fetch.py`` symlink) into the Lambda zip; the Lambda tests cover only the handler's mapping.
Unsafe targets are refused *before* any connection is made: connections are observed with a real audit
hook on ``socket.connect`` (no mocks). A name that must look public points at a local HTTPS server (real
TLS, certificate checked) through injected resolver and address hooks; everything else goes through
the production checks.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.https_host import image_host, self_signed_cert, serve_in_thread

from conf.loader import load_config
from deploy.local_endpoint.process import start_in_thread
from deploy.local_endpoint.server import load_serving_module
from lightning_app.serving.safe_fetch import (
    FetchError,
    FetchRules,
    FetchTimeout,
    InvalidURL,
    TooLarge,
    UnsafeURL,
    address_refusal,
    fetch,
)

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
    "localhost": ["127.0.0.1"],  # the test image host, treated as public by get() below
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
    address = serve_in_thread(server)
    yield server, int(address.rsplit(":", 1)[1]), ssl.create_default_context(cafile=str(cert))
    server.shutdown()


def get(url, context, **rules):
    """Fetch with the test host reachable: ``localhost`` is trusted and its certificate accepted."""
    defaults = {"allowed_hosts": ("localhost", "*.example.test"), "resolver": resolver}
    rules = FetchRules(**{**defaults, "refusal": policy_trusting_test_host, "context": context, **rules})
    return fetch(url, rules)


def test_allowed_host_and_checked_redirect_are_fetched(host):
    server, port, context = host
    assert get(f"https://localhost:{port}/dog.jpg", context) == JPEG
    assert get(f"https://localhost:{port}/redirect-ok", context) == JPEG


@pytest.mark.parametrize(
    ("url", "error", "status", "reason"),
    [
        ("", InvalidURL, 400, "non-empty string"),
        ("http://169.254.169.254/latest/meta-data/", InvalidURL, 400, "only https://"),
        ("ftp://localhost/dog.jpg", InvalidURL, 400, "only https://"),
        ("https://user:pw@localhost:{port}/dog.jpg", InvalidURL, 400, "credentials"),
        ("https:///dog.jpg", InvalidURL, 400, "no host"),
        ("https://localhost:99999/dog.jpg", InvalidURL, 400, "invalid port"),
        ("https://169.254.169.254/latest/meta-data/", UnsafeURL, 403, "link-local"),
        ("https://[fd00:ec2::254]/latest/meta-data/", UnsafeURL, 403, "not a public address"),
        ("https://10.0.0.8/dog.jpg", UnsafeURL, 403, "not a public address"),
        ("https://100.64.0.1/dog.jpg", UnsafeURL, 403, "not a public address"),  # carrier-grade NAT
        ("https://127.0.0.1:{port}/dog.jpg", UnsafeURL, 403, "loopback"),
        ("https://[::ffff:127.0.0.1]:{port}/dog.jpg", UnsafeURL, 403, "loopback"),
        ("https://internal.example.test/dog.jpg", UnsafeURL, 403, "10.0.0.7, which is not a public address"),
        ("https://mixed.example.test/dog.jpg", UnsafeURL, 403, "10.0.0.7, which is not a public address"),
    ],
)
def test_unsafe_targets_are_refused_without_connecting(host, url, error, status, reason):
    server, port, context = host
    before = len(server.paths)
    with recorded_connections() as connects, pytest.raises(error, match=reason) as err:
        # The production address policy: 127.0.0.1 is not special-cased here.
        fetch(url.format(port=port), FetchRules(("*",), resolver=resolver, context=context))
    assert err.value.status == status
    assert connects == [] and len(server.paths) == before


def test_real_dns_answers_are_checked_too(host):
    """The production resolver: a name for a live loopback server is refused, an unknown name is a 400."""
    server, port, context = host
    before = len(server.paths)
    with recorded_connections() as connects, pytest.raises(UnsafeURL, match="loopback"):
        fetch(f"https://localhost:{port}/dog.jpg", FetchRules(("*",), context=context))
    assert connects == [] and len(server.paths) == before
    with pytest.raises(FetchError, match="could not resolve") as err:
        fetch("https://no-such-host.invalid/dog.jpg", FetchRules(("*",)))
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("allowed", "reason"),
    [(("images.example.com",), "not on the allowlist"), ((), "the allowlist is empty")],
)
def test_host_off_the_allowlist_is_refused(host, allowed, reason):
    _, port, context = host
    with recorded_connections() as connects, pytest.raises(UnsafeURL, match=reason) as err:
        get(f"https://localhost:{port}/dog.jpg", context, allowed_hosts=allowed)
    assert err.value.status == 403 and connects == []


@pytest.mark.parametrize(
    ("path", "error", "reason", "hops"),
    [
        ("/redirect-metadata", UnsafeURL, "link-local", 1),  # checked again, never contacted
        ("/redirect-http", InvalidURL, "only https://", 1),
        ("/redirect-loop", FetchError, "redirected more than 3 times", 4),
    ],
)
def test_redirects_are_checked_like_the_first_url(host, path, error, reason, hops):
    server, port, context = host
    before = len(server.paths)
    with recorded_connections() as connects, pytest.raises(error, match=reason):
        get(f"https://localhost:{port}{path}", context, allowed_hosts=("*",))
    assert set(connects) == {("127.0.0.1", port)}
    assert len(server.paths) - before == hops


@pytest.mark.parametrize(
    ("path", "error", "status", "reason"),
    [
        ("/big", TooLarge, 413, "200000 bytes; the limit is 100000"),  # declared Content-Length
        ("/big-chunked", TooLarge, 413, "over the limit of 100000 bytes"),  # counted while reading
        ("/missing", FetchError, 400, "answered HTTP 404"),
    ],
)
def test_size_limit_and_http_errors(host, path, error, status, reason):
    _, port, context = host
    with pytest.raises(error, match=reason) as err:
        get(f"https://localhost:{port}{path}", context, max_bytes=100_000)
    assert err.value.status == status


def test_slow_body_hits_the_time_limit(host):
    _, port, context = host
    with pytest.raises(FetchTimeout, match="longer than the 0.5 s limit") as err:
        get(f"https://localhost:{port}/slow", context, timeout_s=0.5)
    assert err.value.status == 504


# IPv6 forms that deliver the connection to an internal IPv4 host: each is judged by the IPv4 it carries.
CARRIERS = {
    "IPv4-mapped": ("::ffff:169.254.169.254", "169.254.169.254"),
    "IPv4-compatible": ("::169.254.169.254", "169.254.169.254"),
    "IPv4-translated": ("::ffff:0:10.0.0.1", "10.0.0.1"),
    "NAT64 well-known": ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
    "NAT64 local-use": ("64:ff9b:1::a00:1", "local-use NAT64"),
    "6to4": ("2002:a9fe:a9fe::1", "169.254.169.254"),
    "Teredo": ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # client 10.0.0.1, obfuscated
}


@pytest.mark.parametrize("form", CARRIERS)
@pytest.mark.parametrize("where", ["literal", "dns answer", "redirect"])
def test_ipv6_forms_carrying_an_internal_ipv4_are_refused_without_connecting(host, form, where):
    server, port, context = host
    address, carried = CARRIERS[form]
    answers = iter([["127.0.0.1"], [address]])  # the redirect hop: the name now answers the IPv6 form

    def resolver(name, port):
        return next(answers) if where == "redirect" else [address]

    url = {
        "literal": f"https://[{address}]/dog.jpg",
        "dns answer": "https://images.example.test/dog.jpg",
        "redirect": f"https://localhost:{port}/redirect-ok",
    }[where]
    rules = FetchRules(("*",), resolver=resolver, refusal=policy_trusting_test_host, context=context)
    with recorded_connections() as connects, pytest.raises(UnsafeURL, match=carried) as err:
        fetch(url, rules)
    assert err.value.status == 403
    assert connects == ([("127.0.0.1", port)] if where == "redirect" else [])


def test_ipv6_forms_carrying_a_public_ipv4_are_judged_public():
    """The other side of the rule: the carried address decides, so public ones stay reachable."""
    for address in ("::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1", "2606:4700::1111"):
        assert address_refusal(address) is None, address


def test_slow_dns_counts_against_the_fetch_time_limit(host):
    _, _, context = host

    def stalled_resolver(name, port):
        time.sleep(3)
        return ["93.184.216.34"]

    start = time.monotonic()
    with pytest.raises(FetchTimeout, match="longer than the 0.3 s limit"):
        fetch(
            "https://images.example.test/dog.jpg",
            FetchRules(("*",), timeout_s=0.3, resolver=stalled_resolver),
        )
    assert time.monotonic() - start < 1.5


def test_untrusted_certificate_is_refused(host):
    _, port, _ = host
    with pytest.raises(FetchError, match="TLS to 'localhost' failed") as err:
        get(f"https://localhost:{port}/dog.jpg", None)  # the system CA store does not know the test CA
    assert err.value.status == 400


@pytest.fixture(scope="module")
def serving(served_package):
    """The packaged serving code, loaded the way the endpoint loads it."""
    return load_serving_module(served_package)


@pytest.mark.parametrize(("dns_s", "request_timeout_s", "status", "reason"), [
    (1.0, 30.0, 400, "could not be decoded"),  # every URL fetched (at once), then the fake JPEG is refused
    (3.0, 1.5, 504, "longer than the 1.5 s limit"),  # the request's deadline also bounds its fetches
])  # fmt: skip
def test_urls_of_one_request_are_fetched_together_within_its_deadline(
    serving, host, dns_s, request_timeout_s, status, reason
):
    _, port, context = host

    def slow_resolver(name, port):
        time.sleep(dns_s)
        return ["127.0.0.1"]

    rules = serving.safe_fetch.FetchRules(
        ("localhost",), resolver=slow_resolver, refusal=policy_trusting_test_host, context=context
    )
    settings = serving.ServingSettings(url_fetch=rules, request_timeout_s=request_timeout_s)
    model = serving.load_model(serving_folder(serving), settings, device="cpu")
    body = json.dumps([{"url": f"https://localhost:{port}/dog.jpg"}] * 6).encode()
    start = time.monotonic()
    with pytest.raises(serving.RequestError, match=reason) as err:
        serving.decode_request(body, "application/json", model)
    assert err.value.status == status
    assert time.monotonic() - start < 2.5  # one after another: 6 s and more


def serving_folder(serving) -> Path:
    return Path(serving.__file__).parent.parent


def test_endpoint_with_url_fetching_refuses_metadata_and_keeps_serving(served_package):
    cfg = load_config(
        ["serve.port=0", "serve.url_fetch.enabled=true", "serve.url_fetch.allowed_hosts=[*]"]
    ).serve
    endpoint = start_in_thread(served_package, cfg)
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
