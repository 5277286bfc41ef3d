"""Host header validation for servers: an allowlist of the names a server answers to.

A server that checks Host refuses requests addressed to a name it doesn't serve. That defeats
DNS rebinding, where a web page's own domain is made to resolve to the server (say, one on
``127.0.0.1`` or a private network) so that the browser, believing it talks to the page's
origin, sends the attacker's requests there with ``Host: attacker.example``. Checking Origin
(:func:`~wsend.protocol.handshake.check_origin`) protects WebSocket handshakes from other
sites; checking Host also protects plain HTTP routes and clients that send no Origin.

Sans-I/O: :class:`AllowedHosts` parses the allowlist once; :func:`check_host` checks a request
against it (RFC 9110 section 7.2: ``Host = uri-host [ ":" port ]``) and raises
:class:`~wsend.exceptions.InvalidHeader` (400) for a missing, repeated or malformed Host, or
:class:`~wsend.exceptions.InvalidHost` (421 Misdirected Request, RFC 9110 section 15.5.20)
for a Host not in the list.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from ..exceptions import InvalidHeader, InvalidHost
from .http import Request

__all__ = ["AllowedHosts", "HostPattern", "check_host", "parse_host"]

HostPattern = str | re.Pattern[str]
"""An allowlist entry: ``"example.com"``, ``"example.com:8443"``, ``"*.example.com"``,
``"[::1]:8765"``, ``"*"``, or a compiled pattern that must match the whole Host value."""

# RFC 3986 section 3.2.2: IP-literal (IPv6 only: no IPvFuture, no zone) or reg-name (which
# includes IPv4 addresses), then an optional port of digits.
_HOST_RE = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::(?P<port>[0-9]{1,5}))?"
)


def parse_host(value: str) -> tuple[str, int | None]:
    """Split a Host value into a host and a port.

    Returns:
        The host, lowercased, without a trailing dot, an IPv6 address without brackets and
        in its compressed form; the port, or ``None`` when there is none.

    Raises:
        InvalidHeader: the value isn't ``uri-host [":" port]`` (status 400).
    """
    match = _HOST_RE.fullmatch(value.strip(" \t"))
    if match is None:
        raise InvalidHeader("Host", value)
    host, port = match["host"], match["port"]
    if host.startswith("["):
        try:
            host = ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            raise InvalidHeader("Host", value) from None
    number = None if port is None else int(port)
    if number is not None and number > 65535:
        raise InvalidHeader("Host", value)
    host = host.lower().rstrip(".")
    if not host:
        raise InvalidHeader("Host", value)
    return host, number


class AllowedHosts:
    """An allowlist of Host values, parsed once.

    Entries, compared ignoring case and a trailing dot:

    - ``"example.com"``: that name, on any port;
    - ``"example.com:8443"``: that name on that port only (a Host without a port is on the
      default port: 443 over TLS, else 80);
    - ``"*.example.com"``: any name under ``example.com`` (not ``example.com`` itself: list
      it too), on any port, or on the one given as in ``"*.example.com:8443"``;
    - ``"127.0.0.1"``, ``"[::1]"``, ``"[::1]:8765"``: IP addresses (IPv6 in brackets);
    - ``"*"``: anything well-formed;
    - a compiled :class:`re.Pattern`: must ``fullmatch`` the Host value as sent.

    Args:
        entries: the allowed hosts; an empty list allows nothing.

    Raises:
        ValueError: an entry is malformed.
    """

    __slots__ = ("_any", "_exact", "_patterns", "_wildcards")

    def __init__(self, entries: Iterable[HostPattern]) -> None:
        self._any = False
        self._exact: list[tuple[str, int | None]] = []
        self._wildcards: list[tuple[str, int | None]] = []
        self._patterns: list[re.Pattern[str]] = []
        for entry in entries:
            self._add(entry)

    def _add(self, entry: HostPattern) -> None:
        if isinstance(entry, re.Pattern):
            self._patterns.append(entry)
        elif entry.strip() == "*":
            self._any = True
        elif entry.startswith("*."):
            host, port = _parse_entry(entry, entry[2:])
            self._wildcards.append((f".{host}", port))
        else:
            self._exact.append(_parse_entry(entry, entry))

    def allows(self, value: str, *, default_port: int) -> bool:
        """Whether the Host ``value`` is allowed.

        Raises:
            InvalidHeader: the value is malformed.
        """
        host, port = parse_host(value)
        if self._any or any(pattern.fullmatch(value) for pattern in self._patterns):
            return True
        port = default_port if port is None else port
        for allowed, allowed_port in self._exact:
            if host == allowed and allowed_port in (None, port):
                return True
        for suffix, allowed_port in self._wildcards:
            if host.endswith(suffix) and allowed_port in (None, port):
                return True
        return False


def _parse_entry(entry: str, text: str) -> tuple[str, int | None]:
    try:
        return parse_host(text)
    except InvalidHeader:
        raise ValueError(f"invalid allowed host: {entry!r}") from None


def check_host(request: Request, allowed: AllowedHosts, *, secure: bool) -> None:
    """Check the Host header of ``request`` against an allowlist.

    Args:
        request: the parsed request.
        allowed: the allowlist.
        secure: whether the request came over TLS (a Host without a port is then on 443).

    Raises:
        InvalidHeader: Host is missing, repeated or malformed (400).
        InvalidHost: Host isn't allowed (421 Misdirected Request).
    """
    values = request.headers.get_all("Host")
    if not values:
        raise InvalidHeader("Host")
    if len(values) > 1:
        raise InvalidHeader("Host", ", ".join(values), "more than one Host header")
    if not allowed.allows(values[0], default_port=443 if secure else 80):
        raise InvalidHost("Host", values[0], f"this server doesn't serve {values[0]!r}")
