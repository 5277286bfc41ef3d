"""The asyncio WebSocket server: :func:`serve`, :class:`Server`, :class:`ServerConnection`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

from ..exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
)
from ..protocol import handshake
from ..protocol.connection import Connection as Protocol
from ..protocol.connection import State
from ..protocol.deflate import PerMessageDeflate, ServerDeflate
from ..protocol.frames import CloseCode
from ..protocol.hosts import AllowedHosts, HostPattern, check_host
from ..protocol.http import Headers, HTTPLimits, Request, RequestParser, Response
from ..protocol.opening import ServerNegotiation, deflate_setting, hook_list
from . import transports
from .connection import DEFAULT_OPEN_TIMEOUT, Connection, ConnectionOptions
from .routes import Router, default_response

__all__ = ["ProcessRequest", "Server", "ServerConnection", "serve"]

logger = logging.getLogger("wsend.server")

Handler = Callable[["ServerConnection"], Awaitable[Any]]
#: A hook run before the upgrade: return a Response to refuse it, or None to go on.
ProcessRequest = Callable[
    ["ServerConnection", Request], Response | Awaitable[Response | None] | None
]
Origins = Sequence[str | re.Pattern[str] | None]

# Bytes a client may send after its request before the handshake completes.
_MAX_EARLY_DATA = 65536
# After an HTTP response, what the client still sends is read and discarded for up to this
# long and this many bytes before closing: closing with unread data makes the kernel send a
# reset, which can destroy the response before the client reads it (Apache lingers 2 s too).
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 4 << 20


class ServerConnection(Connection, ServerNegotiation):
    """A connection accepted by :func:`serve`, passed to the handler once open."""

    __slots__ = (
        "_deflate",
        "_early",
        "_lingered",
        "_open_timer",
        "_parser",
        "_protocol",
        "_task",
        "server",
    )

    is_client = False
    logger = logger
    server: Server

    def __init__(self, server: Server) -> None:
        super().__init__(server.options)
        self.server = server
        self._parser: RequestParser | None = RequestParser(server.limits)
        self._early = bytearray()
        self._open_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._protocol: Protocol | None = None
        self._deflate: PerMessageDeflate | None = None
        # Bytes discarded after an HTTP response (None: not answered that way).
        self._lingered: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        timeout = self.server.open_timeout
        if timeout is not None:
            self._open_timer = self.loop.call_later(timeout, self._open_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._open_timer is not None:
            self._open_timer.cancel()
        self.server.connections.discard(self)

    def _open_timed_out(self) -> None:
        if self.proto is None and self.transport is not None:
            self.logger.debug("opening handshake timed out")
            self.transport.abort()

    def handshake_data(self, data: bytes) -> None:
        if self._lingered is not None:
            self._lingered += len(data)
            if self._lingered > _LINGER_BYTES and self.transport is not None:
                self.transport.close()
            return
        parser = self._parser
        if parser is None:
            # The request is complete and being processed; keep what follows, bounded.
            self._early += data
            if len(self._early) > _MAX_EARLY_DATA and self.transport is not None:
                self.transport.abort()
            return
        try:
            request = parser.feed(data)
        except InvalidMessage as exc:
            self._respond(handshake.response_for_error(exc))
            return
        if request is not None:
            self._parser = None
            self._early += parser.leftover
            self._task = self.loop.create_task(self._handshake(request))

    def _respond(self, response: Response) -> None:
        """Answer with ``response`` and close the connection once the client has read it.

        Half-closes where the transport can, then discards what the client still sends until
        it closes, for at most ``_LINGER_SECONDS`` and ``_LINGER_BYTES``.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if "Connection" not in response.headers:
            response.headers["Connection"] = "close"
        transport.write(response.serialize())
        self._parser = None
        self._early = bytearray()
        self._lingered = 0
        if transport.can_write_eof():
            transport.write_eof()
        # The opening handshake is over: its timer slot now holds the end of the lingering.
        if self._open_timer is not None:
            self._open_timer.cancel()
        self._open_timer = self.loop.call_later(_LINGER_SECONDS, transport.close)

    async def _handshake(self, request: Request) -> None:
        self.request = request
        try:
            response = await self._process(request)
        except InvalidHandshake as exc:
            response = handshake.response_for_error(exc)
        except Exception:
            self.logger.exception("error while processing the opening handshake")
            response = handshake.build_reject(500)
        if response.status != 101:
            self.response = response
            self._respond(response)
            return
        self.response = response
        if self._switch(response):
            await self.server.run_handler(self)

    def _switch(self, response: Response) -> bool:
        """Send the 101 ``response`` and start framing; False if the client is gone already.

        The bytes the client sent after its request (kept meanwhile, bounded) are parsed now.
        """
        assert self.transport is not None
        if self.transport.is_closing():
            return False
        if self._open_timer is not None:
            self._open_timer.cancel()
        self.transport.write(response.serialize())
        leftover = bytes(self._early)
        self._early = bytearray()
        assert self._protocol is not None
        self.start(self._protocol, leftover)
        return True

    async def _process(self, request: Request) -> Response:
        """Decide the answer to ``request``: a 101 upgrade or a refusal or an HTTP response."""
        server = self.server
        upgrade = any("websocket" in value.lower() for value in request.headers.get_all("Upgrade"))
        if server.allowed_hosts is not None:
            assert self.transport is not None
            secure = self.transport.get_extra_info("ssl_object") is not None
            try:
                check_host(request, server.allowed_hosts, secure=secure)
            except InvalidHeader as exc:
                if upgrade:
                    raise
                return handshake.build_reject(exc.status)
        if not upgrade:
            return await default_response(request, server.router)
        key = handshake.check_request(request)
        if server.origins is not None:
            handshake.check_origin(request, server.origins)
        for hook in server.process_request:
            result = hook(self, request)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return result
        return self._accept_upgrade(request, key)


