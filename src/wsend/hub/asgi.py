"""The hub as ASGI 3 applications, to mount in FastAPI, Starlette or any ASGI framework.

.. code-block:: python

    hub = Hub(options, api_key=KEY)
    hub_app = asgi_app(hub, authenticate=from_session)
    app = FastAPI(lifespan=hub_app.lifespan)
    app.add_websocket_route("/ws", hub_app)           # the WebSocket endpoint: /ws
    app.mount("/api", api_app(hub))                   # POST /api/publish, /api/presence...
    app.add_route("/metrics", metrics_app(hub))       # GET /metrics

Plain ASGI callables: no framework is needed, and any ASGI server runs them (uvicorn with
either WebSocket layer, hypercorn...). Mount them (``app.mount``) or route them
(``add_websocket_route``, ``add_route``); paths seen by the hub (the ``authenticate`` hook's
request) are relative to the mount point (``root_path``, as Starlette's ``Mount`` sets it).

Contract of :class:`HubApp` for ``websocket`` scopes (``docs/hub/asgi.md``):

- At whatever path the host application routes to it: ``app.mount("/ws", hub_app)`` serves
  ``/ws/`` (and below: Starlette's ``Mount`` doesn't match ``/ws`` itself), while
  ``app.add_websocket_route("/ws", hub_app)`` serves exactly ``/ws``.
- The ``authenticate`` hook, if any, runs before the handshake with the request (headers,
  cookies, query) and the ASGI scope (``scope["session"]`` of Starlette's ``SessionMiddleware``,
  ``scope["user"]``...). It returns :class:`~.auth.ConnectionClaims` (the connection is that
  user: ``connect`` needs no token), ``None`` (the hub's own rules: a JWT in ``connect`` or
  ``?token=``, or anonymous if allowed) or raises :class:`~.codes.HubError` to refuse:
  ``connect`` is answered with that error, then the connection closes with 4501 (4004 for
  109, open for a temporary error), exactly as for a refused token.
- The subprotocol is negotiated as by ``wsend serve`` (``wsend.v1.json``, ``wsend.v1.msgpack``;
  none: JSON); messages go both ways as text (JSON) or binary (MessagePack) frames.
- Then the same session as under ``wsend serve`` runs (:meth:`Hub.handler`): hub close codes
  (4000-4999) go out in ``websocket.close``; ``websocket.disconnect`` ends the session (its
  subscriptions and presence are removed). The writer awaits the server's ``send``, which waits
  while the peer doesn't read, so a slow client backs up into its bounded session queue and
  the namespace's slow-consumer policy applies (close 4002, or conflation).

Lifespan: the node's engines start with the first connection or with :meth:`HubApp.startup`, and
stop with :meth:`HubApp.shutdown` (``async with hub_app.lifespan():``, or FastAPI's
``lifespan=hub_app.lifespan``); mounted at the top, :class:`HubApp` answers ``lifespan`` scopes
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from ..asyncio.connection import DEFAULT_CLOSE_TIMEOUT
from ..asyncio.routes import Router
from ..exceptions import ConnectionClosed
from ..protocol.frames import CloseCode
from ..protocol.handshake import select_subprotocol
from ..protocol.http import Headers, HTTPLimits, Request, Response
from .auth import ConnectionClaims
from .codes import DisconnectCode, ErrorCode, HubError
from .httpapi import add_api_routes
from .metrics import CONTENT_TYPE
from .node import Hub
from .wire import SUBPROTOCOLS

__all__ = [
    "ASGIApp",
    "Authenticate",
    "HubApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "api_app",
    "asgi_app",
    "metrics_app",
    "request_from_scope",
    "route_path",
]

logger = logging.getLogger("wsend.hub")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``authenticate(request, scope) -> ConnectionClaims | None`` (sync or async); may raise
#: :class:`~.codes.HubError` to refuse the connection (see the module docstring).
Authenticate = Callable[
    [Request, Scope], ConnectionClaims | Awaitable[ConnectionClaims | None] | None
]

# API request bodies above this size get 413 (as wsend's own server: HTTPLimits).
_MAX_BODY = HTTPLimits.max_body_size


def route_path(scope: Scope) -> str:
    """The request's path within the mount point: ``path`` without ``root_path``.

    As Starlette's ``get_route_path``: servers and frameworks that leave ``path`` whole and
    those that strip ``root_path`` from it are both handled.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    return rest if not rest or rest.startswith("/") else path


