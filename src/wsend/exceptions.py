"""Every exception wsend raises.

One base class, :class:`WebSocketError`. Errors caused by the peer (a malformed frame, a refused
handshake, a closed connection) are kept apart from errors caused by local misuse of the API
(:class:`UsageError`). Exceptions carry data, not only text: a :class:`ConnectionClosed` holds the
close frames sent and received, an :class:`InvalidStatus` holds the HTTP response.

.. code-block:: text

    WebSocketError
    ├── InvalidURI                      (also ValueError)
    ├── InvalidProxy                    (also ValueError) a proxy URL is invalid
    ├── InvalidHandshake                the opening handshake failed
    │   ├── ProxyError                  the proxy did not open a tunnel to the server
    │   │   ├── ProxyConnectionError    (also OSError) the proxy can't be reached (TCP or TLS)
    │   │   ├── ProxyRefused            the proxy refused the tunnel (HTTP status, SOCKS reply)
    │   │   │   └── ProxyAuthenticationRequired   407, or SOCKS authentication failed
    │   │   └── InvalidProxyMessage     the proxy's answer isn't valid HTTP or SOCKS
    │   ├── InvalidMessage              malformed or oversized HTTP message
    │   ├── InvalidStatus               the server answered something other than 101
    │   ├── InvalidHeader               a header is missing or wrong
    │   │   ├── InvalidUpgrade          Upgrade / Connection are not a WebSocket upgrade
    │   │   ├── InvalidOrigin           Origin is not allowed
    │   │   ├── InvalidHost             Host is not allowed (answered with 421)
    │   │   └── InvalidVersion          Sec-WebSocket-Version is not 13 (answered with 426)
    │   ├── NegotiationError            subprotocol or extension negotiation failed
    │   ├── RequestRejected             the server application refused the request
    │   └── TooManyRedirects
    ├── ProtocolError                   the peer broke RFC 6455 / 7692 (close code 1002)
    │   ├── InvalidPayload              invalid UTF-8 or close payload (close code 1007)
    │   ├── PayloadTooBig               a frame or message exceeds a limit (close code 1009)
    │   └── InvalidYMessage             a malformed Yjs message (close code 1002, 1003 or 1007)
    ├── ConnectionClosed                the connection is closed (carries the close frames)
    │   ├── ConnectionClosedOK          ... with 1000, 1001 or no code on both sides
    │   └── ConnectionClosedError       ... abnormally, or with an error code
    ├── OpenTimeout                     the opening handshake took too long (also TimeoutError)
    └── UsageError                      local misuse of the API (also RuntimeError)
        └── ConcurrencyError            two coroutines read, or stream-send, at once
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol.frames import Close
    from .protocol.http import Headers

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHost",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidPayload",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "InvalidVersion",
    "InvalidYMessage",
    "NegotiationError",
    "OpenTimeout",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyAuthenticationRequired",
    "ProxyConnectionError",
    "ProxyError",
    "ProxyRefused",
    "RequestRejected",
    "TooManyRedirects",
    "UsageError",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base class of every exception raised by wsend."""


class InvalidURI(WebSocketError, ValueError):
    """A URI is not a valid ``ws://`` or ``wss://`` URI."""

    def __init__(self, uri: str, msg: str) -> None:
        self.uri = uri
        self.msg = msg
        super().__init__(f"{uri!r} isn't a valid WebSocket URI: {msg}")


class InvalidProxy(WebSocketError, ValueError):
    """A proxy URL is invalid or names an unsupported scheme.

    The message never repeats the URL's password.
    """

    def __init__(self, proxy: str, msg: str) -> None:
        self.proxy = proxy
        self.msg = msg
        super().__init__(f"{_hide_password(proxy)!r} isn't a valid proxy URL: {msg}")


def _hide_password(url: str) -> str:
    """``url`` with the password of its userinfo, if any, replaced by ``***``."""
    scheme, sep, rest = url.rpartition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}{slash}{path}"


class InvalidHandshake(WebSocketError):
    """The opening handshake failed.

    ``status`` is the HTTP status a server answers with when it detects this error.
    """

    status: int = 400


class InvalidMessage(InvalidHandshake):
    """An HTTP message is malformed or exceeds a limit (``status`` says which: 400, 414, 431)."""

    def __init__(self, msg: str, status: int = 400) -> None:
        self.status = status
        super().__init__(msg)


class InvalidStatus(InvalidHandshake):
    """The server answered the opening handshake with a status other than 101.

    Attributes:
        status_code: the HTTP status code.
        headers: the response headers.
        body: the response body (possibly truncated to a limit).
    """

    def __init__(self, status_code: int, headers: Headers, body: bytes = b"") -> None:
        self.status_code = status_code
        self.status = status_code
        self.headers = headers
        self.body = body
        super().__init__(f"server rejected WebSocket connection: HTTP {status_code}")


