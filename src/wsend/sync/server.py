"""The threading WebSocket server: :func:`serve`, :class:`Server`, :class:`ServerConnection`.

A thread per connection runs the TLS and opening handshakes, then the handler; each open
connection also has its reader thread (see :mod:`wsend.sync.connection`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import selectors
import socket
import ssl as ssl_module
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from ..asyncio.connection import DEFAULT_OPEN_TIMEOUT, ConnectionOptions
from ..asyncio.routes import Router, fallback_response, without_body
from ..asyncio.server import pop_options, server_tls
from ..exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    UsageError,
)
from ..protocol import handshake
from ..protocol.connection import Connection as Protocol
from ..protocol.connection import State
from ..protocol.deflate import PerMessageDeflate, ServerDeflate
from ..protocol.frames import CloseCode
from ..protocol.hosts import AllowedHosts, HostPattern, check_host
from ..protocol.http import Headers, HTTPLimits, Request, RequestParser, Response
from ..protocol.opening import ServerNegotiation, deflate_setting, hook_list
from .connection import Connection
from .transport import READ_SIZE, TLS, Deadline, set_nodelay, wait_readable

__all__ = ["Server", "ServerConnection", "serve"]

logger = logging.getLogger("wsend.server")

Handler = Callable[["ServerConnection"], Any]
#: A hook run before the upgrade: return a Response to refuse it, or None to go on. Hooks
#: written for the asyncio server (``wsend.basic_auth()``...) work when they don't await
#: anything (their checks are synchronous).
ProcessRequest = Callable[[Any, Request], Response | Awaitable[Response | None] | None]
Origins = Sequence[str | re.Pattern[str] | None]

# As the asyncio server: after an HTTP response, read and discard what the client still sends
# for up to 2 s and 4 MiB before closing, so that the response isn't destroyed by a reset.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 4 << 20


class ServerConnection(Connection, ServerNegotiation):
    """A connection accepted by :func:`serve`, passed to the handler once open.

    Attributes:
        server: the :class:`Server` it belongs to.
    """

    logger = logger
    server: Server

    def __init__(self, server: Server, sock: socket.socket, tls: TLS | None) -> None:
        super().__init__(sock, server.options, tls)
        self.server = server
        self._protocol: Protocol | None = None
        self._deflate: PerMessageDeflate | None = None

    def _handshake(self, deadline: Deadline) -> bool:
        """Read the request and answer it; return whether the connection is now open.

        Raises:
            OSError: the connection failed; TimeoutError: the deadline passed.
        """
        parser = RequestParser(self.server.limits)
        request = None
        while request is None:
            deadline.apply(self._sock)
            data = self._recv_raw()
            if not data:
                return False
            try:
                request = parser.feed(data)
            except InvalidMessage as exc:
                self._respond(handshake.response_for_error(exc))
                return False
        self.request = request
        try:
            response = self._process(request)
        except InvalidHandshake as exc:
            response = handshake.response_for_error(exc)
        except Exception:
            self.logger.exception("error while processing the opening handshake")
            response = handshake.build_reject(500)
        self.response = response
        if response.status != 101:
            self._respond(response)
            return False
        self._send_raw(response.serialize())
        assert self._protocol is not None
        self._start(self._protocol, parser.leftover)
        return True

    def _respond(self, response: Response) -> None:
        """Answer with an HTTP response, then close once the client has read it."""
        if "Connection" not in response.headers:
            response.headers["Connection"] = "close"
        self._send_raw(response.serialize())
        if self._tls is not None:
            self._sock.sendall(self._tls.close_notify())
        self._sock.shutdown(socket.SHUT_WR)
        self._sock.settimeout(None)
        end = time.monotonic() + _LINGER_SECONDS
        received = 0
        while received <= _LINGER_BYTES:
            left = end - time.monotonic()
            if left <= 0 or not wait_readable(self._sock, left):
                break
            data = self._sock.recv(READ_SIZE)
            if not data:
                break
            received += len(data)

    def _process(self, request: Request) -> Response:
        """Decide the answer to ``request``: a 101 upgrade, a refusal or an HTTP response."""
        server = self.server
        if server.allowed_hosts is not None:  # 400 or 421 (see wsend.serve's allowed_hosts)
            check_host(request, server.allowed_hosts, secure=self._tls is not None)
        if not any("websocket" in value.lower() for value in request.headers.get_all("Upgrade")):
            return server.http_response(request)
        key = handshake.check_request(request)
        if server.origins is not None:
            handshake.check_origin(request, server.origins)
        for hook in server.process_request:
            result = _call(hook, self, request)
            if result is not None:
                return cast(Response, result)
        return self._accept_upgrade(request, key)


def _call(func: Callable[..., Any], *args: Any) -> Any:
    """Call a hook or route handler; an awaitable result must complete without suspending.

    Hooks written for the asyncio server are coroutines; those whose checks are synchronous
    (``wsend.basic_auth(credentials=...)``) never suspend, so they run here to completion.

    Raises:
        UsageError: the coroutine waited for something (it needs an event loop).
    """
    result = func(*args)
    if not inspect.isawaitable(result):
        return result
    steps = result.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value
    with contextlib.suppress(Exception):
        steps.close()
    raise UsageError(
        f"{getattr(func, '__qualname__', func)!r} awaits something: the threading server "
        "takes synchronous hooks and handlers"
    )


class Server:
    """A running threading WebSocket server; returned by :func:`serve`.

    Use it with ``with``: leaving the block shuts it down. :meth:`serve_forever` accepts
    connections until :meth:`shutdown` is called from another thread (or a signal handler).

    Attributes:
        socket: the listening socket.
        connections: the open connections (including those still in the opening handshake).
    """

    def __init__(
        self,
        handler: Handler,
        sock: socket.socket,
        *,
        options: ConnectionOptions,
        ssl: ssl_module.SSLContext | None = None,
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
        self.socket = sock
        self.options = options
        self.ssl = ssl
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
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._serving = threading.Lock()  # held by serve_forever()
        self._wake_r, self._wake_w = socket.socketpair()
        sock.setblocking(False)

    @property
    def port(self) -> int:
        """The TCP port of the listening socket (handy with ``port=0``)."""
        if self.socket.family not in (socket.AF_INET, socket.AF_INET6):
            raise RuntimeError("the server is not listening on TCP")
        return int(self.socket.getsockname()[1])

    def route(self, path: str, methods: Sequence[str] = ("GET",), *, prefix: bool = False) -> Any:
        """Decorator adding an HTTP route to :attr:`router` (handlers are functions)."""
        return self.router.route(path, methods, prefix=prefix)

    def http_response(self, request: Request) -> Response:
        """The answer to a plain HTTP request: a route, the health check, or 426."""
        handler = self.router.select(request)
        if handler is None:
            return fallback_response(request)
        if isinstance(handler, Response):
            return handler
        response = cast(Response, _call(handler, request))
        return without_body(response) if request.method.upper() == "HEAD" else response

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` (or :meth:`close`) is called.

        Raises:
            UsageError: another thread is already serving.
        """
        if not self._serving.acquire(blocking=False):
            raise UsageError("the server is already serving in another thread")
        try:
            self._accept_until_closed()
        finally:
            self._serving.release()

    def _accept_until_closed(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or self._closing:
                        return
                    self._accept()

    def _accept(self) -> None:
        try:
            sock, address = self.socket.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:
            # Out of file descriptors, most likely: wait a little instead of spinning.
            logger.error("accept failed: %s", exc)
            time.sleep(0.1)
            return
        thread = threading.Thread(
            target=self._handle, args=(sock,), name=f"wsend-conn-{address}", daemon=True
        )
        with self._lock:
            if self._closing:
                sock.close()
                return
            self._threads.add(thread)
        thread.start()

    def _handle(self, sock: socket.socket) -> None:
        """A connection's thread: handshakes, then the handler."""
        conn: ServerConnection | None = None
        try:
            deadline = Deadline(self.open_timeout)
            deadline.apply(sock)
            set_nodelay(sock)
            tls = None
            if self.ssl is not None:
                tls = TLS(self.ssl, server_side=True)
                tls.handshake(sock)
            conn = ServerConnection(self, sock, tls)
            with self._lock:
                self.connections.add(conn)
            if self._closing or not conn._handshake(deadline):
                sock.close()
                return
            self._run_handler(conn)
        except (OSError, TimeoutError) as exc:
            logger.debug("opening handshake failed: %s", exc)
            sock.close()
        finally:
            with self._lock:
                if conn is not None:
                    self.connections.discard(conn)
                self._threads.discard(threading.current_thread())

    def _run_handler(self, conn: ServerConnection) -> None:
        """Run the application handler, then close the connection (1011 if it raised)."""
        try:
            self.handler(conn)
        except ConnectionClosed:
            if conn.ready_state is State.OPEN:
                # Not this connection's closure: another one's, which the handler let escape.
                logger.exception("connection handler failed")
                conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        except Exception:
            logger.exception("connection handler failed")
            conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        conn.close()

    def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Stop accepting connections and start closing every open one with ``code``."""
        with self._lock:
            first = not self._closing
            self._closing = True
            connections = list(self.connections)
        if first:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        for conn in connections:
            if conn.proto is None:
                conn.abort()
            elif conn.ready_state is State.OPEN:
                # Each closes in its own thread: close() waits for the peer.
                threading.Thread(target=conn.close, args=(code, reason), daemon=True).start()

    def shutdown(
        self,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "server shutting down",
        timeout: float | None = 10.0,
    ) -> None:
        """Close every connection (1001 by default) and wait for the handlers, up to
        ``timeout`` seconds; then drop the connections still open and release the socket.

        Handlers still running after that are left to finish on their own (a thread can't be
        stopped): their connections are closed, so ``recv()`` and ``send()`` raise.
        """
        self.close(code, reason)
        self.wait_closed(timeout)
        for conn in list(self.connections):
            conn.abort()
        self._release()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until every connection's thread has finished; return whether they have."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                return True
            for thread in threads:
                left = None if end is None else max(0.0, end - time.monotonic())
                thread.join(left)
                if end is not None and time.monotonic() >= end:
                    return not any(t.is_alive() for t in threads)

    def _release(self) -> None:
        # serve_forever() must leave its selector before the sockets it watches are closed.
        if self._serving.acquire(timeout=5.0):
            self._serving.release()
        for sock in (self.socket, self._wake_r, self._wake_w):
            sock.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def serve(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    path: str | None = None,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    reuse_port: bool = False,
    backlog: int = 1024,
    **kwargs: Any,
) -> Server:
    """Start a threading WebSocket server: it listens at once; call ``serve_forever()``.

    .. code-block:: python

        with wsend.sync.serve(echo, "localhost", 8765) as server:  # def echo(ws): ...
            server.serve_forever()

    Args:
        handler: ``handler(ws)``, run in a thread per connection once open; the connection
            closes with 1000 when it returns and with 1011 if it raises.
        host, port: where to listen (``port=0`` picks a free port: read ``server.port``).
        path: a Unix socket path, instead of host and port.
        sock: an already listening socket.
        ssl: an ``ssl.SSLContext`` for ``wss://``, or use ``certfile`` and ``keyfile``.
        reuse_port, backlog: listening socket options.
        compression, origins, allowed_hosts, subprotocols, select_subprotocol,
            require_subprotocol, process_request, router, extra_headers, server_header,
            limits, open_timeout: as for :func:`wsend.serve` (hooks and route handlers are
            functions).
        max_message_size, max_frame_size, max_queue, write_limit, ping_interval,
            ping_timeout, close_timeout: see :class:`~wsend.asyncio.ConnectionOptions`.

    Raises:
        OSError: the address is in use or can't be bound.
        ValueError: conflicting arguments.
    """
    if sum(x is not None for x in (path, sock)) + (host is not None or port is not None) > 1:
        raise ValueError("pass one of host and port, path, or sock")
    options = pop_options(kwargs)
    ssl = server_tls(ssl, certfile, keyfile)
    if sock is None:
        sock = _listen(host, port, path, reuse_port=reuse_port, backlog=backlog)
    return Server(handler, sock, options=options, ssl=ssl, **kwargs)


def _listen(
    host: str | None, port: int | None, path: str | None, *, reuse_port: bool, backlog: int
) -> socket.socket:
    """The listening socket: TCP (SO_REUSEADDR, as asyncio) or Unix."""
    if path is None:
        family = socket.AF_INET6 if host is not None and ":" in host else socket.AF_INET
        return socket.create_server(
            (host or "", port or 0), family=family, backlog=backlog, reuse_port=reuse_port
        )
    # A socket file left by an earlier server is removed, as asyncio does.
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