def request_from_scope(scope: Scope, body: bytes = b"") -> Request:
    """The ``http`` or ``websocket`` scope's request as a wsend :class:`Request`.

    Its ``target`` is the path within the mount point (percent-encoded again) and the query;
    ``headers``, ``cookies`` and ``query`` read as for requests wsend's own server receives.

    Raises:
        ValueError: a header the :class:`Headers` rules refuse (servers don't pass those).
    """
    path = urllib.parse.quote(route_path(scope) or "/", safe="/:@!$&'()*+,;=~-._")
    query: bytes = scope.get("query_string", b"")
    target = f"{path}?{query.decode('latin-1')}" if query else path
    headers = Headers(
        [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
    )
    return Request(scope.get("method", "GET"), target, headers, body)


class _AsgiSocket:
    """An accepted ASGI WebSocket as the hub's :class:`~.seams.Socket`.

    Only the session's reader receives; the writer (and a slow-consumer close) sends. The
    server's ``send`` raising ``OSError`` (uvicorn's ``ClientDisconnected``), or any send after
    the disconnect or our close, becomes :class:`ConnectionClosed`.

    ASGI can't abort a connection: once :meth:`close` was called, the close frame and the
    ``websocket.disconnect`` get ``close_timeout`` seconds; then the socket counts as closed
    (1006) and iteration ends, so the session ends and frees what it holds even when the peer
    never reads again (the server's keepalive then drops the TCP connection).
    """

    def __init__(
        self,
        receive: Receive,
        send: Send,
        request: Request,
        protocol: str | None,
        close_timeout: float,
    ) -> None:
        self._receive, self._send = receive, send
        self.request: Request | None = request
        self.protocol = protocol
        self.close_code: int | None = None
        self._close_timeout = close_timeout
        self._deadline: float | None = None  # when to give up waiting for the disconnect
        self._waiting: asyncio.Timeout | None = None  # the reader's wait, to reschedule

    def __aiter__(self) -> _AsgiSocket:
        return self

    async def __anext__(self) -> str | bytes:
        """The next message; ends at ``websocket.disconnect`` (recording its code)."""
        while self.close_code is None:
            try:
                async with asyncio.timeout_at(self._deadline) as self._waiting:
                    message = await self._receive()
            except TimeoutError:
                self.close_code = CloseCode.ABNORMAL_CLOSURE
                break
            finally:
                self._waiting = None
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                data: str | bytes | None = text if text is not None else message.get("bytes")
                if data is not None:
                    return data
            elif kind == "websocket.disconnect":
                self.close_code = int(message.get("code", CloseCode.NO_STATUS_RCVD))
        raise StopAsyncIteration

    async def send(self, message: str | bytes) -> None:
        if self._deadline is not None or self.close_code is not None:
            raise ConnectionClosed(None, None)
        key = "text" if isinstance(message, str) else "bytes"
        try:
            await self._send({"type": "websocket.send", key: message})
        except OSError as exc:
            raise ConnectionClosed(None, None) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._deadline is not None or self.close_code is not None:
            return
        self._deadline = asyncio.get_running_loop().time() + self._close_timeout
        if self._waiting is not None:
            self._waiting.reschedule(self._deadline)
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout_at(self._deadline):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})


