"""Client proxies, sans-I/O: proxy URLs, choosing a proxy from the environment, and the HTTP
CONNECT exchange (RFC 9110 section 9.3.6, RFC 6455 section 4.1).

- :func:`parse_proxy` reads a proxy URL: ``http://``, ``https://`` (TLS to the proxy),
  ``socks5://``, ``socks5h://`` (the proxy resolves the server's name), ``socks4://``,
  ``socks4a://``, with optional ``user:password@``.
- :func:`proxy_from_environment` picks the proxy for a server from ``wss_proxy`` /
  ``ws_proxy``, ``https_proxy``, ``http_proxy``, ``all_proxy`` and ``no_proxy``.
- :func:`build_connect_request` builds the CONNECT request; feed the proxy's answer to a
  :class:`~wsend.protocol.http.ResponseParser` made with ``head_only=True``, then
  :func:`check_connect_response`. After a 2xx, the connection is a tunnel to the server.

The I/O around them lives in :mod:`wsend.asyncio.proxy` (asyncio) and
:mod:`wsend.proxy_socket` (blocking sockets).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..exceptions import InvalidProxy, ProxyAuthenticationRequired, ProxyRefused
from .handshake import USER_AGENT, build_basic_auth
from .http import Headers, HeadersLike, Request, Response

__all__ = [
    "DEFAULT_PORTS",
    "Proxy",
    "build_connect_request",
    "check_connect_response",
    "choose_proxy",
    "no_proxy_matches",
    "parse_proxy",
    "proxy_from_environment",
]

#: Supported schemes and their default ports: 80 and 443 as for HTTP and HTTPS, 1080 for SOCKS
#: (its IANA port, which curl also assumes).
DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
}

# Separators between no_proxy entries: commas, and spaces as some tools write them.
_NO_PROXY_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Proxy:
    """A parsed proxy URL.

    Attributes:
        scheme: ``"http"``, ``"https"``, ``"socks5"``, ``"socks5h"``, ``"socks4"`` or
            ``"socks4a"``.
        host: the proxy's host name (lowercased, IDNA-encoded) or IP address (no brackets).
        port: the proxy's port, the scheme's default when the URL has none.
        username: the user name, percent-decoded, or ``None``.
        password: the password, percent-decoded, or ``None``; never shown by ``repr()``.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def is_socks(self) -> bool:
        """Whether this is a SOCKS proxy (otherwise, an HTTP CONNECT proxy)."""
        return self.scheme.startswith("socks")

    @property
    def remote_dns(self) -> bool:
        """Whether the proxy resolves the server's name (``socks5h``, ``socks4a``; an HTTP
        proxy always does)."""
        return self.scheme in ("socks5h", "socks4a", "http", "https")

    @property
    def address(self) -> str:
        """``scheme://host:port``, without credentials: safe in messages and logs."""
        return f"{self.scheme}://{_authority(self.host, self.port)}"


def parse_proxy(url: str) -> Proxy:
    """Parse a proxy URL such as ``http://user:secret@proxy.example:3128``.

    A URL without ``scheme://`` is taken as ``http://`` (as curl does with ``https_proxy``
    values like ``proxy:3128``). User and password are percent-decoded, so they may contain
    ``@``, ``:`` or ``/`` written as ``%40``, ``%3A``, ``%2F``.

    Raises:
        InvalidProxy: an unsupported scheme, no host, a bad port, a path, query or fragment,
            or a user without a password (the message never shows the password).
    """
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parsed = urllib.parse.urlsplit(text)
        port = parsed.port
    except ValueError as exc:
        raise InvalidProxy(url, str(exc)) from exc
    scheme = parsed.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidProxy(url, f"scheme {scheme!r} isn't supported")
    if not parsed.hostname:
        raise InvalidProxy(url, "the host is missing")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise InvalidProxy(url, "a proxy URL has no path, query or fragment")
    username = _unquote(parsed.username)
    password = _unquote(parsed.password)
    if username is not None and password is None:
        raise InvalidProxy(url, "a user name without a password")
    host = _host(url, parsed.hostname)
    return Proxy(scheme, host, port or DEFAULT_PORTS[scheme], username, password)


