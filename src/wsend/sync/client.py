"""The threading WebSocket client: :class:`connect` and :class:`ClientConnection`."""

from __future__ import annotations

import logging
import os
import socket
import ssl as ssl_module
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..asyncio.client import (
    DEFAULT_MAX_REDIRECTS,
    HeadersLike,
    WebSocketURI,
    follow_redirect,
    parse_uri,
)
from ..asyncio.connection import DEFAULT_OPEN_TIMEOUT, ConnectionOptions
from ..exceptions import InvalidMessage, InvalidStatus, OpenTimeout, TooManyRedirects, UsageError
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
from ..reconnect import Backoff, ProcessException, Reconnector, display_uri, process_exception
from .connection import Connection
from .transport import TLS, Deadline, TLSStream, TunnelTLS, open_socket, set_nodelay

__all__ = ["ClientConnection", "connect"]

logger = logging.getLogger("wsend.client")


class ClientConnection(Connection):
    """A connection opened by :class:`connect`."""

    is_client = True
    logger = logger

    def _handshake(
        self, opening: ClientHandshake, deadline: Deadline, limits: HTTPLimits
    ) -> Response | None:
        """Run the opening handshake; return a redirect response to follow, or ``None`` once
        the connection is open."""
        self.request = opening.request
        deadline.apply(self._sock)
        self._send_raw(self.request.serialize())
        response, leftover = self._read_response(limits, deadline)
        self.response = response
        if opening.redirects(response):
            return response
        self.protocol, self.extensions, proto = opening.accept(response, self.options)
        self._start(proto, leftover)
        return None

    def _read_response(self, limits: HTTPLimits, deadline: Deadline) -> tuple[Response, bytes]:
        parser = ResponseParser(limits)
        while True:
            deadline.apply(self._sock)
            data = self._recv_raw()
            if not data:
                try:
                    response = parser.feed_eof()
                except InvalidMessage as exc:
                    raise exc from EOFError("the server closed the connection")
                if response is None:
                    raise InvalidMessage(
                        "connection closed during the opening handshake"
                    ) from EOFError("the server closed the connection")
                return response, b""
            response = parser.feed(data)
            if response is not None:
                return response, parser.leftover


