"""The asyncio WebSocket client: :func:`connect` and :class:`ClientConnection`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as ssl_module
import urllib.parse
from collections.abc import AsyncIterator, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    OpenTimeout,
    TooManyRedirects,
)
from ..protocol import handshake
from ..protocol.deflate import ClientDeflate
from ..protocol.http import Headers, HTTPLimits, Response, ResponseParser
from ..protocol.opening import (
    ClientHandshake,
    check_tls_setting,
    deflate_setting,
    with_credentials,
)
from ..protocol.proxy import Proxy, choose_proxy, parse_proxy
from ..reconnect import Backoff, ProcessException, process_exception
from . import transports
from .connection import DEFAULT_OPEN_TIMEOUT, Connection, ConnectionOptions
from .proxy import create_proxied_connection
from .reconnect import reconnecting

__all__ = ["ClientConnection", "WebSocketURI", "connect", "follow_redirect", "parse_uri"]

logger = logging.getLogger("wsend.client")

HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]

# Redirects followed by default: browsers follow 20, websockets 10, Node's ws none by default.
DEFAULT_MAX_REDIRECTS = 10
# Headers that carry credentials, dropped when a redirect leaves the origin.
_CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")


@dataclass(frozen=True)
class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URI."""

    secure: bool
    host: str
    port: int
    resource: str
    user: str | None = None
    password: str | None = None

    @property
    def origin(self) -> tuple[bool, str, int]:
        return (self.secure, self.host.lower(), self.port)


def parse_uri(uri: str) -> WebSocketURI:
    """Parse a WebSocket URI (RFC 6455 section 3).

    Raises:
        InvalidURI: not a ``ws``/``wss`` URI, no host, a fragment, or a bad port.
    """
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from exc
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    if not parsed.hostname:
        raise InvalidURI(uri, "hostname is missing")
    if parsed.fragment:
        raise InvalidURI(uri, "a fragment isn't allowed")
    secure = parsed.scheme == "wss"
    resource = parsed.path or "/"
    if parsed.query:
        resource += "?" + parsed.query
    user = urllib.parse.unquote(parsed.username) if parsed.username is not None else None
    password = urllib.parse.unquote(parsed.password) if parsed.password is not None else None
    if user is not None and password is None:
        raise InvalidURI(uri, "username provided without password")
    return WebSocketURI(
        secure=secure,
        host=parsed.hostname,
        port=port if port is not None else (443 if secure else 80),
        resource=resource,
        user=user,
        password=password,
    )