def _unquote(value: str | None) -> str | None:
    return None if value is None else urllib.parse.unquote(value)


def _host(url: str, hostname: str) -> str:
    if hostname.isascii():
        return hostname
    try:
        return hostname.encode("idna").decode()
    except UnicodeError as exc:
        raise InvalidProxy(url, "the host isn't a valid domain name") from exc


def _authority(host: str, port: int) -> str:
    if ":" in host:  # an IPv6 literal (RFC 3986 section 3.2.2)
        host = f"[{host}]"
    elif not host.isascii():
        host = host.encode("idna").decode()
    return f"{host}:{port}"


# Choosing a proxy from the environment


def proxy_from_environment(
    secure: bool, host: str, port: int, environ: Mapping[str, str]
) -> str | None:
    """Return the proxy URL configured in ``environ`` for a server, or ``None`` to go direct.

    In order:

    1. servers matched by ``no_proxy`` are reached directly (see :func:`no_proxy_matches`);
       as with curl, Python's ``urllib`` and websockets, loopback servers are no exception:
       list ``localhost,127.0.0.1,::1`` there to reach them directly;
    2. for ``wss://``: ``wss_proxy``, then ``https_proxy``, then ``all_proxy``;
       for ``ws://``: ``ws_proxy``, then ``https_proxy``, then ``http_proxy``, then
       ``all_proxy`` (RFC 6455 section 4.1 prefers the proxy for HTTPS over the one for
       HTTP, as the connection is a tunnel either way).

    Each name is looked up in lower case, then in upper case; an empty value counts as unset
    (and an empty lower-case one hides the upper-case one, as in Python's ``urllib``).
    ``HTTP_PROXY`` in upper case is ignored when ``REQUEST_METHOD`` is set: under CGI, a
    client's ``Proxy:`` request header arrives as ``HTTP_PROXY`` ("httpoxy").

    Args:
        secure: whether the URI is ``wss://``.
        host: the server's host name or IP address (no brackets).
        port: the server's port.
        environ: the environment, usually ``os.environ``.
    """
    no_proxy = _getenv(environ, "no_proxy")
    if no_proxy and no_proxy_matches(no_proxy, host, port):
        return None
    names = ("wss", "https", "all") if secure else ("ws", "https", "http", "all")
    for name in names:
        value = _getenv(environ, f"{name}_proxy")
        if value:
            return value
    return None


def choose_proxy(
    setting: Proxy | bool | None, secure: bool, host: str, port: int, environ: Mapping[str, str]
) -> Proxy | None:
    """The proxy to reach a server through, as a client's ``proxy`` argument says.

    Args:
        setting: ``True`` for the proxy ``environ`` names (:func:`proxy_from_environment`),
            a :class:`Proxy`, or ``None`` or ``False`` to connect directly.
        secure, host, port, environ: as for :func:`proxy_from_environment`.

    Raises:
        InvalidProxy: the environment names an invalid proxy URL.
    """
    if setting is True:
        url = proxy_from_environment(secure, host, port, environ)
        return None if url is None else parse_proxy(url)
    return setting if isinstance(setting, Proxy) else None