class connect:
    """Open a WebSocket connection for threads: use it with ``with``, call :meth:`open`, or
    iterate it with ``for`` to reconnect automatically.

    .. code-block:: python

        with wsend.sync.connect("ws://localhost:8765") as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))

        for ws in wsend.sync.connect("ws://localhost:8765"):  # reconnects with backoff
            try:
                for message in ws:
                    print(message)
            except wsend.ConnectionClosed:
                continue

    Args:
        uri: ``ws://`` or ``wss://`` URI; ``user:password@`` in it sends Basic auth.
        ssl: for ``wss://``, an ``ssl.SSLContext``; ``None`` or ``True`` use the default
            context, which verifies certificates.
        origin: the Origin header to send.
        subprotocols: subprotocols to offer, in order of preference.
        headers: extra request headers (``Authorization``, ``Cookie``...).
        compression: ``"deflate"`` (default) to offer permessage-deflate, ``None`` not to, or a
            :class:`~wsend.protocol.deflate.ClientDeflate` with custom settings.
        open_timeout: seconds allowed to connect and complete the TLS and opening handshakes.
        max_redirects: redirects followed (credentials are dropped across origins).
        path: connect to this Unix socket instead of the URI's host (the URI still names
            the Host header and resource).
        sock: an already connected socket to use (a plain one: TLS goes on top of it).
        server_hostname: the TLS server name, if not the URI's host.
        max_message_size, max_frame_size, max_queue, write_limit, ping_interval,
            ping_timeout, close_timeout: see :class:`~wsend.asyncio.ConnectionOptions`
            (``write_limit``: bytes queued for writing before ``send()`` waits).
        user_agent: the User-Agent header (``None`` to omit it).
        limits: :class:`~wsend.protocol.http.HTTPLimits` for the response.
        proxy: as for :func:`wsend.connect`: ``True`` (default) to use the proxy the environment
            names for the URI, ``None`` or ``False`` to connect directly, or the URL of an
            ``http://``, ``https://`` or SOCKS proxy.
        proxy_ssl: the TLS context for an ``https://`` proxy (default: verify its certificate
            with the system's CAs).
        proxy_headers: more headers for an HTTP proxy's CONNECT request.
        backoff: with ``for``, the delays between attempts (:class:`~wsend.Backoff`).
        process_exception: with ``for``, ``f(exc)`` returning ``None`` to retry after a failed
            attempt or the exception to raise (:func:`wsend.reconnect.process_exception`).

    Raises:
        InvalidURI: the URI is invalid.
        InvalidProxy: the proxy URL is invalid.
        ValueError: ``ssl`` doesn't fit the URI, or ``sock`` is already a TLS socket.
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
        proxy: str | Proxy | bool | None = True,
        proxy_ssl: ssl_module.SSLContext | None = None,
        proxy_headers: HeadersLike | None = None,
        backoff: Backoff | None = None,
        process_exception: ProcessException = process_exception,
        **kwargs: Any,
    ) -> None:
        self.uri = parse_uri(uri)
        self.proxy = parse_proxy(proxy) if isinstance(proxy, str) else proxy
        self.proxy_ssl = proxy_ssl
        self.proxy_headers = Headers(proxy_headers) if proxy_headers is not None else None
        self.options = ConnectionOptions(**kwargs)
        self.deflate = deflate_setting(compression, ClientDeflate)
        check_tls_setting(ssl, self.uri.secure)
        if isinstance(sock, ssl_module.SSLSocket):
            raise ValueError("pass a plain socket: for wss:// URIs, TLS runs on top of it")
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
        self.backoff = backoff or Backoff()
        self.process_exception = process_exception
        self.connection: ClientConnection | None = None

    def open(self) -> ClientConnection:
        """Open the connection (following redirects) and return it; the caller closes it.

        Raises:
            OSError: the connection failed (ssl.SSLError for TLS).
            InvalidHandshake: the server refused or botched the opening handshake
                (:class:`~wsend.exceptions.InvalidStatus` carries its response).
            OpenTimeout: it took longer than ``open_timeout``.
        """
        deadline = Deadline(self.open_timeout)
        uri = self.uri
        headers = with_credentials(uri, self.headers)
        for attempt in range(self.max_redirects + 1):
            conn = self._connect_socket(uri, deadline, first=attempt == 0)
            try:
                opening = ClientHandshake(uri, headers, self)
                redirect = conn._handshake(opening, deadline, self.limits)
            except TimeoutError as exc:
                conn._sock.close()
                if isinstance(exc, OpenTimeout):
                    raise
                raise OpenTimeout("timed out during the opening handshake") from exc
            except BaseException:
                conn._sock.close()
                raise
            if redirect is None:
                self.connection = conn
                return conn
            conn._sock.close()
            if self.sock is not None:
                raise InvalidStatus(redirect.status, redirect.headers, redirect.body)
            uri, headers = follow_redirect(uri, headers, redirect)
        raise TooManyRedirects(f"more than {self.max_redirects} redirects")

    def _connect_socket(
        self, uri: WebSocketURI, deadline: Deadline, first: bool
    ) -> ClientConnection:
        """Open the socket (and TLS) for ``uri``."""
        proxy_tls = None
        if self.sock is not None and first:
            sock = self.sock
        else:
            sock, proxy_tls = open_socket(
                uri,
                deadline=deadline,
                path=self.path,
                proxy=self._proxy_for(uri),
                proxy_ssl=self.proxy_ssl,
                proxy_headers=self.proxy_headers,
                user_agent=self.user_agent,
                limits=self.limits,
            )
        tls: TLS | TunnelTLS | None = proxy_tls
        try:
            deadline.apply(sock)
            set_nodelay(sock)
            if uri.secure:
                context = self.ssl if isinstance(self.ssl, ssl_module.SSLContext) else None
                if context is None:
                    context = ssl_module.create_default_context()
                server_tls = TLS(
                    context, server_side=False, server_hostname=self.server_hostname or uri.host
                )
                if proxy_tls is None:
                    server_tls.handshake(sock)
                    tls = server_tls
                else:  # TLS inside the proxy's TLS
                    server_tls.handshake(TLSStream(sock, proxy_tls))
                    tls = TunnelTLS(proxy_tls, server_tls)
        except TimeoutError as exc:
            sock.close()
            if isinstance(exc, OpenTimeout):
                raise
            raise OpenTimeout("timed out during the TLS handshake") from exc
        except BaseException:
            sock.close()
            raise
        return ClientConnection(sock, self.options, tls)

    def _proxy_for(self, uri: WebSocketURI) -> Proxy | None:
        """The proxy to reach ``uri`` through, or ``None`` (see the ``proxy`` argument)."""
        if self.path is not None:
            return None
        return choose_proxy(self.proxy, uri.secure, uri.host, uri.port, os.environ)

    def __enter__(self) -> ClientConnection:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        if self.connection is not None:
            self.connection.close()

    def __iter__(self) -> Iterator[ClientConnection]:
        """Open connections one after the other, forever, reconnecting with backoff.

        Each connection is closed when the loop body moves on to the next (or leaves the
        loop). Failed attempts are retried after a delay, or raised, as ``process_exception``
        decides (see :mod:`wsend.reconnect`).

        Raises:
            UsageError: a connected socket was passed as ``sock=`` (it can't be opened again).
            Exception: the first fatal error of an attempt.
        """
        if self.sock is not None:
            raise UsageError("can't reconnect with a socket passed as sock=: pass the URI only")
        policy = Reconnector(display_uri(self.uri), self.backoff, self.process_exception, logger)
        while True:
            try:
                conn = self.open()
            except Exception as exc:
                time.sleep(policy.failed(exc))
                continue
            policy.opened()
            try:
                yield conn
            finally:
                conn.close()
            time.sleep(policy.closed())
