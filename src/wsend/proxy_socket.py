"""Blocking sockets through a proxy: the tunnels of :mod:`wsend.asyncio.proxy` for code that
runs in threads rather than in an event loop.

:func:`open_proxy_socket` returns a socket connected to a server through an HTTP, HTTPS or SOCKS
proxy; the caller then speaks to the server on it (TLS first for ``wss://``). The CONNECT
exchange is :mod:`wsend.protocol.proxy`'s; SOCKS is python-socks' blocking API
(``pip install 'wsend[socks]'``).

Also here, shared with the asyncio side: the translation of python-socks' exceptions and of
connection failures into wsend's.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import Protocol, TypeVar

from .exceptions import (
    InvalidMessage,
    InvalidProxyMessage,
    OpenTimeout,
    ProxyAuthenticationRequired,
    ProxyConnectionError,
    ProxyError,
    ProxyRefused,
    UsageError,
)
from .protocol.handshake import USER_AGENT
from .protocol.http import HeadersLike, HTTPLimits, ResponseParser
from .protocol.proxy import Proxy, build_connect_request, check_connect_response, parse_proxy

__all__ = [
    "Stream",
    "open_http_tunnel",
    "open_proxy_socket",
    "proxy_unreachable",
    "socks_proxy_error",
]

SOCKS_MISSING = "{scheme}:// proxies need python-socks: pip install 'wsend[socks]'"
# Bytes read at once while waiting for the answer to CONNECT.
_READ_SIZE = 4096


def open_proxy_socket(
    proxy: str | Proxy,
    host: str,
    port: int,
    *,
    timeout: float | None = None,
    proxy_ssl: ssl_module.SSLContext | None = None,
    proxy_headers: HeadersLike | None = None,
    user_agent: str | None = USER_AGENT,
    limits: HTTPLimits | None = None,
) -> socket.socket:
    """Open a blocking socket to ``host:port`` through ``proxy``.

    Args:
        proxy: a proxy URL (``http://``, ``https://``, ``socks5://``, ``socks5h://``,
            ``socks4://``, ``socks4a://``, with optional credentials) or a parsed
            :class:`~wsend.protocol.proxy.Proxy`.
        host, port: the server.
        timeout: the socket timeout, for each blocking operation while opening and after
            (``None``: block).
        proxy_ssl: the TLS context for an ``https://`` proxy (default: verify it with the
            system's CAs).
        proxy_headers: more headers for the CONNECT request of an HTTP proxy.
        user_agent: the User-Agent of the CONNECT request (``None``: none).
        limits: limits for the proxy's answer.

    Returns:
        A socket connected to the server. Through an ``https://`` proxy it is the
        :class:`ssl.SSLSocket` to the proxy, the tunnel running inside its TLS: a ``wss://``
        server then needs TLS inside TLS (an :class:`ssl.SSLObject` over memory BIOs, as
        ``SSLContext.wrap_socket`` can't wrap an ``SSLSocket``).

    Raises:
        InvalidProxy: the proxy URL is invalid.
        ProxyConnectionError: the proxy can't be reached (TCP, or TLS to an ``https://``
            proxy); also an ``OSError``.
        ProxyAuthenticationRequired, ProxyRefused, InvalidProxyMessage: as in
            :func:`wsend.connect`.
        OpenTimeout: ``timeout`` expired while opening the tunnel.
        UsageError: a SOCKS proxy, but python-socks isn't installed.
    """
    if isinstance(proxy, str):
        proxy = parse_proxy(proxy)
    if proxy.is_socks:
        return _socks(proxy, host, port, timeout)
    checked = proxy

    def start(sock: socket.socket) -> socket.socket:
        if checked.scheme != "https":
            return sock
        context = proxy_ssl or ssl_module.create_default_context()
        try:
            return context.wrap_socket(sock, server_hostname=checked.host)
        except ssl_module.SSLError as exc:
            raise proxy_unreachable(checked, exc) from exc

    _, stream = open_http_tunnel(
        proxy,
        host,
        port,
        start,
        timeout=timeout,
        proxy_headers=proxy_headers,
        user_agent=user_agent,
        limits=limits,
    )
    return stream


class Stream(Protocol):
    """What the CONNECT exchange needs of the connection to the proxy: a blocking socket, an
    :class:`ssl.SSLSocket`, or TLS over memory buffers that reads and writes a socket."""

    def sendall(self, data: bytes, /) -> None: ...  # pragma: no cover - a protocol

    def recv(self, size: int, /) -> bytes: ...  # pragma: no cover - a protocol

    def close(self) -> None: ...  # pragma: no cover - a protocol


StreamT = TypeVar("StreamT", bound=Stream)


def open_http_tunnel(
    proxy: Proxy,
    host: str,
    port: int,
    start: Callable[[socket.socket], StreamT],
    *,
    timeout: float | None,
    proxy_headers: HeadersLike | None,
    user_agent: str | None,
    limits: HTTPLimits | None,
) -> tuple[socket.socket, StreamT]:
    """Open a tunnel to ``host:port`` through the HTTP or HTTPS ``proxy`` (CONNECT).

    Args:
        start: called with the TCP connection to the proxy, returns the stream that the
            CONNECT exchange runs on: the socket itself, or TLS with an ``https://`` proxy
            (raising :class:`ProxyConnectionError` when its handshake fails).
        timeout, proxy_headers, user_agent, limits: as for :func:`open_proxy_socket`.

    Returns:
        The socket to the proxy and the stream made by ``start``, past the proxy's answer.

    Raises:
        As :func:`open_proxy_socket`.
    """
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout)
    except OSError as exc:
        raise proxy_unreachable(proxy, exc) from exc
    stream: Stream = sock
    try:
        stream = started = start(sock)
        request = build_connect_request(
            proxy, host, port, headers=proxy_headers, user_agent=user_agent
        )
        stream.sendall(request.serialize())
        _read_answer(stream, proxy, host, port, limits or HTTPLimits())
    except TimeoutError as exc:
        stream.close()
        sock.close()
        raise OpenTimeout(f"timed out opening a tunnel through proxy {proxy.address}") from exc
    except BaseException:
        stream.close()
        sock.close()
        raise
    return sock, started


def _read_answer(stream: Stream, proxy: Proxy, host: str, port: int, limits: HTTPLimits) -> None:
    parser = ResponseParser(limits, head_only=True)
    while True:
        data = stream.recv(_READ_SIZE)
        if not data:
            raise InvalidProxyMessage("the proxy closed the connection without answering")
        try:
            response = parser.feed(data)
        except InvalidMessage as exc:
            raise InvalidProxyMessage(f"invalid answer to CONNECT: {exc}") from exc
        if response is not None:
            break
    check_connect_response(response, proxy, host, port)
    if parser.leftover:
        raise InvalidProxyMessage(f"proxy {proxy.address} sent data before the tunnel was used")


def _socks(proxy: Proxy, host: str, port: int, timeout: float | None) -> socket.socket:
    try:
        from python_socks import ProxyType
        from python_socks.sync import Proxy as SocksProxy
    except ImportError as exc:
        raise UsageError(SOCKS_MISSING.format(scheme=proxy.scheme)) from exc
    version = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    client = SocksProxy(
        version, proxy.host, proxy.port, proxy.username, proxy.password, rdns=proxy.remote_dns
    )
    try:
        sock: socket.socket = client.connect(host, port, timeout=timeout)
    except Exception as exc:
        raise socks_proxy_error(proxy, host, port, exc) from exc
    sock.settimeout(timeout)
    return sock


def proxy_unreachable(proxy: Proxy, exc: OSError) -> ProxyConnectionError:
    """The error for a proxy that can't be reached (raise it ``from exc``)."""
    what = "TLS handshake with" if isinstance(exc, ssl_module.SSLError) else "cannot connect to"
    return ProxyConnectionError(f"{what} proxy {proxy.address}: {exc}")


def socks_proxy_error(proxy: Proxy, host: str, port: int, exc: Exception) -> Exception:
    """Translate an exception raised by python-socks into wsend's (to raise ``from exc``).

    Returns:
        :class:`ProxyConnectionError` when the proxy can't be reached,
        :class:`~wsend.exceptions.OpenTimeout` when python-socks timed out,
        :class:`ProxyRefused` (with the reply code) when the proxy refused the connection,
        :class:`ProxyAuthenticationRequired` when authentication failed,
        :class:`InvalidProxyMessage` for anything else the proxy got wrong; other
        exceptions (a failure to resolve the server's name locally...) are returned as is.
    """
    import python_socks

    target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if isinstance(exc, python_socks.ProxyConnectionError):
        return ProxyConnectionError(f"cannot connect to proxy {proxy.address}: {exc}")
    if isinstance(exc, python_socks.ProxyTimeoutError):
        return OpenTimeout(f"timed out opening a tunnel through proxy {proxy.address}")
    if not isinstance(exc, python_socks.ProxyError):
        return exc
    message = f"proxy {proxy.address} refused the tunnel to {target}: {exc}"
    if exc.error_code is not None:
        return ProxyRefused(message, reply=exc.error_code)
    # python-socks reports RFC 1929 failures, and a proxy accepting none of the offered
    # methods, without a code: "... authentication failure", "No acceptable authentication
    # methods were offered".
    if "authentication" in str(exc).lower():
        return ProxyAuthenticationRequired(message)
    error: ProxyError = InvalidProxyMessage(f"invalid answer from proxy {proxy.address}: {exc}")
    return error
