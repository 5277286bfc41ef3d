"""wsend as uvicorn's WebSocket layer: ``uvicorn.run(app, ws=WSendProtocol)``.

Any ASGI application's WebSocket endpoints (Starlette, FastAPI...) then run on wsend's
protocol core and connection machinery: its parser, permessage-deflate, limits, keepalive,
backpressure and write batching. On the command line::

    uvicorn app:app --ws wsend.asgi.uvicorn:WSendProtocol

How it plugs in: uvicorn's HTTP protocol parses the upgrade request, creates this class with
``(config, server_state, app_state)``, calls :meth:`connection_made` with its transport, makes
it the transport's protocol and hands it the request's bytes with :meth:`data_received`. From
there wsend checks the handshake, runs the application with the ``websocket`` scope, and
answers as the application asks: 101 on ``websocket.accept``, 403 on ``websocket.close``, or
the application's own response (``websocket.http.response.*``).

uvicorn's settings map to wsend's (see ``docs/howto/asgi.md``): ``ws_max_size`` is the message
size limit (a larger message closes with 1009), ``ws_max_queue`` the receive queue (reading
pauses when that many messages wait), ``ws_ping_interval`` and ``ws_ping_timeout`` the
keepalive (an unanswered ping closes with 1011), ``ws_per_message_deflate`` permessage-deflate.
On shutdown, open connections close with 1012 (service restart), as uvicorn's own layers do.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from ..asyncio.connection import ConnectionOptions
from ..asyncio.server import Server, ServerConnection
from ..exceptions import ClientDisconnected, ConnectionClosed, InvalidHandshake, UsageError
from ..protocol import handshake
from ..protocol.connection import State
from ..protocol.frames import CloseCode
from ..protocol.http import Request, Response
from .adapter import Denial, Message, accept_options, build_scope, disconnect_event, receive_event

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

__all__ = ["WSendProtocol"]

# uvicorn's logger, so that wsend's lines sit with uvicorn's own (accepted, 403, errors).
logger = logging.getLogger("uvicorn.error")

# One wsend Server (the settings connections share) per uvicorn configuration.
_servers: weakref.WeakKeyDictionary[Any, Server] = weakref.WeakKeyDictionary()

_WS_MESSAGES = ("websocket.send", "websocket.close")


async def _no_handler(connection: ServerConnection) -> None:
    """The Server's handler: unused, the ASGI application runs instead."""


def _server_for(config: Config) -> Server:
    """The wsend Server holding the connection settings of ``config`` (made once)."""
    server = _servers.get(config)
    if server is None:
        interval = config.ws_ping_interval
        options = ConnectionOptions(
            max_message_size=config.ws_max_size,
            max_queue=max(1, config.ws_max_queue),
            ping_interval=interval if interval else None,
            ping_timeout=config.ws_ping_timeout,
        )
        server = _servers[config] = Server(
            _no_handler,
            options=options,
            compression="deflate" if config.ws_per_message_deflate else None,
            server_header=None,  # uvicorn's default headers carry its Server header
            # uvicorn read the whole request already; the application may take its time.
            open_timeout=None,
        )
    return server


def _address(transport: asyncio.BaseTransport, name: str) -> tuple[str, int] | None:
    """``(host, port)`` of a TCP socket's ``peername`` or ``sockname``; ``None`` otherwise."""
    info = transport.get_extra_info(name)
    if isinstance(info, list | tuple) and len(info) >= 2 and isinstance(info[1], int):
        return (str(info[0]), info[1])
    return None


