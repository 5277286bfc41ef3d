"""Sockets and TLS for the threading implementation.

- :func:`open_socket` is the one place where the client opens its network connection.
- :class:`TLS` runs TLS over memory buffers (:class:`ssl.SSLObject`) instead of an
  :class:`ssl.SSLSocket`: a connection reads in one thread while others write, and OpenSSL
  forbids using one SSL object from two threads at once. The connection encrypts and decrypts
  under its lock and moves only raw bytes through the socket, in the order they were produced.
- :func:`write_all` writes a list of buffers, vectored where the socket allows it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl as ssl_module
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import OpenTimeout
from ..protocol.proxy import Proxy
from ..proxy_socket import Stream, open_http_tunnel, open_proxy_socket, proxy_unreachable

if TYPE_CHECKING:
    from ..asyncio.client import WebSocketURI
    from ..protocol.http import HeadersLike, HTTPLimits

__all__ = [
    "TLS",
    "Deadline",
    "TLSStream",
    "TunnelTLS",
    "open_socket",
    "wait_readable",
    "write_all",
]

Buffer = bytes | bytearray | memoryview

# Bytes read from the socket at a time (asyncio reads 256 KiB; see the connection's buffer).
READ_SIZE = 1 << 18
# Small buffers are joined into one write up to this size; larger ones are written apart.
_JOIN_LIMIT = 65536
# At most this many buffers per sendmsg() call (Linux's IOV_MAX is 1024).
_IOV_MAX = 1024


class Deadline:
    """A point in time that bounds a sequence of blocking steps (the opening handshake).

    Args:
        timeout: seconds from now, or ``None`` for no limit.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (``None``: no limit).

        Raises:
            OpenTimeout: no time is left.
        """
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise OpenTimeout("timed out during the opening handshake")
        return left

    def apply(self, sock: socket.socket) -> None:
        """Set the socket's timeout to the time left."""
        sock.settimeout(self.remaining())


def open_socket(
    uri: WebSocketURI,
    *,
    deadline: Deadline,
    path: str | None = None,
    proxy: Proxy | None = None,
    proxy_ssl: ssl_module.SSLContext | None = None,
    proxy_headers: HeadersLike | None = None,
    user_agent: str | None = None,
    limits: HTTPLimits | None = None,
) -> tuple[socket.socket, TLS | None]:
    """Open the network connection of a client: TCP to the URI's host and port (through
    ``proxy`` if given), or ``path``.

    This is the only place the threading client opens a connection; the socket it returns
    carries the TLS and WebSocket handshakes.

    Args:
        uri: the server's URI.
        deadline: when to give up.
        path: a Unix socket to connect to instead of the URI's host and port.
        proxy: an HTTP, HTTPS or SOCKS proxy to open a tunnel through
            (:func:`wsend.proxy_socket.open_proxy_socket`).
        proxy_ssl: the TLS context for an ``https://`` proxy (default: the system's CAs).
        proxy_headers, user_agent, limits: for an HTTP proxy's CONNECT exchange.

    Returns:
        A connected socket in blocking mode with the deadline's timeout set (TCP_NODELAY is
        on), and the TLS session with an ``https://`` proxy that carries the tunnel, if any.

    Raises:
        OSError: the connection failed (refused, unreachable, name not resolved);
            ProxyConnectionError: the proxy can't be reached.
        ProxyError: the proxy refused the tunnel or answered nonsense.
        UsageError: a SOCKS proxy without python-socks.
        OpenTimeout: the deadline passed.
    """
    if proxy is not None and path is None:
        if proxy.scheme == "https":
            return _https_tunnel(uri, deadline, proxy, proxy_ssl, proxy_headers, user_agent, limits)
        sock = open_proxy_socket(
            proxy,
            uri.host,
            uri.port,
            timeout=deadline.remaining(),
            proxy_headers=proxy_headers,
            user_agent=user_agent,
            limits=limits,
        )
        set_nodelay(sock)
        return sock, None
    try:
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                deadline.apply(sock)
                sock.connect(path)
            except BaseException:
                sock.close()
                raise
            return sock, None
        sock = socket.create_connection((uri.host, uri.port), timeout=deadline.remaining())
    except TimeoutError as exc:
        if isinstance(exc, OpenTimeout):
            raise
        raise OpenTimeout("timed out while connecting") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, None


