"""Fetch an image by URL without letting the endpoint be used to reach internal services (SSRF).

Shipped inside ``model.tar.gz`` next to ``inference.py``, so it uses the standard library only.
The order matters: the host name is resolved first, *every* address it resolves to is checked, and the
connection is then made to one of those checked addresses (never by name again, which would let a
DNS answer change between check and connect). TLS still verifies the certificate against the host
name. Redirects are followed by hand so each hop goes through the same checks, and the body is read
against a byte limit and an overall deadline.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

REDIRECT_STATUSES = {301, 302, 303, 307, 308}


class UnsafeURLError(ValueError):
    """The URL, or a redirect it led to, is not allowed; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FetchRules:
    # Exact host names or "*.example.com" suffixes; "*" means any host with only public addresses.
    allowed_hosts: tuple[str, ...]
    max_bytes: int = 6 * 1024 * 1024
    timeout_s: float = 5.0
    max_redirects: int = 3


def address_refusal(address: str) -> str | None:
    """Why ``address`` may not be contacted, or None for a public unicast address.

    ``is_global`` is False for private, loopback, link-local (169.254.169.254, the cloud metadata
    service), carrier-grade NAT, reserved and unspecified ranges; IPv4 mapped into IPv6 is unwrapped first.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is link-local (cloud metadata services live there)"
    if ip.is_multicast or not ip.is_global:
        return f"{ip} is not a public address"
    return None


def host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed_hosts:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a pre-checked IP address, with SNI and certificate checks for the original host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _checked_target(url: str, rules: FetchRules, resolver: Resolver, refusal) -> tuple[str, int, str, str]:
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise UnsafeURLError(f"only https:// URLs are fetched, not {parts.scheme or 'scheme-less'} {url!r}")
    if parts.username or parts.password:
        raise UnsafeURLError("URLs with credentials (user:password@) are not fetched")
    host = parts.hostname
    if not host:
        raise UnsafeURLError(f"{url!r} has no host name")
    if not host_allowed(host, rules.allowed_hosts):
        allowed = ", ".join(rules.allowed_hosts) or "none (serve.url_fetch.allowed_hosts is empty)"
        raise UnsafeURLError(f"host {host!r} is not on the allowlist; allowed hosts: {allowed}", status=403)
    try:
        port = parts.port or 443
    except ValueError as err:
        raise UnsafeURLError(f"bad port in {url!r}: {err}") from None
    try:
        addresses = [host] if _is_ip_literal(host) else resolver(host, port)
    except OSError as err:
        raise UnsafeURLError(f"cannot resolve {host!r}: {err}") from None
    if not addresses:
        raise UnsafeURLError(f"{host!r} resolves to no address")
    for address in addresses:
        reason = refusal(address)
        if reason:
            raise UnsafeURLError(f"refusing {url!r}: {host} resolves to {reason}", status=403)
    path = parts.path or "/"
    return host, port, addresses[0], path + (f"?{parts.query}" if parts.query else "")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def fetch(
    url: str,
    rules: FetchRules,
    *,
    resolver: Resolver = resolve,
    refusal: Callable[[str], str | None] = address_refusal,
    context: ssl.SSLContext | None = None,
) -> bytes:
    """The body of ``url`` (following checked redirects) or UnsafeURLError saying what was refused.

    ``resolver``, ``refusal`` and ``context`` exist so tests can point a name at a local HTTPS server;
    production code uses the defaults.
    """
    context = context or ssl.create_default_context()
    deadline = time.monotonic() + rules.timeout_s
    for _ in range(rules.max_redirects + 1):
        host, port, address, target = _checked_target(url, rules, resolver, refusal)
        conn = _PinnedHTTPSConnection(host, port, address, _remaining(deadline, url), context)
        try:
            conn.request("GET", target, headers={"Accept": "image/*", "User-Agent": "dogbreeds-endpoint"})
            response = conn.getresponse()
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise UnsafeURLError(f"{url!r} redirected without a Location header")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise UnsafeURLError(f"fetching {url!r} returned HTTP {response.status}")
            return _read_limited(response, rules.max_bytes, deadline, url)
        except (OSError, http.client.HTTPException) as err:
            if isinstance(err, UnsafeURLError):
                raise
            raise UnsafeURLError(f"fetching {url!r} failed: {err}") from None
        finally:
            conn.close()
    raise UnsafeURLError(f"more than {rules.max_redirects} redirects starting from the requested URL")


def _remaining(deadline: float, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise UnsafeURLError(f"fetching {url!r} took longer than the time limit", status=408)
    return left


def _read_limited(response: http.client.HTTPResponse, max_bytes: int, deadline: float, url: str) -> bytes:
    """Read in chunks so neither a huge body nor a slow drip holds a worker much beyond the limits.

    Each socket read is bounded by the time left at connect; the deadline is re-checked between chunks.
    """
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise UnsafeURLError(f"{url!r} is {declared} bytes; the limit is {max_bytes}", status=413)
    chunks, total = [], 0
    while True:
        _remaining(deadline, url)
        chunk = response.read1(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise UnsafeURLError(f"{url!r} is larger than the {max_bytes}-byte limit", status=413)
        chunks.append(chunk)