def _getenv(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None and not (name == "http_proxy" and "REQUEST_METHOD" in environ):
        value = environ.get(name.upper())
    return value.strip() if value else None


def no_proxy_matches(no_proxy: str, host: str, port: int) -> bool:
    """Whether a ``no_proxy`` value says to reach ``host:port`` directly.

    Entries are separated by commas (or spaces) and ignore case:

    - ``*`` matches every server;
    - a domain (``example.com``, ``.example.com`` or ``*.example.com``) matches that name and
      every name under it, as curl does: all three match ``example.com`` and
      ``ws.example.com``, none matches ``badexample.com``;
    - an IP address (``10.1.2.3``, ``::1``, ``[::1]``) matches that address;
    - a network in CIDR notation (``10.0.0.0/8``, ``fd00::/8``) matches addresses in it;
    - any of these with ``:port`` (``example.com:8443``, ``[::1]:8080``) matches only that port.

    Names are compared as written: a name is not resolved to match an address entry.
    """
    host = host.lower().rstrip(".")
    address = _ip_address(host)
    for entry in _NO_PROXY_SEPARATORS.split(no_proxy.strip().lower()):
        if entry == "*":
            return True
        pattern, entry_port = _split_port(entry)
        if not pattern or (entry_port is not None and entry_port != port):
            continue
        if _entry_matches(pattern, host, address):
            return True
    return False


def _entry_matches(
    pattern: str, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> bool:
    if "/" in pattern:
        try:
            network = ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
        return address is not None and address in network
    entry_address = _ip_address(pattern)
    if entry_address is not None or address is not None:
        return entry_address == address
    domain = pattern.removeprefix("*").lstrip(".").rstrip(".")
    return bool(domain) and (host == domain or host.endswith(f".{domain}"))


def _split_port(entry: str) -> tuple[str, int | None]:
    """Split ``host:port``, ``[v6]:port``, ``[v6]`` or a bare IPv6 address (no port)."""
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        return inside, _port(rest[1:] if rest.startswith(":") else "")
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, _port(port)
    return entry, None


def _port(text: str) -> int | None:
    """``None`` for no port; -1, which matches no port, for one that isn't a number."""
    if not text:
        return None
    return int(text) if text.isdigit() else -1


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


# HTTP CONNECT (RFC 9110 section 9.3.6)


def build_connect_request(
    proxy: Proxy,
    host: str,
    port: int,
    *,
    headers: HeadersLike | None = None,
    user_agent: str | None = USER_AGENT,
) -> Request:
    """Build the CONNECT request asking an HTTP proxy for a tunnel to ``host:port``.

    The request-target and Host are the server's authority, ``host:port`` (RFC 9112 section
    3.2.3); the proxy's credentials, if its URL has some, go in ``Proxy-Authorization`` as
    Basic credentials (RFC 7617), and nowhere else.

    Args:
        proxy: an ``http`` or ``https`` proxy.
        host: the server's host name or IP address (an IPv6 address is bracketed).
        port: the server's port.
        headers: more headers for the proxy; a ``Proxy-Authorization`` here replaces the one
            built from the URL (for other schemes than Basic).
        user_agent: the User-Agent value; ``None`` sends none.

    Raises:
        ValueError: a header is invalid, or the user name contains ``:``.
    """
    authority = _authority(host, port)
    fields = Headers([("Host", authority)])
    if user_agent is not None:
        fields.add("User-Agent", user_agent)
    if proxy.username is not None:
        assert proxy.password is not None  # parse_proxy rules out a user without password
        fields.add("Proxy-Authorization", build_basic_auth(proxy.username, proxy.password))
    if headers is not None:
        fields.update(headers)
    return Request("CONNECT", authority, fields)


def check_connect_response(response: Response, proxy: Proxy, host: str, port: int) -> None:
    """Check a proxy's answer to CONNECT: any 2xx opens the tunnel (RFC 9110 section 9.3.6).

    Raises:
        ProxyAuthenticationRequired: 407 (its ``headers`` hold ``Proxy-Authenticate``), or
            401, which some proxies send for wrong credentials (tinyproxy does): a 401 to
            CONNECT can only come from the proxy.
        ProxyRefused: any other status (403 forbidden by the proxy's rules, 502 the server
            can't be reached...).
    """
    if 200 <= response.status < 300:
        return
    auth = response.status in (401, 407)
    error = ProxyAuthenticationRequired if auth else ProxyRefused
    reason = f" {response.reason}" if response.reason else ""
    raise error(
        f"proxy {proxy.address} refused the tunnel to {_authority(host, port)}: "
        f"HTTP {response.status}{reason}",
        status_code=response.status,
        headers=response.headers,
    )