def _https_tunnel(
    uri: WebSocketURI,
    deadline: Deadline,
    proxy: Proxy,
    context: ssl_module.SSLContext | None,
    proxy_headers: HeadersLike | None,
    user_agent: str | None,
    limits: HTTPLimits | None,
) -> tuple[socket.socket, TLS]:
    """Open a tunnel through an ``https://`` proxy: TLS with the proxy over memory buffers
    (as the connection's own TLS, for the same reason), and CONNECT inside it."""
    outer = TLS(
        context or ssl_module.create_default_context(),
        server_side=False,
        server_hostname=proxy.host,
    )

    def start(sock: socket.socket) -> TLSStream:
        try:
            outer.handshake(sock)
        except ssl_module.SSLError as exc:
            raise proxy_unreachable(proxy, exc) from exc
        return TLSStream(sock, outer)

    sock, _ = open_http_tunnel(
        proxy,
        uri.host,
        uri.port,
        start,
        timeout=deadline.remaining(),
        proxy_headers=proxy_headers,
        user_agent=user_agent,
        limits=limits,
    )
    set_nodelay(sock)
    return sock, outer


def set_nodelay(sock: socket.socket) -> None:
    """Send small frames at once (no Nagle delay) on TCP sockets."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds until ``sock`` has data (or EOF); return whether it has."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))
    readable, _, _ = select.select([sock], [], [], max(0.0, timeout))  # pragma: no cover
    return bool(readable)  # pragma: no cover


def write_all(sock: socket.socket, chunks: Sequence[Buffer]) -> None:
    """Write every byte of ``chunks``, in order (blocking).

    Small chunks are joined; larger runs go in vectored writes where the socket has
    ``sendmsg``, else one ``sendall`` each.

    Raises:
        OSError: the connection failed.
    """
    if len(chunks) == 1:
        sock.sendall(chunks[0])
        return
    size = sum(len(chunk) for chunk in chunks)
    if size <= _JOIN_LIMIT:
        sock.sendall(b"".join(chunks))
    elif hasattr(sock, "sendmsg"):
        _sendmsg_all(sock, chunks)
    else:  # pragma: no cover - platforms without sendmsg
        for chunk in chunks:
            sock.sendall(chunk)


def _sendmsg_all(sock: socket.socket, chunks: Sequence[Buffer]) -> None:
    views = [memoryview(chunk).cast("B") for chunk in chunks]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first : first + _IOV_MAX])
        while sent:
            length = len(views[first])
            if sent < length:
                views[first] = views[first][sent:]
                break
            sent -= length
            first += 1


class TLS:
    """One TLS session over memory buffers; the caller moves the raw bytes.

    Not thread-safe: the connection calls it under its lock.

    Args:
        context: the TLS settings.
        server_side: whether this end is the server.
        server_hostname: the name to check the server's certificate against (client side).
    """

    def __init__(
        self,
        context: ssl_module.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self._incoming = ssl_module.MemoryBIO()
        self._outgoing = ssl_module.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        #: Whether the peer ended the session (close_notify).
        self.eof = False

    @property
    def version(self) -> str | None:
        """The negotiated TLS version (``"TLSv1.3"``...)."""
        return self._obj.version()

    def handshake(self, sock: Stream) -> None:
        """Run the TLS handshake over ``sock`` (a socket, or a :class:`TLSStream` for TLS inside
        TLS), blocking (bounded by the socket's timeout).

        Raises:
            ssl.SSLError: the handshake failed (ssl.SSLCertVerificationError: the certificate).
            OSError: the connection failed or closed (:class:`ConnectionResetError`).
            TimeoutError: the socket's timeout expired.
        """
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl_module.SSLWantReadError:
                self._send_pending(sock)
                data = sock.recv(READ_SIZE)
                if not data:
                    raise ConnectionResetError(
                        "connection closed during the TLS handshake"
                    ) from None
                self._incoming.write(data)
        self._send_pending(sock)

    def _send_pending(self, sock: Stream) -> None:
        data = self._outgoing.read()
        if data:
            sock.sendall(data)

    def encrypt(self, chunks: Sequence[Buffer]) -> bytes:
        """Encrypt ``chunks`` in order; return the TLS records to write."""
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                written = self._obj.write(view)
                view = view[written:]
        return self._outgoing.read()

    def decrypt(self, data: Buffer) -> bytes:
        """Feed raw bytes received; return the plaintext they complete (maybe empty).

        Records the peer's close_notify in :attr:`eof`. Output TLS produces meanwhile (a key
        update) is kept for :meth:`pending`.

        Raises:
            ssl.SSLError: the peer sent something that isn't valid TLS.
        """
        self._incoming.write(data)
        parts = []
        while True:
            try:
                part = self._obj.read(READ_SIZE)
            except ssl_module.SSLWantReadError:
                break
            except ssl_module.SSLZeroReturnError:  # pragma: no cover - read() returns b""
                self.eof = True
                break
            if not part:  # the peer's close_notify
                self.eof = True
                break
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pending(self) -> bytes:
        """TLS records produced by TLS itself, to write after what was written before."""
        return self._outgoing.read()

    def close_notify(self) -> bytes:
        """End the session: return the close_notify alert to write last."""
        with contextlib.suppress(ssl_module.SSLError):
            self._obj.unwrap()
        return self._outgoing.read()


class TLSStream:
    """Blocking reads and writes of plaintext through a :class:`TLS` session over ``sock``,
    for the exchanges that run before a connection starts: a proxy's answer to CONNECT, and
    the server's TLS handshake inside the proxy's TLS.

    Args:
        sock: the socket to the peer of ``tls``.
        tls: the TLS session; the stream is its only user until the connection starts.
    """

    def __init__(self, sock: socket.socket, tls: TLS) -> None:
        self._sock = sock
        self._tls = tls

    def sendall(self, data: bytes, /) -> None:
        """Encrypt ``data`` and write it all."""
        self._sock.sendall(self._tls.encrypt([data]))

    def recv(self, size: int, /) -> bytes:
        """Return the next plaintext (any size: ``size`` is a hint), ``b""`` at the end."""
        plain = self._tls.decrypt(b"")  # what arrived with earlier records
        while not plain and not self._tls.eof:
            data = self._sock.recv(max(size, READ_SIZE))
            if not data:
                break
            plain = self._tls.decrypt(data)
            pending = self._tls.pending()
            if pending:
                self._sock.sendall(pending)
        return plain

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


class TunnelTLS:
    """TLS inside TLS: the session with the server (``inner``) carried by the session with an
    ``https://`` proxy (``outer``). Used as a :class:`TLS` by the connection.

    Args:
        outer: the TLS session with the proxy.
        inner: the TLS session with the server, after its handshake.
    """

    def __init__(self, outer: TLS, inner: TLS) -> None:
        self._outer = outer
        self._inner = inner

    @property
    def eof(self) -> bool:
        """Whether the server or the proxy ended its session."""
        return self._inner.eof or self._outer.eof

    @property
    def version(self) -> str | None:
        """The TLS version negotiated with the server."""
        return self._inner.version

    def encrypt(self, chunks: Sequence[Buffer]) -> bytes:
        """Encrypt ``chunks`` for the server, then for the proxy."""
        return self._outer.encrypt([self._inner.encrypt(chunks)])

    def decrypt(self, data: Buffer) -> bytes:
        """Decrypt the proxy's records, then the server's records they carry."""
        return self._inner.decrypt(self._outer.decrypt(data))

    def pending(self) -> bytes:
        """Records either session produced by itself, the server's inside the proxy's."""
        inner = self._inner.pending()
        return (self._outer.encrypt([inner]) if inner else b"") + self._outer.pending()

    def close_notify(self) -> bytes:
        """End both sessions: the server's close_notify inside the proxy's, then the proxy's."""
        inner = self._inner.close_notify()
        return (self._outer.encrypt([inner]) if inner else b"") + self._outer.close_notify()