class HubApp:
    """The hub's WebSocket endpoint as an ASGI application (see the module docstring).

    Args:
        hub: the node whose sessions the connections run.
        authenticate: ``authenticate(request, scope)`` giving the connection's credentials
            from the host application's request (cookie, header...); ``None``: tokens only.
        close_timeout: seconds a closing connection gets to send its close frame and see the
            disconnect before its session ends anyway (10 s, as ``wsend serve``).

    ``http`` requests get 426 (Upgrade Required); ``lifespan`` scopes start and stop the node.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        authenticate: Authenticate | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        self.hub = hub
        self.authenticate = authenticate
        self.close_timeout = close_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await _respond(send, _not_upgraded(), scope)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan ------------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start the node's engines (idempotent; the first connection would start them)."""
        await self.hub.start()

    async def shutdown(self) -> None:
        """Close the node's connections (4001: reconnect later), then stop its engines.

        Waits a few seconds at most for the sessions to clean up (:meth:`Hub.close`).
        """
        await self.hub.close(DisconnectCode.SHUTDOWN, "shutdown")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """``async with``: the node runs inside the block; fits FastAPI's ``lifespan=``."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Answer the server's ``lifespan`` messages (mounted at the top only)."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- websocket -----------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One WebSocket: handshake, then a hub session until it closes."""
        if (await receive())["type"] != "websocket.connect":
            return  # disconnected before the handshake
        request = request_from_scope(scope)
        credentials = await self._credentials(request, scope)
        subprotocol = select_subprotocol(scope.get("subprotocols") or (), SUBPROTOCOLS)
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        socket = _AsgiSocket(receive, send, request, subprotocol, self.close_timeout)
        await self.hub.handler(socket, credentials=credentials)

    async def _credentials(
        self, request: Request, scope: Scope
    ) -> ConnectionClaims | HubError | None:
        """What the ``authenticate`` hook says; its failures refuse with error 100."""
        if self.authenticate is None:
            return None
        try:
            result = self.authenticate(request, scope)
            if inspect.isawaitable(result):
                result = await result
            if result is not None and not isinstance(result, ConnectionClaims):
                raise TypeError(f"authenticate returned {type(result).__name__}")
        except HubError as exc:
            return exc
        except Exception:
            logger.exception("the authenticate hook failed")
            return HubError(ErrorCode.INTERNAL)
        return result


def asgi_app(
    hub: Hub,
    *,
    authenticate: Authenticate | None = None,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
) -> HubApp:
    """The hub's WebSocket endpoint as an ASGI app (:class:`HubApp`): mount it at ``/ws``."""
    return HubApp(hub, authenticate=authenticate, close_timeout=close_timeout)


def api_app(hub: Hub) -> ASGIApp:
    """The hub's HTTP API (:mod:`.httpapi`) as an ASGI app: ``POST .../<method>``.

    The last segment of the path names the method, so it works mounted (``app.mount("/api",
    ...)`` gives the URLs of ``wsend serve``: ``POST /api/publish``...) or routed
    (``Route("/hub/{method}", ...)``). Same API-key check (``hub.api_key``; none: 403), bodies
    and replies as ``wsend serve``.
    """
    return _ApiApp(hub)


def metrics_app(hub: Hub) -> ASGIApp:
    """The hub's Prometheus metrics as an ASGI app: ``GET`` (or ``HEAD``) at any path it is
    given, e.g. ``app.add_route("/metrics", metrics_app(hub))``; other methods get 405."""
    return _MetricsApp(hub)


# Both are objects, not functions: Starlette's Route and WebSocketRoute take a function for a
# request handler, and any other callable for an ASGI app.


class _ApiApp:
    def __init__(self, hub: Hub) -> None:
        self.router = Router()
        add_api_routes(hub, self.router)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await _refused(scope, send):
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, Response.text(413, "Request body too large\n"), scope)
            return
        request = request_from_scope(scope, body)
        name = request.path.rstrip("/").rpartition("/")[2]
        query = request.target.partition("?")[2]
        target = f"/api/{name}?{query}" if query else f"/api/{name}"
        inner = Request(request.method, target, request.headers, body)
        response = await self.router.dispatch(inner)
        await _respond(send, response or _not_found(), scope)


class _MetricsApp:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await _refused(scope, send):
            return
        if scope.get("method") in ("GET", "HEAD"):
            response = Response.bytes(200, self.hub.metrics.render(), CONTENT_TYPE)
        else:
            allow = Headers({"Allow": "GET, HEAD"})
            response = Response.text(405, "Method Not Allowed\n", allow)
        await _respond(send, response, scope)


async def _refused(scope: Scope, send: Send) -> bool:
    """Refuse what an HTTP-only app doesn't serve: a WebSocket gets 403, lifespan nothing."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})
    return bool(scope["type"] != "http")


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body; ``None`` when it exceeds the limit (or the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, response: Response, scope: Scope) -> None:
    """Send ``response`` (without body to a HEAD request)."""
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
    ]
    if "Content-Length" not in response.headers:
        headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    body = b"" if scope.get("method") == "HEAD" else response.body
    await send({"type": "http.response.body", "body": body})


def _not_found() -> Response:
    return Response.text(404, "Not Found\n")


def _not_upgraded() -> Response:
    headers = Headers({"Upgrade": "websocket", "Sec-WebSocket-Version": "13"})
    return Response.text(426, "Upgrade Required: this is the hub's WebSocket endpoint\n", headers)