class InvalidHeader(InvalidHandshake):
    """A required header is missing, or a header has an invalid value."""

    def __init__(self, name: str, value: str | None = None, msg: str | None = None) -> None:
        self.name = name
        self.value = value
        if msg is None:
            msg = f"missing {name} header" if value is None else f"invalid {name} header: {value!r}"
        super().__init__(msg)


class InvalidUpgrade(InvalidHeader):
    """The request or response is not a WebSocket upgrade (a server answers 426)."""

    status = 426


class InvalidOrigin(InvalidHeader):
    """The Origin header is missing or not allowed (a server answers 403)."""

    status = 403


class InvalidHost(InvalidHeader):
    """The Host header names a host the server doesn't serve (a server answers 421
    Misdirected Request, RFC 9110 section 15.5.20)."""

    status = 421


class InvalidVersion(InvalidHeader):
    """Sec-WebSocket-Version is not 13 (a server answers 426 naming version 13)."""

    status = 426


class NegotiationError(InvalidHandshake):
    """Subprotocol or extension negotiation failed."""


class RequestRejected(InvalidHandshake):
    """The server application refused the opening handshake."""

    def __init__(self, status: int, msg: str = "request rejected") -> None:
        self.status = status
        super().__init__(msg)


class TooManyRedirects(InvalidHandshake):
    """The client followed more redirects than allowed."""


class ProxyError(InvalidHandshake):
    """The proxy did not open a tunnel to the server; see the subclasses."""


class ProxyConnectionError(ProxyError, OSError):
    """The proxy can't be reached: the TCP connection or, for an ``https://`` proxy, the TLS
    handshake with it failed (the cause is chained). Also an :class:`OSError`, as a failed
    direct connection is.
    """


class ProxyRefused(ProxyError):
    """The proxy answered but refused to open the tunnel.

    Attributes:
        status_code: the HTTP status of an HTTP proxy's answer to CONNECT (403, 502...), or
            ``None`` for a SOCKS proxy.
        headers: that answer's headers (``Proxy-Authenticate``...), or ``None``.
        reply: a SOCKS proxy's reply code (RFC 1928 section 6: 2 not allowed by the rules,
            5 connection refused...; SOCKS4: 91...), or ``None``.
    """

    def __init__(
        self,
        msg: str,
        *,
        status_code: int | None = None,
        headers: Headers | None = None,
        reply: int | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.reply = reply
        super().__init__(msg)


class ProxyAuthenticationRequired(ProxyRefused):
    """The proxy wants credentials, or refused those given: an HTTP proxy answered 407
    (``headers["Proxy-Authenticate"]`` says which scheme; some proxies answer 401), or a SOCKS5
    proxy failed the username/password authentication (RFC 1929).
    """


class InvalidProxyMessage(ProxyError):
    """The proxy's answer isn't valid HTTP or SOCKS, or it closed the connection without one."""


class ProtocolError(WebSocketError):
    """The peer violated the WebSocket protocol. The connection is failed with code 1002."""


class InvalidPayload(ProtocolError):
    """A text message or close reason is not valid UTF-8, or a close payload is invalid (1007)."""


class PayloadTooBig(ProtocolError):
    """A frame or a message (after decompression) exceeds the configured limit (1009)."""


class InvalidYMessage(ProtocolError):
    """A message of the Yjs endpoint breaks the y-protocols format (``wsend.hub.yjs``).

    Attributes:
        code: the close code the server sends: 1002 for a malformed message (a truncated
            varint, an unknown type, bytes left over), 1003 for a text message, 1007 for
            content of the wrong kind (an awareness state that isn't JSON, an update Yjs
            can't decode).
    """

    def __init__(self, reason: str, code: int = 1002) -> None:
        self.code = code
        super().__init__(reason)


class ConnectionClosed(WebSocketError):
    """Raised when using a connection that is closed.

    Attributes:
        rcvd: the close frame received from the peer, or ``None`` if none arrived.
        sent: the close frame sent to the peer, or ``None`` if none was sent.
        rcvd_then_sent: whether the peer started the closing handshake (``None`` if unknown).
    """

    def __init__(
        self,
        rcvd: Close | None,
        sent: Close | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.rcvd is None and self.sent is None:
            return "no close frame received or sent"
        if self.rcvd is None:
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"

    @property
    def code(self) -> int:
        """The close code received, 1005 when the frame had none, 1006 when none arrived."""
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason received, or an empty string."""
        return "" if self.rcvd is None else self.rcvd.reason


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: 1000, 1001 or no code (1005) in both close frames."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code, or without a closing handshake."""


class OpenTimeout(WebSocketError, TimeoutError):
    """The opening handshake did not complete within ``open_timeout``."""


class UsageError(WebSocketError, RuntimeError):
    """The API was misused locally (for example, sending on a connection not yet open)."""


class ConcurrencyError(UsageError):
    """Two coroutines tried to read, or to stream a fragmented message, at the same time."""
