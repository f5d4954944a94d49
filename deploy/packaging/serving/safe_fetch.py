"""Fetch an image by URL without letting a caller steer us at internal services (SSRF).

A URL in a request is attacker-controlled, and checking the host name string is not enough: a public
looking name can resolve to 169.254.169.254 (the cloud metadata service) or to a VPC address, and a
public server can redirect there. So the host must be on the allowlist, it is resolved here, *every*
address it resolves to must be public, and the connection goes to one of those checked addresses (never
by name again, which would let a DNS answer change between check and connect) while TLS still verifies
the certificate against the host name. Redirects are followed by hand so each hop goes through the same
checks, and the body is read against a byte limit and an overall deadline.

Single source for two artifacts: this file ships in ``model.tar.gz`` as ``code/safe_fetch.py`` next to
``inference.py``, and in the Lambda zip next to ``handler.py`` (``lambda/safe_fetch.py`` is a symlink to
this file; the zip builder stores its content). Both run where only the standard library can be relied
on and import their siblings as top-level modules, so the file is copied into each rather than imported
from a package, and it must stay standard-library only.

Every failure is a ``FetchError`` whose class carries the HTTP status to answer with (400 bad URL or
fetch failure, 403 refused by policy, 413 too large, 504 too slow) and whose message says what to fix.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """The image could not be fetched (unresolvable host, HTTP error, TLS failure, redirect loop)."""

    status = 400


class InvalidURL(FetchError):
    """Not an https URL with a host (credentials and bad ports included): the caller must fix it."""


class UnsafeURL(FetchError):
    """Refused by policy: a host off the allowlist, or one resolving to a non-public address."""

    status = 403


class TooLarge(FetchError):
    status = 413


class FetchTimeout(FetchError):
    """The image host did not deliver within the time limit (a gateway timeout for our caller)."""

    status = 504


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_refusal(address: str) -> str | None:
    """Why ``address`` may not be contacted, or None for a public unicast address.

    ``is_global`` is False for private, loopback, link-local (169.254.169.254, the cloud metadata
    service), carrier-grade NAT, reserved and unspecified ranges; IPv4 mapped into IPv6 is unwrapped first.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return f"{ip}, a loopback address"
    if ip.is_link_local:
        return f"{ip}, a link-local address (cloud metadata services live there)"
    if ip.is_multicast or not ip.is_global:
        return f"{ip}, which is not a public address"
    return None


@functools.cache
def default_tls_context() -> ssl.SSLContext:
    """The system CA store, loaded once: building a context costs tens of milliseconds."""
    return ssl.create_default_context()


@dataclass(frozen=True)
class FetchRules:
    # Exact host names or "*.example.com" suffixes; "*" means any host with only public addresses.
    allowed_hosts: tuple[str, ...]
    max_bytes: int = 6 * 1024 * 1024
    timeout_s: float = 5.0
    max_redirects: int = 3
    # Test hooks, so a name can point at a local HTTPS server; production keeps the defaults.
    resolver: Resolver = resolve
    refusal: Callable[[str], str | None] = address_refusal
    context: ssl.SSLContext | None = None  # None: default_tls_context()


def host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed_hosts:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a pre-checked IP address, with SNI and certificate checks for the original host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _checked_url(url: str, rules: FetchRules) -> SplitResult:
    if not isinstance(url, str) or not url.strip():
        raise InvalidURL('"url" must be a non-empty string')
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "https":
        raise InvalidURL(f"only https:// image URLs are fetched, got {parts.scheme or 'no'} scheme")
    if parts.username or parts.password:
        raise InvalidURL("credentials (user:password@) in the image URL are not accepted")
    if not parts.hostname:
        raise InvalidURL("the image URL has no host")
    try:
        parts.port  # noqa: B018  (raises ValueError for a malformed port)
    except ValueError:
        raise InvalidURL("the image URL has an invalid port") from None
    if not host_allowed(parts.hostname, rules.allowed_hosts):
        allowed = ", ".join(rules.allowed_hosts) or "none (the allowlist is empty)"
        raise UnsafeURL(f"host {parts.hostname!r} is not on the allowlist; allowed hosts: {allowed}")
    return parts


def _checked_address(host: str, port: int, rules: FetchRules) -> str:
    """Resolve ``host`` and insist that *every* answer is allowed: one bad record taints the name."""
    try:
        addresses = [host] if _is_ip_literal(host) else rules.resolver(host, port)
    except (OSError, UnicodeError):
        raise FetchError(f"could not resolve the image URL host {host!r}") from None
    if not addresses:
        raise FetchError(f"the image URL host {host!r} resolves to no address")
    for address in addresses:
        reason = rules.refusal(address)
        if reason:
            where = "points at" if addresses == [host] else f"host {host!r} resolves to"
            raise UnsafeURL(f"refused: the image URL {where} {reason}")
    return addresses[0]


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def fetch(url: str, rules: FetchRules) -> bytes:
    """The body of ``url``, following at most ``rules.max_redirects`` checked redirects, or a FetchError."""
    context = rules.context or default_tls_context()
    deadline = time.monotonic() + rules.timeout_s
    for _ in range(rules.max_redirects + 1):
        parts = _checked_url(url, rules)
        port = parts.port or 443
        address = _checked_address(parts.hostname, port, rules)
        conn = _PinnedHTTPSConnection(parts.hostname, port, address, _remaining(deadline, rules), context)
        try:
            target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
            conn.request("GET", target, headers={"Accept": "image/*", "User-Agent": "dogbreeds"})
            response = conn.getresponse()
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"the image URL answered {response.status} without a Location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchError(f"the image URL answered HTTP {response.status}")
            return _read_limited(response, rules, deadline)
        except TimeoutError:
            raise _timeout(rules) from None
        except ssl.SSLError:
            raise FetchError(
                f"TLS to {parts.hostname!r} failed (certificate not valid for that host?)"
            ) from None
        except (OSError, http.client.HTTPException) as err:
            raise FetchError(f"could not download the image URL: {err}") from None
        finally:
            conn.close()
    raise FetchError(f"the image URL redirected more than {rules.max_redirects} times")


def _timeout(rules: FetchRules) -> FetchTimeout:
    return FetchTimeout(f"fetching the image URL took longer than the {rules.timeout_s:g} s limit")


def _remaining(deadline: float, rules: FetchRules) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timeout(rules)
    return left


def _read_limited(response: http.client.HTTPResponse, rules: FetchRules, deadline: float) -> bytes:
    """Read at most ``max_bytes``, checking the deadline between reads so a slow drip cannot stall us.

    ``read1`` returns whatever one socket read brings, so each wait is bounded by the socket timeout
    (itself at most the fetch timeout): the worst case is about twice ``timeout_s``.
    """
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > rules.max_bytes:
        raise TooLarge(f"the image is {int(declared)} bytes; the limit is {rules.max_bytes}")
    chunks, total = [], 0
    while True:
        _remaining(deadline, rules)
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > rules.max_bytes:
            raise TooLarge(f"the image is over the limit of {rules.max_bytes} bytes")
        chunks.append(chunk)
