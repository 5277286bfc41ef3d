"""wsend as uvicorn's WebSocket layer: ``uvicorn.run(app, ws=WSendProtocol)``.

Any ASGI application's WebSocket endpoints (Starlette, FastAPI...) then run on wsend's
protocol core and connection machinery: its parser, permessage-deflate, limits, keepalive,
backpressure and write batching. On the command line, ``python -m wsend.asgi app:app`` (see
:mod:`wsend.asgi.__main__`), or with uvicorn 0.35 or later
``uvicorn app:app --ws wsend.asgi:WSendProtocol``.

How it plugs in: uvicorn's HTTP protocol parses the upgrade request, creates this class with
``(config, server_state, app_state)``, calls :meth:`connection_made` with its transport, makes
it the transport's protocol and hands it the request's bytes with :meth:`data_received`. From
there wsend checks the handshake (400 or 426 for a bad one, before the application runs),
runs the application with the ``websocket`` scope, and answers as the application asks: 101 on
``websocket.accept``, 403 on ``websocket.close``, or the application's own response
(``websocket.http.response.*``); 500 if the application fails or returns first.

uvicorn's settings map to wsend's (see ``docs/howto/asgi-server.md``): ``ws_max_size`` is the
message size limit (a larger message closes with 1009), ``ws_max_queue`` the receive queue
(reading pauses when that many messages wait), ``ws_ping_interval`` and ``ws_ping_timeout``
the keepalive (an unanswered ping closes with 1011), ``ws_per_message_deflate``
permessage-deflate. ``send`` waits while the socket's buffer is above 64 KiB (backpressure).
On shutdown, open connections close with 1012 (service restart), as uvicorn's own layers do.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.utils import (
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

from ..asyncio.connection import ConnectionOptions
from ..asyncio.server import Server, ServerConnection
from ..exceptions import ClientDisconnected, ConnectionClosed, InvalidHandshake, UsageError
from ..protocol import handshake
from ..protocol.connection import State
from ..protocol.frames import CloseCode
from ..protocol.http import Request, Response
from .adapter import (
    Denial,
    Message,
    Scope,
    accept_options,
    build_scope,
    close_options,
    disconnect_event,
    message_data,
)

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

__all__ = ["WSendProtocol"]

# uvicorn's logger, so that the layer's lines sit with uvicorn's own (accepted, 403, errors).
logger = logging.getLogger("uvicorn.error")

# One wsend Server (the settings its connections share) per uvicorn configuration.
_servers: weakref.WeakKeyDictionary[Any, Server] = weakref.WeakKeyDictionary()

# Where a connection stands, from the application's point of view.
_CONNECTING = 0  # the application hasn't answered the handshake yet
_ACCEPTED = 1  # websocket.accept: messages flow
_APP_CLOSED = 2  # websocket.close after accepting: the closing handshake is under way
_DENYING = 3  # websocket.http.response.start: its body is on its way
_REFUSED = 4  # an HTTP response answered the handshake (403, the denial, or a 500)


async def _no_handler(connection: ServerConnection) -> None:  # pragma: no cover - never run
    """The Server's handler: unused, the ASGI application runs instead."""


def _discard(message: str | bytes) -> None:
    """Where messages go once the application can't receive them any more."""


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