class Server:
    """A running WebSocket server; returned by :func:`serve`.

    Attributes:
        connections: the open connections (including those still in the opening handshake).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        options: ConnectionOptions,
        compression: str | ServerDeflate | None = "deflate",
        origins: Origins | None = None,
        allowed_hosts: Sequence[HostPattern] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: Callable[[ServerConnection, list[str]], str | None] | None = None,
        require_subprotocol: bool = False,
        process_request: ProcessRequest | Sequence[ProcessRequest] | None = None,
        router: Router | None = None,
        extra_headers: Headers | dict[str, str] | None = None,
        server_header: str | None = handshake.USER_AGENT,
        limits: HTTPLimits | None = None,
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
    ) -> None:
        self.handler = handler
        self.options = options
        self.deflate = deflate_setting(compression, ServerDeflate)
        self.origins = origins
        self.allowed_hosts = None if allowed_hosts is None else AllowedHosts(allowed_hosts)
        self.subprotocols = list(subprotocols or ())
        self.select_subprotocol = select_subprotocol
        self.require_subprotocol = require_subprotocol
        self.process_request: list[ProcessRequest] = hook_list(process_request)
        self.router = router if router is not None else Router()
        self.extra_headers = extra_headers
        self.server_header = server_header
        self.limits = limits or HTTPLimits()
        self.open_timeout = open_timeout
        self.connections: set[ServerConnection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closers: set[asyncio.Task[None]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._closing = False

    def route(self, path: str, methods: Sequence[str] = ("GET",), *, prefix: bool = False) -> Any:
        """Decorator adding an HTTP route to :attr:`router`."""
        return self.router.route(path, methods, prefix=prefix)

    def _factory(self) -> ServerConnection:
        return ServerConnection(self)

    async def run_handler(self, connection: ServerConnection) -> None:
        """Run the application handler for an open connection, then close it."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self.handler(connection)
        except ConnectionClosed:
            if connection.ready_state is State.OPEN:
                # Not this connection's closure: another one's, which the handler let escape.
                logger.exception("connection handler failed")
                await _close_quietly(connection, CloseCode.INTERNAL_ERROR, "internal error")
        except Exception:
            logger.exception("connection handler failed")
            await _close_quietly(connection, CloseCode.INTERNAL_ERROR, "internal error")
        except asyncio.CancelledError:
            connection.abort()
            raise
        else:
            await _close_quietly(connection, CloseCode.NORMAL_CLOSURE, "")
        finally:
            self._handlers.discard(task)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return () if self._server is None else tuple(self._server.sockets)

    @property
    def port(self) -> int:
        """The TCP port of the first listening socket (handy with ``port=0``)."""
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        raise RuntimeError("the server is not listening on TCP")

    async def start(self, *, fast_transport: bool | None = None, **create_server: Any) -> None:
        """Start listening; ``create_server`` goes to ``loop.create_server`` (or the Unix
        variant with ``path``), ``fast_transport`` as in :func:`serve`."""
        path = create_server.pop("path", None)
        self._server = await transports.create_server(
            transports.use_fast(fast_transport), self._factory, path, **create_server
        )

    def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Stop accepting connections and start closing every open one with ``code``."""
        if self._server is not None:
            self._server.close()
        self._closing = True
        for conn in list(self.connections):
            if conn.proto is None:
                conn.abort()
            elif conn.proto.state is State.OPEN:
                task = conn.loop.create_task(_close_quietly(conn, code, reason))
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)

    async def shutdown(
        self,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "server shutting down",
        timeout: float | None = 10.0,
    ) -> None:
        """Close every connection (1001 by default), wait for handlers up to ``timeout``.

        Handlers still running after ``timeout`` are cancelled and their connections dropped.
        """
        self.close(code, reason)
        await self.wait_closed(timeout)

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the server is closed, every handler has finished and every connection
        is closed.

        With ``timeout``, the whole wait is bounded: handlers still running then are
        cancelled, and connections still open (a peer that never answers the close frame,
        say) are dropped.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        handlers = set(self._handlers)
        if handlers:
            _done, pending = await asyncio.wait(handlers, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                # A handler that ignores cancellation must not block the shutdown forever.
                await asyncio.wait(pending, timeout=1.0)
        if self._server is None:
            return
        # Some servers (aiofastnet's, asyncio's from Python 3.12) wait for every connection.
        closed = asyncio.ensure_future(self._server.wait_closed())
        left = None if deadline is None else max(0.0, deadline - loop.time())
        await asyncio.wait({closed}, timeout=left)
        if not closed.done():
            for conn in list(self.connections):
                conn.abort()
            await asyncio.wait({closed}, timeout=1.0)
            if not closed.done():
                closed.cancel()

    async def serve_forever(self) -> None:
        """Run until cancelled."""
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()


def pop_options(kwargs: dict[str, Any]) -> ConnectionOptions:
    """Take the :class:`ConnectionOptions` arguments out of a ``serve()`` call's ``kwargs``.

    Raises:
        ValueError: an option's value is invalid.
    """
    names = ConnectionOptions.__slots__
    return ConnectionOptions(**{name: kwargs.pop(name) for name in list(kwargs) if name in names})


def server_tls(
    ssl: ssl_module.SSLContext | None, certfile: str | None, keyfile: str | None
) -> ssl_module.SSLContext | None:
    """The TLS context of a ``serve()`` call: ``ssl``, or a server context loading
    ``certfile`` and ``keyfile``.

    Raises:
        ValueError: both ``ssl`` and ``certfile`` are given.
        OSError: the files can't be read (:class:`ssl.SSLError` if they don't hold a
            certificate and its key).
    """
    if certfile is None:
        return ssl
    if ssl is not None:
        raise ValueError("pass either ssl or certfile, not both")
    context = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


async def _close_quietly(conn: Connection, code: int, reason: str) -> None:
    try:
        await conn.close(code, reason)
    except Exception:  # pragma: no cover - the transport died under us
        conn.abort()


class serve:
    """Start a WebSocket server; ``await`` it or use it with ``async with``.

    Args:
        handler: ``async def handler(ws)`` run for each connection once open; the connection
            closes with 1000 when it returns and with 1011 if it raises.
        host, port: where to listen (``port=0`` picks a free port: read ``server.port``).
        path: a Unix socket path, instead of host and port.
        sock: an already listening socket.
        ssl: an ``ssl.SSLContext`` for ``wss://``, or use ``certfile`` and ``keyfile``.
        compression: ``"deflate"`` (default) to accept permessage-deflate, ``None`` to refuse
            it, or a :class:`~wsend.protocol.deflate.ServerDeflate` with custom settings.
        origins: allowed Origin values (``str``, ``re.Pattern`` or ``None`` for no Origin);
            others get 403. ``None`` (the default) accepts any origin.
        allowed_hosts: the Host values this server answers to (``"example.com"``,
            ``"example.com:8443"``, ``"*.example.com"``, ``"[::1]:8765"``, ``re.Pattern``;
            see :class:`~wsend.protocol.hosts.AllowedHosts`), for WebSocket handshakes and
            HTTP routes alike: a missing, repeated or malformed Host gets 400, one not listed
            421 Misdirected Request. ``None`` (the default) checks nothing: behind a reverse
            proxy, or reached by many names or addresses, any list would be wrong until
            configured; set it for a server that browsers can reach on localhost or a
            private network (DNS rebinding) and in production with the names you serve.
        subprotocols: supported subprotocols, in order of preference.
        select_subprotocol: ``f(ws, offered) -> str | None`` to choose instead.
        require_subprotocol: refuse clients that offer none of ``subprotocols`` (400).
        process_request: hooks ``f(ws, request)`` (sync or async) run in order before the
            upgrade; returning a :class:`Response` refuses it with that response.
        router: a :class:`~wsend.asyncio.routes.Router` for plain HTTP requests.
        max_message_size, max_frame_size, max_queue, write_limit, ping_interval,
            ping_timeout, close_timeout: see :class:`ConnectionOptions`.
        open_timeout: seconds allowed for the TLS and opening handshakes.
        limits: :class:`~wsend.protocol.http.HTTPLimits` for requests.
        extra_headers: headers added to every 101 response.
        server_header: the ``Server`` header of responses (``None`` to omit it).
        reuse_port, backlog: passed to ``loop.create_server``.
        fast_transport: run on aiofastnet's C transports: ``None`` (default) when installed,
            ``True`` to require them, ``False`` for asyncio's (see :mod:`wsend.asyncio.transports`).
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        path: str | None = None,
        sock: socket.socket | None = None,
        ssl: ssl_module.SSLContext | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        reuse_port: bool | None = None,
        backlog: int = 1024,
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        fast_transport: bool | None = None,
        **kwargs: Any,
    ) -> None:
        options = pop_options(kwargs)
        ssl = server_tls(ssl, certfile, keyfile)
        self.server = Server(handler, options=options, open_timeout=open_timeout, **kwargs)
        self._kwargs: dict[str, Any] = {
            "ssl": ssl,
            "backlog": backlog,
            "fast_transport": transports.use_fast(fast_transport),
        }
        if ssl is not None:
            self._kwargs["ssl_handshake_timeout"] = open_timeout
        if path is not None:
            self._kwargs["path"] = path
        elif sock is not None:
            self._kwargs["sock"] = sock
        else:
            self._kwargs.update(host=host, port=port, reuse_port=reuse_port)
        if sock is not None and path is not None:
            raise ValueError("pass either path or sock, not both")

    async def _start(self) -> Server:
        await self.server.start(**self._kwargs)
        return self.server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.server.shutdown()