class ClientConnection(Connection):
    """A connection opened by :func:`connect`."""

    __slots__ = ("_handshake_done", "_parser")

    is_client = True
    logger = logger

    def __init__(self, options: ConnectionOptions, limits: HTTPLimits) -> None:
        super().__init__(options)
        self._parser = ResponseParser(limits)
        self._handshake_done: asyncio.Future[tuple[Response, bytes]] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handshake_data(self, data: bytes) -> None:
        if self._handshake_done.done():
            return
        try:
            response = self._parser.feed(data)
        except InvalidMessage as exc:
            self._handshake_done.set_exception(exc)
            return
        if response is not None:
            self._handshake_done.set_result((response, self._parser.leftover))

    def eof_received(self) -> bool | None:
        if self.proto is None and not self._handshake_done.done():
            try:
                response = self._parser.feed_eof()
            except InvalidMessage as exc:
                self._handshake_done.set_exception(exc)
            else:
                if response is not None:
                    self._handshake_done.set_result((response, b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._handshake_done.done():
            error = InvalidMessage("connection closed during the opening handshake")
            error.__cause__ = exc or EOFError("the server closed the connection")
            self._handshake_done.set_exception(error)
            self._handshake_done.exception()
        super().connection_lost(exc)

    async def handshake(self, opening: ClientHandshake) -> Response | None:
        """Run the opening handshake; return a redirect response to follow, or ``None``."""
        self.request = opening.request
        assert self.transport is not None
        self.transport.write(opening.request.serialize())
        response, leftover = await self._handshake_done
        self.response = response
        if opening.redirects(response):
            return response
        self.protocol, self.extensions, proto = opening.accept(response, self.options)
        self.start(proto, leftover)
        return None


class connect:
    """Open a WebSocket connection; ``await`` it, use it with ``async with``, or iterate it
    with ``async for`` to reconnect automatically (see :mod:`wsend.reconnect`).

    Args:
        uri: ``ws://`` or ``wss://`` URI; ``user:password@`` in it sends Basic auth.
        ssl: for ``wss://``, an ``ssl.SSLContext``; ``None`` or ``True`` use the default
            context, which verifies certificates.
        origin: the Origin header to send.
        subprotocols: subprotocols to offer, in order of preference.
        headers: extra request headers (``Authorization``, ``Cookie``...).
        compression: ``"deflate"`` (default) to offer permessage-deflate, ``None`` not to, or a
            :class:`~wsend.protocol.deflate.ClientDeflate` with custom settings.
        open_timeout: seconds allowed to connect and complete the opening handshake.
        max_redirects: redirects followed (credentials are dropped across origins).
        path: connect to this Unix socket instead of the URI's host (the URI still names
            the Host header and resource).
        sock: an already connected socket to use.
        server_hostname: the TLS server name, if not the URI's host.
        max_message_size, max_frame_size, max_queue, write_limit, ping_interval,
            ping_timeout, close_timeout: see :class:`ConnectionOptions`.
        user_agent: the User-Agent header (``None`` to omit it).
        limits: :class:`~wsend.protocol.http.HTTPLimits` for the response.
        fast_transport: run on aiofastnet's C transports: ``None`` (default) when installed,
            ``True`` to require them, ``False`` for asyncio's (see :mod:`wsend.asyncio.transports`).
        proxy: ``True`` (default) to use the proxy the environment names for the URI
            (``wss_proxy``/``ws_proxy``, ``https_proxy``, ``http_proxy``, ``all_proxy``,
            except for servers in ``no_proxy``: see
            :func:`~wsend.protocol.proxy.proxy_from_environment`); ``None`` or ``False`` to
            connect directly; or a proxy URL: ``http://[user:password@]host[:port]``,
            ``https://...`` (TLS to the proxy), ``socks5://``, ``socks5h://`` (the proxy
            resolves the server's name), ``socks4://``, ``socks4a://`` (SOCKS needs
            ``pip install 'wsend[socks]'``). Ignored with ``path`` or ``sock``.
        proxy_ssl: the TLS context for an ``https://`` proxy (default: verify its certificate
            with the system's CAs).
        proxy_headers: more headers for an HTTP proxy's CONNECT request (its credentials,
            from the proxy URL, go in ``Proxy-Authorization`` and never to the server).
        backoff: with ``async for``, the delays between attempts (:class:`~wsend.Backoff`).
        process_exception: with ``async for``, ``f(exc)`` returning ``None`` to retry after a
            failed attempt or the exception to raise; the default retries network errors,
            timeouts and 429/5xx answers (:func:`wsend.reconnect.process_exception`).

    Raises:
        InvalidURI: the URI is invalid.
        InvalidProxy: the proxy URL is invalid (raised at once).
        ProxyError: the proxy can't be reached (:class:`ProxyConnectionError`, also an
            ``OSError``), refused the tunnel (:class:`ProxyRefused`,
            :class:`ProxyAuthenticationRequired` for 407) or answered nonsense.
        OSError: the TCP connection failed.
        InvalidHandshake: the server refused or botched the opening handshake
            (:class:`InvalidStatus` carries its response).
        OpenTimeout: the handshake took longer than ``open_timeout``.
    """

    def __init__(
        self,
        uri: str,
        *,
        ssl: ssl_module.SSLContext | bool | None = None,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        headers: HeadersLike | None = None,
        compression: str | ClientDeflate | None = "deflate",
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        path: str | None = None,
        sock: socket.socket | None = None,
        server_hostname: str | None = None,
        user_agent: str | None = handshake.USER_AGENT,
        limits: HTTPLimits | None = None,
        fast_transport: bool | None = None,
        proxy: str | Proxy | bool | None = True,
        proxy_ssl: ssl_module.SSLContext | None = None,
        proxy_headers: HeadersLike | None = None,
        backoff: Backoff | None = None,
        process_exception: ProcessException = process_exception,
        **kwargs: Any,
    ) -> None:
        self.uri = parse_uri(uri)
        self.backoff = backoff or Backoff()
        self.process_exception = process_exception
        self.proxy = parse_proxy(proxy) if isinstance(proxy, str) else proxy
        self.proxy_ssl = proxy_ssl
        self.proxy_headers = Headers(proxy_headers) if proxy_headers is not None else None
        self.fast = transports.use_fast(fast_transport)
        self.options = ConnectionOptions(**kwargs)
        self.deflate = deflate_setting(compression, ClientDeflate)
        check_tls_setting(ssl, self.uri.secure)
        self.ssl = ssl
        self.origin = origin
        self.subprotocols = list(subprotocols or ())
        self.headers = Headers(headers) if headers is not None else Headers()
        self.open_timeout = open_timeout
        self.max_redirects = max_redirects
        self.path = path
        self.sock = sock
        self.server_hostname = server_hostname
        self.user_agent = user_agent
        self.limits = limits or HTTPLimits()
        self.connection: ClientConnection | None = None

    async def _connect(self) -> ClientConnection:
        try:
            async with asyncio.timeout(self.open_timeout):
                return await self._connect_following_redirects()
        except TimeoutError as exc:
            if self.connection is not None:
                self.connection.abort()
            raise OpenTimeout("timed out during the opening handshake") from exc

    async def _connect_following_redirects(self) -> ClientConnection:
        uri = self.uri
        headers = with_credentials(uri, self.headers)
        for _ in range(self.max_redirects + 1):
            conn = await self._open(uri)
            try:
                redirect = await conn.handshake(ClientHandshake(uri, headers, self))
            except InvalidHandshake:
                conn.abort()
                raise
            except BaseException:
                conn.abort()
                raise
            if redirect is None:
                return conn
            conn.abort()
            uri, headers = follow_redirect(uri, headers, redirect)
        raise TooManyRedirects(f"more than {self.max_redirects} redirects")

    async def _open(self, uri: WebSocketURI) -> ClientConnection:
        ssl: ssl_module.SSLContext | None = None
        if uri.secure:
            ssl = self.ssl if isinstance(self.ssl, ssl_module.SSLContext) else None
            if ssl is None:
                ssl = ssl_module.create_default_context()
        kwargs: dict[str, Any] = {"ssl": ssl}
        if ssl is not None:
            kwargs["server_hostname"] = self.server_hostname or uri.host

        def factory() -> ClientConnection:
            return ClientConnection(self.options, self.limits)

        proxy = self._proxy_for(uri)
        if proxy is not None:
            _, conn = await create_proxied_connection(
                self.fast,
                factory,
                proxy,
                uri.host,
                uri.port,
                **kwargs,
                proxy_ssl=self.proxy_ssl,
                proxy_headers=self.proxy_headers,
                user_agent=self.user_agent,
                limits=self.limits,
            )
        else:
            if self.sock is not None:
                kwargs["sock"] = self.sock
            elif self.path is None:
                kwargs.update(host=uri.host, port=uri.port)
            _, conn = await transports.create_connection(self.fast, factory, self.path, **kwargs)
        assert isinstance(conn, ClientConnection)
        self.connection = conn
        return conn

    def _proxy_for(self, uri: WebSocketURI) -> Proxy | None:
        """The proxy to reach ``uri`` through, or ``None`` (see the ``proxy`` argument)."""
        if self.sock is not None or self.path is not None:
            return None
        return choose_proxy(self.proxy, uri.secure, uri.host, uri.port, os.environ)

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._connect().__await__()

    def __aiter__(self) -> AsyncIterator[ClientConnection]:
        return reconnecting(self)

    async def __aenter__(self) -> ClientConnection:
        return await self._connect()

    async def __aexit__(self, *exc_info: object) -> None:
        if self.connection is not None:
            await self.connection.close()


def follow_redirect(
    uri: WebSocketURI, headers: Headers, response: Response
) -> tuple[WebSocketURI, Headers]:
    """The URI and headers of the request that follows the redirect ``response``.

    Credentials (``Authorization``, ``Cookie``, ``Proxy-Authorization``) are dropped when the
    redirect leaves the origin.

    Raises:
        InvalidHandshake: the Location header is invalid.
        InvalidURI: it doesn't name a WebSocket URI.
        InvalidStatus: it leads from ``wss://`` to ``ws://``.
    """
    location = response.headers["Location"]
    base = f"{'wss' if uri.secure else 'ws'}://{_netloc(uri)}{uri.resource}"
    try:
        target = urllib.parse.urljoin(base.replace("ws", "http", 1), location)
    except ValueError as exc:
        raise InvalidHandshake(f"invalid redirect location {location!r}: {exc}") from exc
    scheme, rest = target.split(":", 1)
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    new = parse_uri(f"{scheme}:{rest}")
    if uri.secure and not new.secure:
        raise InvalidStatus(response.status, response.headers, response.body)
    if new.origin != uri.origin:
        headers = headers.copy()
        for name in _CREDENTIAL_HEADERS:
            if name in headers:
                del headers[name]
    if new.user is not None and new.password is not None:
        headers["Authorization"] = handshake.build_basic_auth(new.user, new.password)
    logger.debug("following redirect to %s", target)
    return new, headers


def _netloc(uri: WebSocketURI) -> str:
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"{host}:{uri.port}"