class WSendProtocol(ServerConnection):
    """uvicorn's WebSocket protocol class, running ASGI applications on wsend.

    Args:
        config: uvicorn's ``Config`` (loaded here if it isn't yet).
        server_state: uvicorn's shared state: this connection joins ``connections`` (so
            that shutdown reaches it) and its application task ``tasks``.
        app_state: the lifespan state; each scope gets a shallow copy.
        _loop: ignored (uvicorn's signature): the running loop is used.

    The ASGI ``receive`` and ``send`` callables are :meth:`asgi_receive` and
    :meth:`asgi_send`. The object is also a wsend connection (``latency``, ``ping()``...).
    """

    __slots__ = (
        "_connect_sent",
        "_denial",
        "_extensions_header",
        "_key",
        "_phase",
        "_server_refused",
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
        self.scope: Scope | None = None
        self._key = ""
        self._extensions_header: str | None = None
        self._connect_sent = False
        self._phase = _CONNECTING
        self._server_refused = False  # the server answered the handshake itself (error, shutdown)
        self._denial: Denial | None = None

    # -- uvicorn's protocol interface --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server_state.connections.add(self)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server_state.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        """The upgrade request, handed over (re-serialized) by uvicorn's HTTP protocol.

        Later reads come through :meth:`get_buffer` and :meth:`buffer_updated`: this is an
        ``asyncio.BufferedProtocol``, and asyncio's and uvloop's transports (TLS included)
        read into buffered protocols once they become the transport's protocol.
        """
        self.handshake_data(bytes(data))

    def shutdown(self) -> None:
        """uvicorn is shutting down: close with 1012 (service restart), as its layers do.

        A handshake the application hasn't answered yet gets a 500; an application response
        still being sent is cut short. A closing handshake under way goes on.
        """
        proto = self.proto
        if proto is not None:
            if proto.state is State.OPEN and not self._connection_lost:
                proto.send_close(CloseCode.SERVICE_RESTART)
                self._flush(proto)
        elif self._phase == _CONNECTING:
            self._refuse(500, by_server=True)
        elif self._phase == _DENYING and self.transport is not None:
            self.transport.close()

    # -- the application ---------------------------------------------------------------------

    async def _handshake(self, request: Request) -> None:
        """Check the upgrade request, then run the application (which answers it)."""
        # uvicorn waits for its tasks on shutdown, and cancels them past its grace period.
        task = asyncio.current_task()
        assert task is not None
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)
        if self._phase != _CONNECTING:  # pragma: no cover - shutdown came before this step
            return
        self.request = request
        transport = self.transport
        assert transport is not None
        try:
            self._key = handshake.check_request(request)
            self.scope = build_scope(
                request,
                scheme="wss" if is_ssl(transport) else "ws",
                client=get_remote_addr(transport),
                server=get_local_addr(transport),
                root_path=self.config.root_path,
                asgi_version=self.config.asgi_version,
                state=self.app_state,
            )
            self._extensions_header = self._negotiate_extensions(request)
        except InvalidHandshake as exc:
            self._phase = _REFUSED
            self._server_refused = True
            self._respond(handshake.response_for_error(exc))
            return
        await self._run_app(self.scope)

    async def _run_app(self, scope: Scope) -> None:
        """Run the application, then end what it left open.

        Before an answer to the handshake, or with an application response unfinished
        because the application failed: 500. After accepting: a close frame, 1000 when the
        application returned (None), 1011 when it failed or returned something else. The
        exception raised when it sent on a lost connection (:class:`ClientDisconnected`) is
        not an error.
        """
        failed = True
        try:
            result = await self.app(scope, self.asgi_receive, self.asgi_send)
        except ClientDisconnected:
            failed = False
        except Exception:
            logger.exception("Exception in ASGI application\n")
        except asyncio.CancelledError:
            # uvicorn cancels applications still running past its graceful shutdown timeout.
            self.abort()
            raise
        else:
            if self._phase == _CONNECTING:
                logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
            else:
                failed = False
        self._finish(failed)

    def _finish(self, failed: bool) -> None:
        """The application ended (``failed``: with an error): end what it left open."""
        phase = self._phase
        if phase == _CONNECTING or (phase == _DENYING and failed):
            self._refuse(500, by_server=True)
        elif phase == _DENYING:
            # Returned before the last body part: what it sent is the response.
            self._send_denial(self._denial.response() if self._denial else None)
        elif phase in (_ACCEPTED, _APP_CLOSED):
            proto = self.proto
            if proto is not None and proto.state is State.OPEN and not self._connection_lost:
                proto.send_close(CloseCode.INTERNAL_ERROR if failed else CloseCode.NORMAL_CLOSURE)
                self._flush(proto)
            self._discard_input()

    # -- ASGI receive ------------------------------------------------------------------------

    async def asgi_receive(self) -> Message:
        """ASGI ``receive``: ``websocket.connect`` first, then messages, then disconnect.

        A second call before the handshake is answered waits until the client goes away.
        Once the connection is closed, or closing because the application closed it or
        refused it, every call returns the ``websocket.disconnect`` event at once, with the
        code and reason of whoever started the closing handshake (1006 when there was none).
        A call already waiting when the application closes returns the disconnect event when
        the peer's close frame arrives (or a message that reached it just before).
        """
        if self._phase == _ACCEPTED and self._connect_sent:
            queue = self._queue
            if queue and not self._reading and not self._paused_reading:
                # recv()'s fast path without its coroutine: a whole message waits (and no
                # deferred failure waits for the queue to drain).
                event = queue[0]
                kind = type(event)
                if (kind is bytes or kind is str) and (
                    len(queue) > 1 or self.proto is None or self.proto.pending_failure is None
                ):
                    queue.popleft()
                    if kind is str:
                        return {"type": "websocket.receive", "text": event}
                    return {"type": "websocket.receive", "bytes": event}
            try:
                message = await self.recv()
            except ConnectionClosed:
                return self._disconnect()
            if type(message) is str:
                return {"type": "websocket.receive", "text": message}
            return {"type": "websocket.receive", "bytes": message}
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self._phase == _CONNECTING:
            await self.wait_closed()  # nothing can arrive before the handshake's answer
        return self._disconnect()

    def _disconnect(self) -> Message:
        proto = self.proto
        if proto is None:
            return disconnect_event(None, None, None)
        return disconnect_event(proto.close_rcvd, proto.close_sent, proto.close_rcvd_then_sent)

    def _discard_input(self) -> None:
        """The application won't read again: drop what arrives, so that reading never pauses
        and the peer's close frame is seen (a reader still waiting wakes up when it comes)."""
        self._on_message = _discard
        if self._queue:
            self._queue.clear()
        if self._paused_reading:
            self._resume()

    # -- ASGI send ---------------------------------------------------------------------------

    async def asgi_send(self, message: Message) -> None:
        """ASGI ``send``: answer the handshake, send a message, or close.

        ``websocket.send`` returns once the frame is handed to the socket, or, while the
        socket's buffer is above its high-water mark, once it drained (backpressure).

        Raises:
            ClientDisconnected: the connection is closed or closing (an ``OSError``, as the
                ASGI specification asks), or the server answered the handshake already.
            UsageError: the message is unexpected now, or malformed (bad type, a status
                out of range, a subprotocol the client didn't offer, a close code that can't
                be sent...).
        """
        if message["type"] == "websocket.send" and self._phase == _ACCEPTED:
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                simple = type(data) is str
            else:
                simple = type(data) is bytes
            try:
                if not (simple and self._send_fast(data, None)):
                    # bytearray, memoryview, a connection not open, or an invalid message.
                    await self.send(message_data(message))
                elif self._paused_writing:
                    await self._drain()
            except ConnectionClosed as exc:
                raise ClientDisconnected(exc.rcvd, exc.sent, exc.rcvd_then_sent) from exc
            return
        self._send_other(message)

    def _send_other(self, message: Message) -> None:
        """Every ``send`` but a message on an open connection."""
        kind = message["type"]
        phase = self._phase
        if phase == _CONNECTING:
            self._answer(message, kind)
        elif phase == _ACCEPTED and kind == "websocket.close":
            self._close(message)
        elif phase == _DENYING and kind == "websocket.http.response.body":
            denial = self._denial
            assert denial is not None
            self._send_denial(denial.body(message))
        elif self._server_refused:
            raise ClientDisconnected(None, None)
        elif phase == _DENYING:
            raise UsageError(
                f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
            )
        elif phase == _ACCEPTED:
            raise UsageError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'."
            )
        else:
            when = "after sending 'websocket.close'" if phase == _APP_CLOSED else "now"
            raise UsageError(f"Unexpected ASGI message '{kind}', {when}.")

    def _answer(self, message: Message, kind: str) -> None:
        """The application's answer to the handshake: accept, refuse (403) or respond."""
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            if self.transport is not None and not self.transport.is_closing():
                self._log("403")
            self._refuse(403)
        elif kind == "websocket.http.response.start":
            if self._connection_lost:
                raise ClientDisconnected(None, None)
            self._denial = Denial(message)
            self._phase = _DENYING
        else:
            raise UsageError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start' but got '{kind}'."
            )

    def _accept(self, message: Message) -> None:
        """Send the 101 response and start framing (permessage-deflate if negotiated).

        Raises:
            ClientDisconnected: the client is gone already.
            UsageError: see :func:`~wsend.asgi.adapter.accept_options`; or the headers set
                one that the handshake owns (Upgrade, Sec-WebSocket-Accept...).
        """
        request = self.request
        assert request is not None
        subprotocol, headers = accept_options(message, request, self.server_state.default_headers)
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ClientDisconnected(None, None)
        try:
            response = handshake.build_accept(
                request,
                self._key,
                subprotocol=subprotocol,
                extensions=self._extensions_header,
                extra_headers=headers,
                server=None,
            )
        except ValueError as exc:
            raise UsageError(f"cannot accept: {exc}") from exc
        self.protocol = subprotocol
        self.response = response
        self._protocol = self._new_protocol()
        self._switch(response)
        self._phase = _ACCEPTED
        self._log("[accepted]")

    def _close(self, message: Message) -> None:
        """``websocket.close`` after accepting: start the closing handshake, don't wait.

        What the peer still sends is dropped; the connection closes when its close frame
        comes (or after ``close_timeout``). On a connection already closing, nothing to do.
        """
        code, reason = close_options(message)
        self._phase = _APP_CLOSED
        proto = self.proto
        if proto is not None and proto.state is State.OPEN and not self._connection_lost:
            proto.send_close(code, reason)
            self._flush(proto)
        self._discard_input()

    def _refuse(self, status: int, *, by_server: bool = False) -> None:
        """Answer the handshake with an HTTP error ``status`` (no-op if the client left)."""
        self._phase = _REFUSED
        self._server_refused = by_server
        self._denial = None
        self._respond(handshake.build_reject(status))

    def _send_denial(self, response: Response | None) -> None:
        """Send the application's response once complete (``None``: not yet)."""
        if response is not None:
            self._phase = _REFUSED
            self._denial = None
            self._log(str(response.status))
            self._respond(response)

    def _respond(self, response: Response) -> None:
        """Send an HTTP response with uvicorn's default headers (Server, Date) where missing."""
        for name, value in self.server_state.default_headers:
            key = name.decode("latin-1")
            if key not in response.headers:
                response.headers.add(key, value.decode("latin-1"))
        super()._respond(response)

    def _log(self, outcome: str) -> None:
        """Log the handshake's outcome as uvicorn does: client, path and result."""
        scope = self.scope
        if scope is not None and logger.isEnabledFor(logging.INFO):
            where = get_path_with_query_string(scope)  # type: ignore[arg-type]
            client = get_client_addr(scope)  # type: ignore[arg-type]
            logger.info('%s - "WebSocket %s" %s', client, where, outcome)
