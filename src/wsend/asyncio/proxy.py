"""Opening client connections through a proxy, on asyncio.

:func:`create_proxied_connection` is ``loop.create_connection`` through a proxy: it returns
``(transport, protocol)`` with the protocol connected to the server.

- ``http://`` and ``https://`` proxies: a TCP connection to the proxy (TLS too for
  ``https://``), a CONNECT request (:mod:`wsend.protocol.proxy`), then the tunnel is handed to
  the protocol, after a TLS handshake with the server for ``wss://``. Through an ``https://``
  proxy that is TLS inside TLS, which asyncio's TLS transports support since Python 3.11 and
  aiofastnet's too.
- ``socks4://``, ``socks4a://``, ``socks5://``, ``socks5h://``: ``python-socks``
  (``pip install 'wsend[socks]'``) negotiates the tunnel on a socket, which then becomes an
  ordinary connection.

Every failure of the proxy becomes a :class:`~wsend.exceptions.ProxyError` (chained to the
cause); failures of the server behind it are reported as for a direct connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import Any, cast

from ..exceptions import InvalidMessage, InvalidProxyMessage, UsageError
from ..protocol.http import Headers, HTTPLimits, Response, ResponseParser
from ..protocol.proxy import Proxy, build_connect_request, check_connect_response
from ..proxy_socket import SOCKS_MISSING, proxy_unreachable, socks_proxy_error
from . import transports

__all__ = ["create_proxied_connection"]


async def create_proxied_connection(
    fast: bool,
    factory: Callable[[], asyncio.BaseProtocol],
    proxy: Proxy,
    host: str,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    proxy_ssl: ssl_module.SSLContext | None = None,
    proxy_headers: Headers | None = None,
    user_agent: str | None = None,
    limits: HTTPLimits | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Connect to ``host:port`` through ``proxy``; return the transport and the protocol.

    Args:
        fast: use aiofastnet's transports (see :mod:`wsend.asyncio.transports`).
        factory: makes the protocol of the connection to the server.
        proxy: the proxy.
        host, port: the server.
        ssl: the TLS context for the server (``wss://``), or ``None``.
        server_hostname: the server name for TLS, if not ``host``.
        proxy_ssl: the TLS context for an ``https://`` proxy (default: verify it with the
            system's CAs).
        proxy_headers: more headers for the CONNECT request.
        user_agent: the User-Agent of the CONNECT request.
        limits: limits for the proxy's answer.

    Raises:
        ProxyConnectionError: the proxy can't be reached (TCP, or TLS with an ``https://``
            proxy).
        ProxyAuthenticationRequired: the proxy wants credentials or refused them.
        ProxyRefused: the proxy refused the tunnel.
        InvalidProxyMessage: the proxy's answer is malformed.
        UsageError: a SOCKS proxy, but python-socks isn't installed.
        OSError: the TLS handshake with the server failed (or, through ``socks5://`` and
            ``socks4://``, resolving the server's name did).
    """
    tls: dict[str, Any] = {}
    if ssl is not None:
        tls = {"ssl": ssl, "server_hostname": server_hostname or host}
    if proxy.is_socks:
        sock = await _socks_connect(proxy, host, port)
        transport, protocol = await transports.create_connection(
            fast, factory, None, sock=sock, **tls
        )
        return cast(asyncio.Transport, transport), protocol
    transport = await _http_tunnel(
        fast, proxy, host, port, proxy_ssl, proxy_headers, user_agent, limits or HTTPLimits()
    )
    protocol = factory()
    try:
        if ssl is not None:
            transport = await transports.start_tls(fast, transport, protocol, **_rename(tls))
            protocol.connection_made(transport)
        else:
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            transport.resume_reading()
    except BaseException:
        transport.abort()
        raise
    return transport, protocol


def _rename(tls: dict[str, Any]) -> dict[str, Any]:
    return {"context": tls["ssl"], "server_hostname": tls["server_hostname"]}


# HTTP CONNECT


class _Tunnel(asyncio.Protocol):
    """Sends CONNECT and parses the answer into :attr:`opened`; then pauses reading until the
    tunnel is handed over, keeping whatever else arrives in :attr:`early`."""

    def __init__(self, request: bytes, limits: HTTPLimits) -> None:
        self.request = request
        self.parser = ResponseParser(limits, head_only=True)
        self.opened: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.early = b""
        self.lost = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.opened.done():  # pragma: no cover - reading is paused by then
            self.early = (self.early + data)[:1]  # only whether there was any matters
            return
        try:
            response = self.parser.feed(data)
        except InvalidMessage as exc:
            error = InvalidProxyMessage(f"invalid answer to CONNECT: {exc}")
            error.__cause__ = exc
            self.opened.set_exception(error)
            return
        if response is not None:
            self.early = self.parser.leftover[:1]
            assert self.transport is not None
            self.transport.pause_reading()
            self.opened.set_result(response)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.opened.done():
            error = InvalidProxyMessage("the proxy closed the connection without answering")
            error.__cause__ = exc
            self.opened.set_exception(error)

    def check_open(self, proxy: Proxy) -> None:
        """Raise :class:`InvalidProxyMessage` if the tunnel can't be handed over."""
        if self.early:
            raise InvalidProxyMessage(f"proxy {proxy.address} sent data before the tunnel was used")
        if self.lost:  # pragma: no cover - reading is paused: EOF shows after the handover
            raise InvalidProxyMessage(f"proxy {proxy.address} closed the tunnel")


async def _http_tunnel(
    fast: bool,
    proxy: Proxy,
    host: str,
    port: int,
    proxy_ssl: ssl_module.SSLContext | None,
    proxy_headers: Headers | None,
    user_agent: str | None,
    limits: HTTPLimits,
) -> asyncio.Transport:
    """Open a connection to the proxy and a tunnel through it; return its transport."""
    request = build_connect_request(
        proxy, host, port, headers=proxy_headers, user_agent=user_agent
    ).serialize()
    kwargs: dict[str, Any] = {"host": proxy.host, "port": proxy.port}
    if proxy.scheme == "https":
        kwargs.update(ssl=proxy_ssl or ssl_module.create_default_context())
        kwargs.update(server_hostname=proxy.host)
    try:
        transport, tunnel = await transports.create_connection(
            fast, lambda: _Tunnel(request, limits), None, **kwargs
        )
    except OSError as exc:
        raise proxy_unreachable(proxy, exc) from exc
    try:
        response = await tunnel.opened
        check_connect_response(response, proxy, host, port)
        tunnel.check_open(proxy)
    except BaseException:
        transport.abort()
        raise
    return cast(asyncio.Transport, transport)


# SOCKS, through python-socks


async def _socks_connect(proxy: Proxy, host: str, port: int) -> socket.socket:
    try:
        from python_socks import ProxyType
        from python_socks.async_.asyncio import Proxy as SocksProxy
    except ImportError as exc:
        raise UsageError(SOCKS_MISSING.format(scheme=proxy.scheme)) from exc
    version = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    client = SocksProxy(
        version, proxy.host, proxy.port, proxy.username, proxy.password, rdns=proxy.remote_dns
    )
    try:
        sock: socket.socket = await client.connect(host, port)
    except Exception as exc:
        raise socks_proxy_error(proxy, host, port, exc) from exc
    return sock