class WSendProtocol(ServerConnection):
    """uvicorn's WebSocket protocol class, running ASGI applications on wsend.

    Args:
        config: uvicorn's ``Config`` (loaded here if it isn't yet).
        server_state: uvicorn's shared state: this connection joins ``connections`` (so
            that shutdown reaches it) and its application task ``tasks``.
        app_state: the lifespan state; each scope gets a shallow copy.
        _loop: ignored (uvicorn's signature): the running loop is used.

    The ASGI ``receive`` and ``send`` callables are :meth:`asgi_receive` and
    :meth:`asgi_send`.
    """

    __slots__ = (
        "_app_closed",
        "_connect_sent",
        "_denial",
        "_key",
        "_responded",
        "app",
        "app_state",
        "config",
        "scope",
        "server_state",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        super().__init__(_server_for(config))
        self.config = config
        self.app: Any = config.loaded_app
        self.server_state = server_state
        self.app_state = app_state
        #: The ASGI scope, once the request is read and checked.
        self.scope: dict[str, Any] | None = None
        self._key = ""
        self._connect_sent = False
        self._responded = False  # the handshake was answered: 101 or an HTTP response
        self._denial: Denial | None = None  # an HTTP response the application is sending
        self._app_closed = False  # the application sent websocket.close after accepting

    # -- uvicorn's protocol interface --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server_state.connections.add(self)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server_state.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        """Bytes handed over by uvicorn's HTTP protocol: the upgrade request, re-serialized.

        Later reads come through :meth:`get_buffer` and :meth:`buffer_updated` (this is an
        ``asyncio.BufferedProtocol``); this path is kept for transports that call it anyway.
        """
        proto = self.proto
        if proto is None:
            self.handshake_data(bytes(data))
            return
        proto.receive_data(data)
        self._after_receive(proto)

    def handshake_data(self, data: bytes) -> None:
        super().handshake_data(data)
        task = self._task
        if task is not None and task not in self.server_state.tasks:
            # uvicorn waits for these on shutdown, and cancels them past its grace period.
            self.server_state.tasks.add(task)
            task.add_done_callback(self.server_state.tasks.discard)

    def shutdown(self) -> None:
        """uvicorn is shutting down: close with 1012 (service restart), as uvicorn's layers do.

        A request not answered yet gets a 500; a connection already closing is dropped.
        """
        proto = self.proto
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if proto is not None and proto.state is State.OPEN:
            proto.send_close(CloseCode.SERVICE_RESTART)
            self._flush(proto)
        elif proto is None and not self._responded:
            self._responded = True
            self._respond(handshake.build_reject(500))
        else:
            transport.close()

    # -- the application ---------------------------------------------------------------------

    async def _handshake(self, request: Request) -> None:
        """Check the upgrade request, then run the application (which answers it)."""
        self.request = request
        assert self.transport is not None
        try:
            self._key = handshake.check_request(request)
            self.scope = build_scope(
                request,
                scheme="wss" if self.transport.get_extra_info("sslcontext") else "ws",
                client=_address(self.transport, "peername"),
                server=_address(self.transport, "sockname"),
                root_path=self.config.root_path,
                asgi_version=self.config.asgi_version,
                state=self.app_state,
            )
        except InvalidHandshake as exc:
            self._responded = True
            self._respond(handshake.response_for_error(exc))
            return
        await self._run_app(self.scope)

    async def _run_app(self, scope: dict[str, Any]) -> None:
        """Run the application; then close what it left open (1000, or 1011 if it failed).

        An application that fails or returns before answering the handshake gets a 500.
        """
        try:
            result = await self.app(scope, self.asgi_receive, self.asgi_send)
        except ClientDisconnected:
            pass
        except Exception:
            logger.exception("Exception in ASGI application\n")
            self._finish(CloseCode.INTERNAL_ERROR)
            return
        except asyncio.CancelledError:
            self.abort()
            raise
        else:
            if not self._responded:
                logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
        self._finish(CloseCode.NORMAL_CLOSURE)

    def _finish(self, code: int) -> None:
        """The application ended: answer the handshake with 500 if it didn't, or close."""
        proto = self.proto
        if not self._responded:
            self._responded = True
            self._respond(handshake.build_reject(500))
        elif proto is None:
            if self._denial is not None and self.transport is not None:
                self.transport.close()  # a response left unfinished can't be completed
        elif proto.state is State.OPEN and not self._connection_lost:
            proto.send_close(code)
            self._flush(proto)

    async def asgi_receive(self) -> Message:
        """ASGI ``receive``: ``websocket.connect`` first, then messages, then disconnect.

        Once the connection is closed (or the application closed it, or refused it), every
        call returns the ``websocket.disconnect`` event at once.
        """
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self.proto is None:
            if not self._responded:
                await self.wait_closed()  # nothing can arrive before the handshake's answer
            return self._disconnect()
        if self._app_closed:
            return self._disconnect()
        try:
            return receive_event(await self.recv())
        except ConnectionClosed:
            return self._disconnect()

    def _disconnect(self) -> Message:
        proto = self.proto
        if proto is None:
            return disconnect_event(None, None, None)
        return disconnect_event(proto.close_rcvd, proto.close_sent, proto.close_rcvd_then_sent)

    async def asgi_send(self, message: Message) -> None:
        """ASGI ``send``: waits while the transport's buffer is full (backpressure).

        Raises:
            ClientDisconnected: the connection is closed (an ``OSError``, as ASGI asks).
            UsageError: the message is unexpected now, or malformed.
            ValueError: ``websocket.close`` has a code that can't be sent or a reason over
                123 bytes.
        """
        kind = message["type"]
        if kind == "websocket.send" and self.proto is not None and not self._app_closed:
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if type(data) is not str:
                    raise UsageError("websocket.send needs bytes in 'bytes' or str in 'text'")
            elif not isinstance(data, bytes | bytearray | memoryview):
                raise UsageError("websocket.send needs bytes in 'bytes' or str in 'text'")
            try:
                await self.send(data)
            except ConnectionClosed as exc:
                raise ClientDisconnected(exc.rcvd, exc.sent, exc.rcvd_then_sent) from exc
        elif not self._responded:
            self._answer(message, kind)
        elif self._denial is not None:
            self._denial_body(message, kind)
        elif kind == "websocket.close" and self.proto is not None:
            self._close(message)
        else:
            state = "after websocket.close" if self._app_closed else "now"
            raise UsageError(f"unexpected ASGI message {kind!r} {state}")

    def _answer(self, message: Message, kind: str) -> None:
        """The application's answer to the handshake: accept, refuse (403) or respond."""
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._responded = True
            self._log("403")
            self._respond(handshake.build_reject(403))
        elif kind == "websocket.http.response.start":
            self._denial = Denial(message, self.server_state.default_headers)
            self._responded = True
        else:
            raise UsageError(
                "expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', not {kind!r}"
            )

    def _accept(self, message: Message) -> None:
        """Send the 101 response and start framing (permessage-deflate if negotiated)."""
        transport = self.transport
        request = self.request
        if transport is None or transport.is_closing() or request is None:
            raise ClientDisconnected(None, None)
        subprotocol, headers = accept_options(message, self.server_state.default_headers)
        self.protocol = subprotocol
        extensions = self._negotiate_extensions(request)
        self._protocol = self._new_protocol()
        try:
            response = handshake.build_accept(
                request,
                self._key,
                subprotocol=subprotocol,
                extensions=extensions,
                extra_headers=headers,
                server=None,
            )
        except ValueError as exc:
            raise UsageError(f"cannot accept: {exc}") from exc
        self.response = response
        self._responded = True
        if not self._switch(response):
            raise ClientDisconnected(None, None)
        self._log("[accepted]")

    def _denial_body(self, message: Message, kind: str) -> None:
        if kind != "websocket.http.response.body":
            raise UsageError(f"expected ASGI message 'websocket.http.response.body', not {kind!r}")
        denial = self._denial
        assert denial is not None
        response = denial.body(message)
        if response is not None:
            self._denial = None
            self._log(str(response.status))
            self._respond(response)

    def _close(self, message: Message) -> None:
        """``websocket.close`` after accepting: start the closing handshake, don't wait."""
        if self._app_closed:
            return
        proto = self.proto
        assert proto is not None
        code = message.get("code", CloseCode.NORMAL_CLOSURE)
        reason = message.get("reason") or ""
        if proto.state is State.OPEN and not self._connection_lost:
            proto.send_close(code, reason)
            self._flush(proto)
        self._app_closed = True

    def _default_headers(self) -> list[tuple[str, str]]:
        return [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self.server_state.default_headers
        ]

    def _respond(self, response: Response) -> None:
        """Send an HTTP response with uvicorn's default headers (Server, Date) where missing."""
        for name, value in self._default_headers():
            if name not in response.headers:
                response.headers.add(name, value)
        super()._respond(response)

    def _log(self, outcome: str) -> None:
        """Log the handshake's outcome as uvicorn does: client, path and result."""
        if logger.isEnabledFor(logging.INFO):
            scope = self.scope or {}
            client = scope.get("client")
            where = "%s:%d" % tuple(client) if client else ""  # noqa: UP031
            query = scope.get("query_string", b"")
            path = scope.get("path", "") + ("?" + query.decode("latin-1") if query else "")
            logger.info('%s - "WebSocket %s" %s', where, path, outcome)
