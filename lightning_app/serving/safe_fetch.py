"""Fetch an image by URL without letting a caller steer us at internal services (SSRF).

A URL in a request is attacker-controlled, and checking the host name string is not enough: a public
looking name can resolve to 169.254.169.254 (the cloud metadata service) or to a VPC address, and a
public server can redirect there. So the host must be on the allowlist, it is resolved here, *every*
address it resolves to must be public, and the connection goes to one of those checked addresses (never
by name again, which would let a DNS answer change between check and connect) while TLS still verifies
the certificate against the host name. Redirects are followed by hand so each hop goes through the same
checks, and the body is read against a byte limit and an overall deadline that covers DNS resolution too.
An IPv6 address that carries an IPv4 address (IPv4-mapped or -compatible, NAT64, 6to4, Teredo) reaches that
IPv4 host through a translator or tunnel, so it is judged by the IPv4 it carries.

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
import threading
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


NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 is the last 32 bits
# RFC 8215: the operator picks where the IPv4 sits (after a /48 to /96 prefix), so no position can be trusted.
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT): ::ffff:0:a.b.c.d
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (:: and ::1 excluded below)


def carried_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses that traffic to ``ip`` ends up at, each with the name of the IPv6 form.

    The NAT64 local-use prefix is refused before this is asked (see ``address_refusal``).
    """
    if ip.ipv4_mapped is not None:
        return [("IPv4-mapped", ip.ipv4_mapped)]
    if ip in IPV4_TRANSLATED:
        return [("IPv4-translated", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))]
    if ip in IPV4_COMPATIBLE and int(ip) > 1:
        return [("IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))]
    if ip in NAT64_WELL_KNOWN:
        return [("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))]
    if ip.sixtofour is not None:
        return [("6to4", ip.sixtofour)]
    if ip.teredo is not None:
        server, client = ip.teredo
        return [("Teredo", server), ("Teredo", client)]
    return []


def _plain_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip.is_loopback:
        return f"{ip}, a loopback address"
    if ip.is_link_local:
        return f"{ip}, a link-local address (cloud metadata services live there)"
    if ip.is_multicast or not ip.is_global:
        return f"{ip}, which is not a public address"
    return None


def address_refusal(address: str) -> str | None:
    """Why ``address`` may not be contacted, or None for a public unicast address.

    ``is_global`` is False for private, loopback, link-local (169.254.169.254, the cloud metadata
    service), carrier-grade NAT, reserved and unspecified ranges. An IPv6 address carrying an IPv4 one
    is judged by that IPv4 alone: ``is_global`` calls 64:ff9b::10.0.0.1 or 2002:a00:1:: public although
    a translator or tunnel delivers the connection to 10.0.0.1.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return f"{ip}, a local-use NAT64 address (64:ff9b:1::/48) that may carry any IPv4 address"
        carried = carried_ipv4(ip)
        for form, ipv4 in carried:
            reason = _plain_refusal(ipv4)
            if reason:
                return f"{ip} ({form}), which carries {reason}"
        if carried:
            return None
    return _plain_refusal(ip)


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


def _resolve_in_time(host: str, port: int, rules: FetchRules, deadline: float, limit_s: float) -> list[str]:
    """``rules.resolver`` bounded by the deadline: ``getaddrinfo`` has no timeout of its own and a slow
    DNS server would otherwise hold the request for as long as the system resolver retries."""
    outcome: dict = {}

    def work():
        try:
            outcome["addresses"] = rules.resolver(host, port)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting caller below
            outcome["error"] = err

    worker = threading.Thread(target=work, name="resolve", daemon=True)  # abandoned if it overruns
    worker.start()
    worker.join(_remaining(deadline, limit_s))
    if worker.is_alive():
        raise _timeout(limit_s)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["addresses"]


def _checked_address(host: str, port: int, rules: FetchRules, deadline: float, limit_s: float) -> str:
    """Resolve ``host`` and insist that *every* answer is allowed: one bad record taints the name."""
    try:
        addresses = [host] if _is_ip_literal(host) else _resolve_in_time(host, port, rules, deadline, limit_s)
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


def fetch(url: str, rules: FetchRules, deadline: float | None = None) -> bytes:
    """The body of ``url``, following at most ``rules.max_redirects`` checked redirects, or a FetchError.

    Everything (resolution, connection, redirects, body) fits in ``rules.timeout_s``, or in less when the
    caller's own ``deadline`` (a ``time.monotonic()`` value) comes sooner.
    """
    context = rules.context or default_tls_context()
    start = time.monotonic()
    deadline = start + rules.timeout_s if deadline is None else min(deadline, start + rules.timeout_s)
    limit_s = max(deadline - start, 0.0)
    for _ in range(rules.max_redirects + 1):
        parts = _checked_url(url, rules)
        port = parts.port or 443
        address = _checked_address(parts.hostname, port, rules, deadline, limit_s)
        timeout = _remaining(deadline, limit_s)
        conn = _PinnedHTTPSConnection(parts.hostname, port, address, timeout, context)
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
            return _read_limited(response, rules, deadline, limit_s)
        except TimeoutError:
            raise _timeout(limit_s) from None
        except ssl.SSLError:
            raise FetchError(
                f"TLS to {parts.hostname!r} failed (certificate not valid for that host?)"
            ) from None
        except (OSError, http.client.HTTPException) as err:
            raise FetchError(f"could not download the image URL: {err}") from None
        finally:
            conn.close()
    raise FetchError(f"the image URL redirected more than {rules.max_redirects} times")


def _timeout(limit_s: float) -> FetchTimeout:
    return FetchTimeout(f"fetching the image URL took longer than the {limit_s:.3g} s limit")


def _remaining(deadline: float, limit_s: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timeout(limit_s)
    return left


def _read_limited(
    response: http.client.HTTPResponse, rules: FetchRules, deadline: float, limit_s: float
) -> bytes:
    """Read at most ``max_bytes``, checking the deadline between reads so a slow drip cannot stall us.

    ``read1`` returns whatever one socket read brings, so each wait is bounded by the socket timeout
    (itself at most the fetch timeout): the worst case is about twice ``timeout_s``.
    """
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > rules.max_bytes:
        raise TooLarge(f"the image is {int(declared)} bytes; the limit is {rules.max_bytes}")
    chunks, total = [], 0
    while True:
        _remaining(deadline, limit_s)
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > rules.max_bytes:
            raise TooLarge(f"the image is over the limit of {rules.max_bytes} bytes")
        chunks.append(chunk)
