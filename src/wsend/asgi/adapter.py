"""ASGI WebSocket messages to and from wsend's types, without I/O (ASGI spec 2.4).

What an ASGI server layer needs besides the connection itself: the scope built from the
opening handshake's :class:`~wsend.protocol.http.Request`, the ``websocket.disconnect``
event, the payload of ``websocket.send``, the subprotocol and headers of
``websocket.accept``, the arguments of ``websocket.close``, and the HTTP response of the
``websocket.http.response`` denial extension. The I/O lives in :mod:`wsend.asgi.uvicorn`
(which builds ``websocket.receive`` events inline, on its hot path).

Spec: https://asgi.readthedocs.io/en/latest/specs/www.html#websocket (version 2.4).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any

from ..exceptions import UsageError
from ..protocol import handshake
from ..protocol.frames import Close, CloseCode, is_valid_close_code
from ..protocol.http import Headers, Request, Response

__all__ = [
    "EXTENSIONS",
    "SPEC_VERSION",
    "Denial",
    "accept_options",
    "build_scope",
    "close_options",
    "disconnect_event",
    "message_data",
]

#: The version of the ASGI HTTP & WebSocket specification implemented.
SPEC_VERSION = "2.4"
#: The ASGI extensions every scope advertises: the denial response.
EXTENSIONS = ("websocket.http.response",)

Scope = dict[str, Any]
Message = dict[str, Any]
RawHeaders = Iterable[tuple[bytes, bytes]]
Address = tuple[str, int] | tuple[str, int | None] | None

# Statuses whose responses carry no body (RFC 9110 sections 15.3.5 and 15.4.5).
_BODILESS = frozenset({204, 304})


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
        The scope, with ``extensions`` advertising ``websocket.http.response``. Header names
        are lowercased; names and values are bytes as received (ISO-8859-1).

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
        "extensions": {name: {} for name in EXTENSIONS},
    }


def disconnect_event(
    rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None
) -> Message:
    """The ``websocket.disconnect`` event of a connection that closed (or is closing).

    The code and reason are those of whoever started the closing handshake: the peer's (1005
    when its close frame had no code), or ours when the server or the application closed first
    (the application's own code, 1009 for a message too big, 1002 for a protocol error, 1012 on
    shutdown...). Without any close frame the connection was lost: 1006.
    """
    close = sent if sent is not None and (rcvd is None or rcvd_then_sent is False) else rcvd
    if close is None:
        return {"type": "websocket.disconnect", "code": CloseCode.ABNORMAL_CLOSURE, "reason": ""}
    return {"type": "websocket.disconnect", "code": close.code, "reason": close.reason}


def message_data(message: Message) -> str | bytes | bytearray | memoryview:
    """The payload of a ``websocket.send`` message: ``bytes`` if set, else ``text``.

    Raises:
        UsageError: neither ``bytes`` (bytes-like) nor ``text`` (``str``) is set.
    """
    data = message.get("bytes")
    if data is None:
        data = message.get("text")
        if type(data) is str:
            return data
    elif isinstance(data, bytes | bytearray | memoryview):
        return data
    raise UsageError("websocket.send needs bytes in 'bytes' or a str in 'text'")


def close_options(message: Message) -> tuple[int, str]:
    """The code and reason of a ``websocket.close`` message (1000 and ``""`` by default).

    Raises:
        UsageError: the code may not be sent in a close frame (RFC 6455 section 7.4), or the
            reason is not a ``str`` of at most 123 bytes in UTF-8.
    """
    code = message.get("code")
    if code is None:
        code = CloseCode.NORMAL_CLOSURE
    reason = message.get("reason") or ""
    if not isinstance(code, int) or isinstance(code, bool) or not is_valid_close_code(code):
        raise UsageError(f"websocket.close has a code that can't be sent: {code!r}")
    if not isinstance(reason, str) or len(reason.encode()) > 123:
        raise UsageError("websocket.close needs a reason of at most 123 bytes in UTF-8")
    return int(code), reason


def _decode_headers(headers: RawHeaders, where: str) -> list[tuple[str, str]]:
    """ASGI headers (byte pairs) as ``str`` pairs; HTTP header bytes are ISO-8859-1.

    Raises:
        UsageError: ``headers`` is not an iterable of pairs of bytes.
    """
    try:
        return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the headers of {where} must be pairs of bytes: {exc}") from exc


def _headers(default: RawHeaders, extra: RawHeaders, where: str) -> Headers:
    """``default`` then ``extra`` headers, both kept where names repeat (as uvicorn does).

    Raises:
        UsageError: a header is not a pair of bytes, or not a valid header field.
    """
    try:
        return Headers(_decode_headers(default, where) + _decode_headers(extra, where))
    except ValueError as exc:
        raise UsageError(f"invalid header in {where}: {exc}") from exc


def accept_options(
    message: Message, request: Request, default_headers: RawHeaders = ()
) -> tuple[str | None, Headers]:
    """The subprotocol and extra headers that a ``websocket.accept`` message asks for.

    ``default_headers`` (the server's: Server, Date) come first, then the message's headers,
    duplicates kept, as uvicorn's own WebSocket layers do. A ``Sec-WebSocket-Protocol``
    header in the message's headers is taken as the subprotocol when the message names none
    (some applications set it so); it is never sent twice.

    Raises:
        UsageError: the headers are not byte pairs or not valid header fields, or the
            subprotocol was not offered by the client (RFC 6455 section 4.2.2: it would fail
            the handshake).
    """
    subprotocol = message.get("subprotocol")
    headers = _headers(default_headers, message.get("headers") or (), "websocket.accept")
    chosen = headers.get("Sec-WebSocket-Protocol")
    if chosen is not None:
        del headers["Sec-WebSocket-Protocol"]
        subprotocol = subprotocol or chosen
    if subprotocol is not None:
        offered = handshake.parse_subprotocols(request.headers)
        if subprotocol not in offered:
            raise UsageError(
                f"websocket.accept chose subprotocol {subprotocol!r}, which the client didn't "
                f"offer (offered: {offered})"
            )
    return subprotocol, headers


class Denial:
    """The HTTP response an application sends instead of accepting (denial extension).

    Feed it ``websocket.http.response.start`` then ``websocket.http.response.body``
    messages; :meth:`body` returns the complete response once the last body part came. The
    body is kept until then: the response is sent whole, with its real Content-Length (a
    Content-Length or Transfer-Encoding from the application is replaced).
    """

    __slots__ = ("_body", "_headers", "status")

    def __init__(self, message: Message) -> None:
        """Start the response from its ``websocket.http.response.start`` message.

        Raises:
            UsageError: the status is not 200-599 (a 1xx would mislead the client), or a
                header is invalid.
        """
        status = message.get("status")
        if type(status) is not int or not 200 <= status < 600:
            raise UsageError(f"invalid HTTP status in websocket.http.response.start: {status!r}")
        self.status = status
        self._headers = _headers((), message.get("headers") or (), "websocket.http.response")
        for name in ("Content-Length", "Transfer-Encoding"):
            if name in self._headers:
                del self._headers[name]
        self._body = bytearray()

    def body(self, message: Message) -> Response | None:
        """Add a ``websocket.http.response.body`` part; the response once it is the last.

        Raises:
            UsageError: ``body`` is not bytes, or a 204 or 304 response gets one.
        """
        body = message.get("body", b"")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise UsageError("websocket.http.response.body needs bytes in 'body'")
        if body and self.status in _BODILESS:
            raise UsageError(f"a {self.status} response can't have a body")
        self._body += body
        if message.get("more_body", False):
            return None
        return self.response()

    def response(self) -> Response:
        """The response with the body received so far (Content-Type: text/plain by default)."""
        headers = self._headers.copy()
        if "Content-Type" not in headers and self.status not in _BODILESS:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        return Response(self.status, headers, bytes(self._body))
