"""ASGI WebSocket messages to and from wsend's types, without I/O (ASGI spec 2.4).

What an ASGI server layer needs besides the connection itself: the scope built from the
opening handshake's :class:`~wsend.protocol.http.Request`, the ``websocket.receive`` and
``websocket.disconnect`` events, the 101 response for ``websocket.accept``, and the HTTP
response of the ``websocket.http.response`` denial extension. The I/O lives in
:mod:`wsend.asgi.uvicorn`.

Spec: https://asgi.readthedocs.io/en/latest/specs/www.html#websocket (version 2.4).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any

from ..exceptions import UsageError
from ..protocol import handshake
from ..protocol.frames import Close, CloseCode
from ..protocol.http import Headers, Request, Response

__all__ = [
    "SPEC_VERSION",
    "Denial",
    "accept_options",
    "build_scope",
    "disconnect_event",
    "receive_event",
]

#: The version of the ASGI HTTP & WebSocket specification implemented.
SPEC_VERSION = "2.4"

Scope = dict[str, Any]
Message = dict[str, Any]
RawHeaders = Iterable[tuple[bytes, bytes]]
Address = tuple[str, int] | None


def build_scope(
    request: Request,
    *,
    scheme: str,
    client: Address,
    server: Address,
    root_path: str = "",
    asgi_version: str = "3.0",
    state: dict[str, Any] | None = None,
) -> Scope:
    """The ``websocket`` connection scope of an opening handshake request.

    Args:
        request: the checked upgrade request.
        scheme: ``"ws"`` or ``"wss"``.
        client, server: the peer's and our ``(host, port)``, or ``None`` when unknown.
        root_path: where the application is mounted; prefixed to ``path`` and ``raw_path``,
            as uvicorn does.
        asgi_version: the ASGI interface version of the application (``"3.0"`` or ``"2.0"``).
        state: the lifespan state; the scope gets a shallow copy (ASGI lifespan spec).

    Returns:
        The scope, with ``extensions`` advertising ``websocket.http.response``.

    Raises:
        InvalidHeader: Sec-WebSocket-Protocol is malformed (the caller answers 400).
    """
    raw_path, _, query = request.target.partition("?")
    return {
        "type": "websocket",
        "asgi": {"version": asgi_version, "spec_version": SPEC_VERSION},
        "http_version": request.http_version,
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": root_path,
        "path": root_path + urllib.parse.unquote(raw_path),
        "raw_path": (root_path + raw_path).encode("latin-1"),
        "query_string": query.partition("#")[0].encode("latin-1"),
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
        ],
        "subprotocols": handshake.parse_subprotocols(request.headers),
        "state": {} if state is None else state.copy(),
        "extensions": {"websocket.http.response": {}},
    }


def receive_event(message: str | bytes) -> Message:
    """The ``websocket.receive`` event of a message: ``text`` for ``str``, ``bytes`` else."""
    if type(message) is str:
        return {"type": "websocket.receive", "text": message}
    return {"type": "websocket.receive", "bytes": message}


def disconnect_event(
    rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None
) -> Message:
    """The ``websocket.disconnect`` event of a connection that closed (or is closing).

    The code is the one of whoever started the closing handshake: the peer's (1005 when its
    close frame had none), or ours when the server or the application closed first (the
    application's own code, 1009 for a message too big, 1012 on shutdown...). Without any
    close frame, the connection was lost: 1006.
    """
    close = sent if sent is not None and (rcvd is None or rcvd_then_sent is False) else rcvd
    if close is None:
        return {"type": "websocket.disconnect", "code": CloseCode.ABNORMAL_CLOSURE, "reason": ""}
    return {"type": "websocket.disconnect", "code": close.code, "reason": close.reason}


def _decode_headers(headers: RawHeaders) -> list[tuple[str, str]]:
    """ASGI headers (byte pairs) as ``str`` pairs; HTTP header bytes are ISO-8859-1."""
    try:
        return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]
    except (TypeError, ValueError) as exc:
        raise UsageError(f"ASGI headers must be pairs of bytes: {exc}") from exc


def accept_options(
    message: Message, default_headers: RawHeaders = ()
) -> tuple[str | None, Headers]:
    """The subprotocol and extra headers that a ``websocket.accept`` message asks for.

    ``default_headers`` (the server's: Server, Date) come first; the message's headers
    replace those of the same name. A ``Sec-WebSocket-Protocol`` header in the message's
    headers is taken as the subprotocol when the message names none (some applications set
    it so); it is never sent twice.

    Raises:
        UsageError: the headers are not byte pairs, or not valid header fields.
    """
    subprotocol = message.get("subprotocol")
    try:
        headers = Headers(_decode_headers(default_headers))
        headers.update(_decode_headers(message.get("headers") or ()))
    except ValueError as exc:
        raise UsageError(f"invalid header in websocket.accept: {exc}") from exc
    chosen = headers.get("Sec-WebSocket-Protocol")
    if chosen is not None:
        del headers["Sec-WebSocket-Protocol"]
        subprotocol = subprotocol or chosen
    return subprotocol, headers


class Denial:
    """The HTTP response an application sends instead of accepting (denial extension).

    Feed it ``websocket.http.response.start`` then ``websocket.http.response.body``
    messages; :meth:`body` returns the complete response once the last body part came.
    The body is kept until then: the response is sent whole, with Content-Length.
    """

    __slots__ = ("_body", "_headers", "status")

    def __init__(self, message: Message, default_headers: RawHeaders = ()) -> None:
        """Start the response from its ``websocket.http.response.start`` message.

        Raises:
            UsageError: the status is not 100-599 or a header is invalid.
        """
        status = message.get("status")
        if type(status) is not int or not 100 <= status < 600:
            raise UsageError(f"invalid HTTP status in websocket.http.response.start: {status!r}")
        self.status = status
        try:
            self._headers = Headers(_decode_headers(default_headers))
            self._headers.update(_decode_headers(message.get("headers") or ()))
        except ValueError as exc:
            raise UsageError(f"invalid header in websocket.http.response.start: {exc}") from exc
        self._body = bytearray()

    def body(self, message: Message) -> Response | None:
        """Add a ``websocket.http.response.body`` part; the response once it is the last.

        Raises:
            UsageError: ``body`` is not bytes.
        """
        body = message.get("body", b"")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise UsageError("websocket.http.response.body needs bytes in 'body'")
        self._body += body
        if message.get("more_body", False):
            return None
        headers = self._headers
        if "Content-Type" not in headers:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        return Response(self.status, headers, bytes(self._body))
