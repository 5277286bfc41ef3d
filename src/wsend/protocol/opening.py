"""The opening handshake's negotiation, for both I/O layers (asyncio and threads); no I/O.

:mod:`~wsend.protocol.handshake` builds and checks the messages; this module decides what they
offer and accept from a client's or server's settings, and makes the sans-I/O
:class:`~wsend.protocol.connection.Connection` the handshake opens:

- Client: :class:`ClientHandshake` is one attempt: send its :attr:`~ClientHandshake.request`,
  parse the answer, then follow it if it :meth:`~ClientHandshake.redirects` or
  :meth:`~ClientHandshake.accept` it (RFC 6455 section 4.1; RFC 7692 section 5 for
  permessage-deflate).
- Server: :class:`ServerNegotiation`, mixed into both layers' server connections, chooses the
  subprotocol and extensions of an upgrade request and builds the 101 response (RFC 6455
  section 4.2.2).
- Both: :func:`new_protocol`, and checks of the ``connect`` and ``serve`` arguments:
  :func:`deflate_setting` (``compression``), :func:`check_tls_setting` (a client's ``ssl``),
  :func:`hook_list` (a server's ``process_request``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..exceptions import NegotiationError
from . import handshake
from .connection import Connection, Side
from .deflate import ClientDeflate, PerMessageDeflate, ServerDeflate
from .http import Headers, HeadersLike, Request, Response

__all__ = [
    "REDIRECT_STATUSES",
    "ClientHandshake",
    "ServerNegotiation",
    "check_tls_setting",
    "deflate_setting",
    "hook_list",
    "new_protocol",
    "with_credentials",
]

#: The statuses whose Location a client follows (RFC 9110 section 15.4).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_Deflate = TypeVar("_Deflate", ClientDeflate, ServerDeflate)
_Hook = TypeVar("_Hook")


class SizeLimits(Protocol):
    """The message and frame size limits of a connection (``ConnectionOptions`` has them)."""

    @property
    def max_message_size(self) -> int | None: ...

    @property
    def max_frame_size(self) -> int | None: ...


class Target(Protocol):
    """Where a client connects (a ``WebSocketURI``)."""

    @property
    def secure(self) -> bool: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def resource(self) -> str: ...

    @property
    def user(self) -> str | None: ...

    @property
    def password(self) -> str | None: ...


class ClientSettings(Protocol):
    """What a client offers in its opening handshake (a ``connect`` object has it)."""

    @property
    def origin(self) -> str | None: ...

    @property
    def subprotocols(self) -> Sequence[str]: ...

    @property
    def deflate(self) -> ClientDeflate | None: ...

    @property
    def user_agent(self) -> str | None: ...


class ServerSettings(Protocol):
    """What a server accepts in opening handshakes (a ``Server`` has it)."""

    @property
    def deflate(self) -> ServerDeflate | None: ...

    @property
    def subprotocols(self) -> Sequence[str]: ...

    @property
    def select_subprotocol(self) -> Callable[[Any, list[str]], str | None] | None: ...

    @property
    def require_subprotocol(self) -> bool: ...

    @property
    def extra_headers(self) -> HeadersLike | None: ...

    @property
    def server_header(self) -> str | None: ...


def new_protocol(side: Side, deflate: PerMessageDeflate | None, limits: SizeLimits) -> Connection:
    """The sans-I/O connection a completed handshake opens.

    Its failures are deferred (``defer_failure``): the I/O layers deliver the messages that
    came before a peer's error first.
    """
    return Connection(
        side,
        max_message_size=limits.max_message_size,
        max_frame_size=limits.max_frame_size,
        deflate=deflate,
        defer_failure=True,
    )


def deflate_setting(compression: str | _Deflate | None, kind: type[_Deflate]) -> _Deflate | None:
    """The permessage-deflate settings for a ``compression`` argument.

    Args:
        compression: ``"deflate"`` for the default settings, ``None`` for no compression, or
            an instance of ``kind`` with custom settings.
        kind: :class:`~wsend.protocol.deflate.ClientDeflate` or
            :class:`~wsend.protocol.deflate.ServerDeflate`.

    Raises:
        ValueError: ``compression`` is none of those.
    """
    if compression == "deflate":
        return kind()
    if compression is None or isinstance(compression, kind):
        return compression
    raise ValueError(f"unsupported compression: {compression!r}")


def check_tls_setting(ssl: object, secure: bool) -> None:
    """Check a client's ``ssl`` argument against its URI's scheme.

    Raises:
        ValueError: TLS settings for a ``ws://`` URI, or ``ssl=False`` for a ``wss://`` one.
    """
    if ssl is not None and ssl is not False and not secure:
        raise ValueError("ssl is only for wss:// URIs")
    if ssl is False and secure:
        raise ValueError("wss:// URIs need TLS: pass an SSLContext, or use ws://")


def hook_list(hooks: _Hook | Sequence[_Hook] | None) -> list[_Hook]:
    """A server's ``process_request`` argument (one hook, several, or none) as a list."""
    if hooks is None:
        return []
    if callable(hooks):
        return [hooks]
    return list(hooks)  # type: ignore[arg-type]


def with_credentials(uri: Target, headers: Headers) -> Headers:
    """A copy of ``headers`` with the URI's ``user:password`` as Basic credentials, unless
    they set ``Authorization`` already (RFC 7617)."""
    headers = headers.copy()
    if uri.user is not None and "Authorization" not in headers:
        assert uri.password is not None
        headers["Authorization"] = handshake.build_basic_auth(uri.user, uri.password)
    return headers


