"""Fetch an image over https without letting a caller steer the Lambda at internal addresses (SSRF).

A URL in an event is attacker-controlled. Checking the hostname string is not enough: a public-looking
name can resolve to 169.254.169.254 (the instance metadata service) or to a VPC address, and a public
server can redirect there. So every hop is resolved here, every resolved address must be public, and
the connection goes to the vetted address itself (no second DNS lookup that could answer differently),
while TLS still verifies the certificate against the hostname. Redirects are followed by hand so each
new location is vetted the same way. Body size and total time are bounded.

Standard library only: this file ships in the Lambda zip next to ``handler.py``.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """The image could not be fetched; ``status`` is the HTTP status the caller should answer."""

    status = 400


class UnsafeURL(FetchError):
    """Scheme, credentials or a resolved address that must never be contacted."""


class TooLarge(FetchError):
    status = 413


class FetchTimeout(FetchError):
    status = 504


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses (no private, loopback, link-local, metadata, CGNAT)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    timeout_s: float
    max_redirects: int = 3
    # Tests widen this to reach a loopback HTTPS server; production keeps the public-only default.
    address_allowed: Callable[[str], bool] = is_public_address
    ssl_context: ssl.SSLContext = field(default_factory=ssl.create_default_context)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address vetted beforehand, but verifies the certificate for the URL's hostname."""

    def __init__(self, host: str, port: int, address: str, **kwargs):
        super().__init__(host, port, **kwargs)
        self._vetted_address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._vetted_address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _checked_url(url: str) -> urllib.parse.SplitResult:
    if not isinstance(url, str) or not url:
        raise UnsafeURL('"url" must be a non-empty string')
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme.lower() != "https":
        raise UnsafeURL(f"only https:// image URLs are accepted, got {parts.scheme or 'no'} scheme")
    if not parts.hostname:
        raise UnsafeURL("the image URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("credentials in the image URL are not accepted")
    try:
        parts.port  # noqa: B018  (raises ValueError for a malformed port)
    except ValueError as err:
        raise UnsafeURL("the image URL has an invalid port") from err
    return parts


def _vetted_address(host: str, port: int, policy: FetchPolicy) -> str:
    """Resolve ``host`` and insist that *every* answer is allowed: one bad record taints the name."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise FetchError(f"could not resolve the image URL host {host!r}") from err
    addresses = [info[4][0] for info in infos]
    if not addresses or not all(policy.address_allowed(address) for address in addresses):
        raise UnsafeURL(f"the image URL host {host!r} resolves to a non-public address; refused")
    return addresses[0]


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchTimeout("fetching the image URL took too long")
    return left


def _read_limited(response: http.client.HTTPResponse, policy: FetchPolicy, deadline: float) -> bytes:
    """Read at most ``max_bytes``, checking the deadline between reads so a slow drip cannot stall us.

    ``read1`` returns whatever one socket read brings, so each wait is bounded by the socket timeout
    (itself at most the fetch timeout): the worst case is about twice ``timeout_s``.
    """
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise TooLarge(f"the image is {int(declared)} bytes; the limit is {policy.max_bytes}")
    chunks, total = [], 0
    while True:
        _remaining(deadline)
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > policy.max_bytes:
            raise TooLarge(f"the image is over the limit of {policy.max_bytes} bytes")
        chunks.append(chunk)


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """GET ``url`` following at most ``policy.max_redirects`` vetted redirects; return the body bytes."""
    deadline = time.monotonic() + policy.timeout_s
    for _ in range(policy.max_redirects + 1):
        parts = _checked_url(url)
        port = parts.port or 443
        address = _vetted_address(parts.hostname, port, policy)
        connection = _PinnedHTTPSConnection(
            parts.hostname, port, address, timeout=_remaining(deadline), context=policy.ssl_context
        )
        try:
            target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            connection.request("GET", target, headers={"Accept": "image/*", "User-Agent": "dogbreeds-lambda"})
            response = connection.getresponse()
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"the image URL answered {response.status} without a Location")
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchError(f"the image URL answered HTTP {response.status}")
            return _read_limited(response, policy, deadline)
        except TimeoutError as err:
            raise FetchTimeout("fetching the image URL took too long") from err
        except ssl.SSLError as err:
            raise FetchError("TLS to the image URL failed (certificate not valid for that host?)") from err
        except (OSError, http.client.HTTPException) as err:
            raise FetchError("could not download the image URL") from err
        finally:
            connection.close()
    raise FetchError(f"the image URL redirected more than {policy.max_redirects} times")
