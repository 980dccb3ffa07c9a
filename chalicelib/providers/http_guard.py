"""The SSRF guard of the HTTP client layer (`providers/http.py`): a URL is vetted before
anything is sent.

https only, and every address the host resolves to must be public (IPv6 tunnels such as
6to4 and Teredo never are; an IPv6 translation of an IPv4 address is judged by that IPv4
address; docs/security.md), unless `allow_private_urls` is set (local stack, tests). The
`Target` it returns carries the checked addresses, and the transport connects to one of
them: no second DNS lookup an attacker could answer.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.config import settings
from chalicelib.providers.http_errors import HttpError

Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard, and the addresses it may be reached at."""

    scheme: str
    host: str  # as written in the URL (Host header, TLS server name)
    port: int
    path: str  # path and query, as sent
    addresses: tuple[str, ...]
    host_header: str  # host[:port], the port only when not the scheme's default; once per vetting

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return seen


# IPv6 forms that a relay turns into a call to whatever IPv4 address they carry (169.254.169.254
# fits): refused whole, whatever they carry, and whatever the stdlib's tables say this year.
_TUNNELS = (
    (ipaddress.IPv6Network("2002::/16"), "a 6to4 address"),
    (ipaddress.IPv6Network("2001::/32"), "a Teredo address"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (ipaddress.IPv6Network("fec0::/10"), "a site-local address"),
)
# Translations of one IPv4 address (a DNS64 resolver answers 64:ff9b::<IPv4> for IPv4-only
# hosts): judged by the IPv4 address, so public hosts stay reachable and private ones do not.
_TRANSLATIONS = (
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
)


def blocked_reason(address: str) -> str | None:
    """Why an address may not be called from a deployed stage, or None if it is public."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        for net, name in _TUNNELS:
            if ip in net:
                return name
        if any(ip in net for net in _TRANSLATIONS):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (such as the instance metadata service)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_reserved:  # before is_private, which includes 240.0.0.0/4
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def _literal(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return []


def _resolve(resolver: Resolver, host: str, port: int, field: str | None) -> list[str]:
    try:
        addresses = resolver(host, port)
    except socket.gaierror as exc:
        gone = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        raise HttpError(f"unreachable: the host {host} was not found" if gone else
                        f"unreachable: the host {host} could not be resolved right now",
                        kind="unreachable", transient=not gone, field=field) from None
    if not addresses:
        raise HttpError(f"unreachable: the host {host} has no address", kind="unreachable",
                        transient=False, field=field)
    return addresses


def check_url(url: str, *, allow_private: bool | None = None, resolver: Resolver = system_resolver,
              field: str | None = "url") -> Target:
    """Parse and vet a URL before anything is sent (see the module docstring).

    Error messages name the host only: a URL's path or query may hold a token."""
    if allow_private is None:
        allow_private = settings().allow_private_urls

    def refuse(why: str) -> HttpError:
        return HttpError(why, kind="blocked", transient=False, field=field)

    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise refuse("the URL is not valid") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed:
        raise refuse("the URL must start with https://")
    if parts.username is not None or parts.password is not None:
        raise refuse("the URL may not contain a user name or password; use an authorization method")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise refuse("the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    literal = _literal(host)
    addresses = literal or _resolve(resolver, host, port, field)
    if not allow_private:
        # Every address, not just the first: a name may answer with a public and a private one.
        for address in addresses:
            why = blocked_reason(address)
            if why:
                where = f"{host} is {why}" if literal else f"the host {host} resolves to {why} ({address})"
                raise refuse(f"{where}; Switchyard only calls public endpoints")
    bracketed = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    host_header = bracketed if port == default else f"{bracketed}:{port}"
    return Target(scheme, host, port, path, tuple(addresses), host_header)