class ClientHandshake:
    """One attempt at the client's opening handshake (RFC 6455 section 4.1).

    Args:
        uri: where the request goes (its Host and request-target).
        headers: more request headers (see :func:`~wsend.protocol.handshake.build_request`).
        settings: the origin, subprotocols, permessage-deflate offer and User-Agent.

    Raises:
        ValueError: ``headers`` sets a header the handshake owns, or a value is invalid.
    """

    __slots__ = ("deflate", "key", "request", "subprotocols")

    def __init__(self, uri: Target, headers: Headers, settings: ClientSettings) -> None:
        self.key = handshake.generate_key()
        self.subprotocols = settings.subprotocols
        self.deflate = settings.deflate
        offer = None
        if self.deflate is not None:
            offer = handshake.build_extensions([("permessage-deflate", self.deflate.offer())])
        #: The request to send.
        self.request: Request = handshake.build_request(
            host=uri.host,
            port=uri.port,
            secure=uri.secure,
            resource=uri.resource,
            key=self.key,
            origin=settings.origin,
            subprotocols=self.subprotocols,
            extensions=offer,
            extra_headers=headers,
            user_agent=settings.user_agent,
        )

    @staticmethod
    def redirects(response: Response) -> bool:
        """Whether ``response`` is a redirect to follow (a 3xx with a Location)."""
        return response.status in REDIRECT_STATUSES and "Location" in response.headers

    def accept(
        self, response: Response, limits: SizeLimits
    ) -> tuple[str | None, list[str], Connection]:
        """Check the server's answer; return the subprotocol, the extensions and the
        sans-I/O connection that now runs.

        Raises:
            InvalidHandshake: see :func:`~wsend.protocol.handshake.check_response`.
            NegotiationError: the server accepted an extension that wasn't offered, or
                permessage-deflate with parameters the offer doesn't allow (RFC 7692 section 5).
        """
        subprotocol, accepted = handshake.check_response(
            response, key=self.key, subprotocols=self.subprotocols
        )
        negotiated = None
        extensions: list[str] = []
        for name, params in accepted:
            if name != "permessage-deflate" or self.deflate is None or negotiated is not None:
                raise NegotiationError(f"unexpected extension {name!r} in the response")
            negotiated = self.deflate.accept(params)
            extensions = [name]
        return subprotocol, extensions, new_protocol(Side.CLIENT, negotiated, limits)


class ServerNegotiation:
    """The server side's choices in the opening handshake, for a server connection.

    Mixed into the asyncio and threading ``ServerConnection``: it reads the settings of
    :attr:`server` and :attr:`options`, and records what it chose in :attr:`protocol`,
    :attr:`extensions`, ``_deflate`` and ``_protocol`` (the sans-I/O connection to start once
    the 101 response is sent).
    """

    server: ServerSettings
    protocol: str | None
    extensions: list[str]
    _deflate: PerMessageDeflate | None
    _protocol: Connection | None

    if TYPE_CHECKING:

        @property
        def options(self) -> SizeLimits: ...

    def _accept_upgrade(self, request: Request, key: str) -> Response:
        """Negotiate the subprotocol and extensions of ``request`` (checked already, its
        key ``key``); return the 101 response to send.

        Raises:
            NegotiationError: no acceptable subprotocol (see :meth:`_choose_subprotocol`).
        """
        self.protocol = self._choose_subprotocol(request)
        extensions = self._negotiate_extensions(request)
        self._protocol = self._new_protocol()
        return handshake.build_accept(
            request,
            key,
            subprotocol=self.protocol,
            extensions=extensions,
            extra_headers=self.server.extra_headers,
            server=self.server.server_header,
        )

    def _new_protocol(self) -> Connection:
        """The sans-I/O connection for the negotiated settings (see _negotiate_extensions)."""
        return new_protocol(Side.SERVER, self._deflate, self.options)

    def _choose_subprotocol(self, request: Request) -> str | None:
        """The server's ``select_subprotocol`` hook's choice, or the first of its
        ``subprotocols`` that the client offered.

        Raises:
            NegotiationError: the hook chose one that wasn't offered, or none is supported
                and the server requires one.
        """
        offered = handshake.parse_subprotocols(request.headers)
        select = self.server.select_subprotocol
        if select is not None:
            chosen = select(self, offered)
            if chosen is not None and chosen not in offered:
                raise NegotiationError(f"selected subprotocol {chosen!r} was not offered")
            return chosen
        supported = self.server.subprotocols
        if not supported:
            return None
        chosen = handshake.select_subprotocol(offered, supported)
        if chosen is None and self.server.require_subprotocol:
            raise NegotiationError("no supported subprotocol offered")
        return chosen

    def _negotiate_extensions(self, request: Request) -> str | None:
        """Accept the first permessage-deflate offer the server's settings allow; return the
        Sec-WebSocket-Extensions value of the response (``None``: no extension)."""
        self._deflate = None
        factory = self.server.deflate
        if factory is None:
            return None
        for name, params in handshake.parse_extensions(request.headers):
            if name != "permessage-deflate":
                continue
            result = factory.negotiate(params)
            if result is not None:
                response_params, self._deflate = result
                self.extensions = [name]
                return handshake.build_extensions([(name, response_params)])
        return None
