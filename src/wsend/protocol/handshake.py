"""The WebSocket opening handshake, client and server side (RFC 6455 section 4).

Sans-I/O: functions build and check :class:`~wsend.protocol.http.Request` and
:class:`~wsend.protocol.http.Response` objects; moving the bytes is the caller's job.

Client: :func:`build_request`, send it, parse the answer with
:class:`~wsend.protocol.http.ResponseParser`, then :func:`check_response`.

Server: parse with :class:`~wsend.protocol.http.RequestParser`, :func:`check_request` (and
:func:`check_origin` if origins are restricted), :func:`select_subprotocol`, then
:func:`build_accept`; on any :class:`~wsend.exceptions.InvalidHandshake`, answer
:func:`response_for_error` and close.

Also here: parsers and builders for the header values involved (RFC 7230 section 7 lists,
RFC 6455 section 9.1 extensions, RFC 7617 Basic and RFC 6750 Bearer credentials).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import http
import importlib.metadata
import re
import secrets
from collections.abc import Sequence

from ..exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidStatus,
    InvalidUpgrade,
    InvalidVersion,
    NegotiationError,
    RequestRejected,
)
from .http import Headers, HeadersLike, Request, Response

__all__ = [
    "GUID",
    "SERVER",
    "USER_AGENT",
    "VERSION",
    "ExtensionHeader",
    "accept_key",
    "build_accept",
    "build_basic_auth",
    "build_extensions",
    "build_reject",
    "build_request",
    "check_origin",
    "check_request",
    "check_response",
    "generate_key",
    "parse_basic_auth",
    "parse_bearer",
    "parse_connection",
    "parse_extensions",
    "parse_subprotocols",
    "parse_tokens",
    "response_for_error",
    "select_subprotocol",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The magic string of RFC 6455 section 1.3, appended to the key to compute the accept value."""

VERSION = "13"
"""The only WebSocket version (RFC 6455 section 4.1)."""

ExtensionHeader = list[tuple[str, list[tuple[str, str | None]]]]
"""Parsed extensions: ``[(name, [(param, value or None), ...]), ...]``, in header order."""


def _version() -> str:
    try:
        return importlib.metadata.version("wsend")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0"


USER_AGENT = f"wsend/{_version()}"
"""Default User-Agent of the client."""

SERVER = USER_AGENT
"""Default Server header of the server."""

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS_RE = re.compile(r"[ \t]*")
# RFC 7230 section 3.2.6: quoted-string with quoted-pairs.
_QUOTED_RE = re.compile(r'"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)"')
_QUOTED_PAIR_RE = re.compile(r"\\(.)")
# RFC 7235 section 2.1: token68.
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# Headers a caller may not set through extra_headers: they carry the handshake itself.
_CLIENT_PROTECTED = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)
_SERVER_PROTECTED = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)
# Longest error detail put in a rejection body.
_MAX_DETAIL = 200


# Keys (RFC 6455 section 4.1 and 4.2.2)


def generate_key() -> str:
    """Return a new Sec-WebSocket-Key: 16 random bytes, base64-encoded (RFC 6455 section 4.1)."""
    return base64.b64encode(secrets.token_bytes(16)).decode()


def accept_key(key: str) -> str:
    """Return the Sec-WebSocket-Accept value for ``key`` (RFC 6455 section 4.2.2, step 5.4)."""
    digest = hashlib.sha1((key + GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


# Header values


def parse_tokens(values: Sequence[str], *, name: str = "header") -> list[str]:
    """Parse comma-separated lists of tokens spread over several fields (RFC 7230 section 7).

    Empty elements are skipped; case is kept.

    Args:
        values: the values of every field of one name (``headers.get_all(name)``).
        name: the header name, for error messages.

    Raises:
        InvalidHeader: an element is not a token.
    """
    tokens: list[str] = []
    for value in values:
        for element in value.split(","):
            element = element.strip(" \t")
            if not element:
                continue
            if not _TOKEN_RE.fullmatch(element):
                raise InvalidHeader(name, value)
            tokens.append(element)
    return tokens


def parse_connection(headers: Headers) -> set[str]:
    """Return the lowercased options of every Connection field.

    Raises:
        InvalidHeader: the value is not a list of tokens.
    """
    return {t.lower() for t in parse_tokens(headers.get_all("Connection"), name="Connection")}


def parse_subprotocols(headers: Headers) -> list[str]:
    """Return the subprotocols of every Sec-WebSocket-Protocol field, in order, case kept.

    Raises:
        InvalidHeader: the value is not a list of tokens (RFC 6455 section 11.3.4).
    """
    name = "Sec-WebSocket-Protocol"
    return parse_tokens(headers.get_all(name), name=name)


def parse_extensions(headers: Headers) -> ExtensionHeader:
    """Return the extensions of every Sec-WebSocket-Extensions field (RFC 6455 section 9.1).

    Parameter values may be tokens or quoted-strings; after unquoting, a value must be a token.

    Returns:
        ``[(name, [(param, value or None), ...]), ...]`` in the order offered.

    Raises:
        InvalidHeader: a value does not follow the grammar.
    """
    extensions: ExtensionHeader = []
    for value in headers.get_all("Sec-WebSocket-Extensions"):
        extensions.extend(_parse_extension_list(value))
    return extensions


def _parse_extension_list(value: str) -> ExtensionHeader:
    extensions: ExtensionHeader = []
    pos = _skip_ows(value, 0)
    while pos < len(value):
        if value[pos] == ",":  # empty list element
            pos = _skip_ows(value, pos + 1)
            continue
        name, pos = _parse_token(value, pos)
        params: list[tuple[str, str | None]] = []
        while pos < len(value) and value[pos] == ";":
            param, pos = _parse_param(value, _skip_ows(value, pos + 1))
            params.append(param)
        extensions.append((name, params))
        if pos < len(value) and value[pos] != ",":
            raise _extension_error(value)
    return extensions


def _parse_param(value: str, pos: int) -> tuple[tuple[str, str | None], int]:
    """Parse ``token [= (token | quoted-string)]`` at ``pos``; return it and the next position."""
    name, pos = _parse_token(value, pos)
    if not value.startswith("=", pos):
        return (name, None), pos
    pos = _skip_ows(value, pos + 1)
    match = _QUOTED_RE.match(value, pos)
    if match is None:
        token, pos = _parse_token(value, pos)
        return (name, token), pos
    unquoted = _QUOTED_PAIR_RE.sub(r"\1", match.group(1))
    if not _TOKEN_RE.fullmatch(unquoted):
        raise _extension_error(value)
    return (name, unquoted), _skip_ows(value, match.end())


def _parse_token(value: str, pos: int) -> tuple[str, int]:
    """Parse a token at ``pos``; return it and the position after it and any OWS."""
    match = _TOKEN_RE.match(value, pos)
    if match is None:
        raise _extension_error(value)
    return match.group(), _skip_ows(value, match.end())


def _skip_ows(value: str, pos: int) -> int:
    match = _OWS_RE.match(value, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _extension_error(value: str) -> InvalidHeader:
    return InvalidHeader("Sec-WebSocket-Extensions", value)


def build_extensions(extensions: ExtensionHeader) -> str:
    """Return a Sec-WebSocket-Extensions value, e.g. ``"permessage-deflate; server_no_context"``.

    Raises:
        ValueError: a name or a parameter value is not a token (RFC 6455 section 9.1).
    """
    parts = []
    for name, params in extensions:
        items = [name] + [p if v is None else f"{p}={v}" for p, v in params]
        for item in [name, *(p for p, _ in params), *(v for _, v in params if v is not None)]:
            if not _TOKEN_RE.fullmatch(item):
                raise ValueError(f"not a token in an extension: {item!r}")
        parts.append("; ".join(items))
    return ", ".join(parts)


def build_basic_auth(username: str, password: str) -> str:
    """Return an Authorization value for Basic credentials (RFC 7617, UTF-8).

    Raises:
        ValueError: ``username`` contains a colon (it couldn't be told from the password).
    """
    if ":" in username:
        raise ValueError("a Basic auth username can't contain ':'")
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {credentials}"


def parse_basic_auth(value: str) -> tuple[str, str]:
    """Return ``(username, password)`` from a Basic Authorization value (RFC 7617).

    Raises:
        InvalidHeader: not Basic credentials, or not base64 of UTF-8 ``user:password``. The
            message never repeats the credentials.
    """
    token = _parse_credentials(value, "basic")
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _auth_error("invalid Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise _auth_error("invalid Basic credentials")
    return username, password


def parse_bearer(value: str) -> str:
    """Return the token of a Bearer Authorization value (RFC 6750 section 2.1).

    Raises:
        InvalidHeader: not a Bearer token68. The message never repeats the token.
    """
    return _parse_credentials(value, "bearer")


def _parse_credentials(value: str, scheme: str) -> str:
    found, _, token = value.strip(" \t").partition(" ")
    token = token.strip(" ")
    if found.lower() != scheme:
        raise _auth_error(f"expected {scheme.capitalize()} credentials")
    if not _TOKEN68_RE.fullmatch(token):
        raise _auth_error(f"invalid {scheme.capitalize()} credentials")
    return token


def _auth_error(msg: str) -> InvalidHeader:
    return InvalidHeader("Authorization", None, msg)


# Client side (RFC 6455 section 4.1)


def build_request(
    *,
    host: str,
    port: int,
    secure: bool,
    resource: str,
    key: str,
    origin: str | None = None,
    subprotocols: Sequence[str] = (),
    extensions: str | None = None,
    extra_headers: HeadersLike | None = None,
    user_agent: str | None = USER_AGENT,
) -> Request:
    """Build the client's opening handshake request (RFC 6455 section 4.1).

    Args:
        host: the host name or IP address (an IPv6 address is bracketed in Host).
        port: the port; omitted from Host when it is the default (80, or 443 if ``secure``).
        secure: whether the connection uses TLS (``wss://``).
        resource: the request-target, path and query, e.g. ``"/chat?room=1"``.
        key: the Sec-WebSocket-Key, from :func:`generate_key`; keep it for
            :func:`check_response`.
        origin: the Origin header, if any.
        subprotocols: subprotocols offered, in order of preference.
        extensions: the Sec-WebSocket-Extensions value offered (see :func:`build_extensions`).
        extra_headers: more headers; one named like a default (Host, Origin, User-Agent)
            replaces it.
        user_agent: the User-Agent value; ``None`` sends none.

    Raises:
        ValueError: ``extra_headers`` sets Upgrade, Connection, Sec-WebSocket-Key,
            Sec-WebSocket-Version, -Protocol or -Extensions (use the arguments: the response is
            checked against them), or a value is invalid.
    """
    headers = Headers([("Host", _host_header(host, port, secure))])
    headers.add("Upgrade", "websocket")
    headers.add("Connection", "Upgrade")
    headers.add("Sec-WebSocket-Key", key)
    headers.add("Sec-WebSocket-Version", VERSION)
    _add_optional(headers, "Origin", origin)
    _add_optional(headers, "Sec-WebSocket-Protocol", ", ".join(subprotocols) or None)
    _add_optional(headers, "Sec-WebSocket-Extensions", extensions)
    _add_optional(headers, "User-Agent", user_agent)
    _merge_extra(headers, extra_headers, _CLIENT_PROTECTED)
    return Request("GET", resource, headers)


def _host_header(host: str, port: int, secure: bool) -> str:
    if ":" in host and not host.startswith("["):  # IPv6 literal (RFC 3986 section 3.2.2)
        host = f"[{host}]"
    elif not host.isascii():
        host = host.encode("idna").decode()
    return host if port == (443 if secure else 80) else f"{host}:{port}"


def _add_optional(headers: Headers, name: str, value: str | None) -> None:
    if value is not None:
        headers.add(name, value)


def _merge_extra(headers: Headers, extra: HeadersLike | None, protected: frozenset[str]) -> None:
    if extra is None:
        return
    extra = Headers(extra)
    for name in extra:
        if name.lower() in protected:
            raise ValueError(f"{name} can't be set in extra headers")
    headers.update(extra)


def check_response(
    response: Response, *, key: str, subprotocols: Sequence[str]
) -> tuple[str | None, ExtensionHeader]:
    """Check the server's answer to the opening handshake (RFC 6455 section 4.1, client steps).

    Args:
        response: the parsed response.
        key: the Sec-WebSocket-Key that was sent.
        subprotocols: the subprotocols that were offered.

    Returns:
        The subprotocol chosen by the server (or ``None``) and the extensions it accepted, which
        the caller must check against its offer (failing if one was not offered).

    Raises:
        InvalidStatus: the status is not 101 (it carries the headers and body).
        InvalidUpgrade: Upgrade is not ``websocket`` or Connection lacks ``upgrade``.
        InvalidHeader: Sec-WebSocket-Accept is missing or wrong, or Sec-WebSocket-Extensions or
            Sec-WebSocket-Protocol are malformed.
        NegotiationError: the server chose several subprotocols or one that wasn't offered.
    """
    if response.status != 101:
        raise InvalidStatus(response.status, response.headers, response.body)
    headers = response.headers
    upgrade, connection = _upgrade_options(headers)
    if upgrade != ["websocket"]:  # exactly this, section 4.1, client step 2
        raise _upgrade_error(headers, "Upgrade")
    if "upgrade" not in connection:
        raise _upgrade_error(headers, "Connection")
    accept = _single(headers, "Sec-WebSocket-Accept")
    if accept != accept_key(key):
        raise InvalidHeader("Sec-WebSocket-Accept", accept)
    return _chosen_subprotocol(headers, subprotocols), parse_extensions(headers)


def _upgrade_options(headers: Headers) -> tuple[list[str], set[str]]:
    """Return the lowercased Upgrade protocols and Connection options.

    Raises:
        InvalidUpgrade: one of them isn't a list of tokens.
    """
    try:
        upgrade = parse_tokens(headers.get_all("Upgrade"), name="Upgrade")
        connection = parse_connection(headers)
    except InvalidHeader as exc:
        raise InvalidUpgrade(exc.name, exc.value) from exc
    return [u.lower() for u in upgrade], connection


def _upgrade_error(headers: Headers, name: str) -> InvalidUpgrade:
    return InvalidUpgrade(name, ", ".join(headers.get_all(name)) or None)


def _single(headers: Headers, name: str, error: type[InvalidHeader] = InvalidHeader) -> str:
    """Return the value of the one field ``name``; raise ``error`` if absent or repeated."""
    values = headers.get_all(name)
    if not values:
        raise error(name)
    if len(values) > 1:
        raise error(name, ", ".join(values), f"more than one {name} header")
    return values[0]


def _chosen_subprotocol(headers: Headers, offered: Sequence[str]) -> str | None:
    chosen = parse_subprotocols(headers)
    if not chosen:
        return None
    if len(chosen) > 1:
        raise NegotiationError(f"server chose several subprotocols: {', '.join(chosen)}")
    if chosen[0] not in offered:
        raise NegotiationError(f"server chose a subprotocol that wasn't offered: {chosen[0]}")
    return chosen[0]


# Server side (RFC 6455 section 4.2)


def check_request(request: Request) -> str:
    """Check a client's opening handshake request (RFC 6455 section 4.2.1).

    Args:
        request: the parsed request.

    Returns:
        The Sec-WebSocket-Key, to pass to :func:`build_accept`.

    Raises:
        InvalidMessage: the method isn't GET (status 405; :func:`response_for_error` adds
            ``Allow: GET``) or the version isn't HTTP/1.1 (505).
        InvalidUpgrade: Upgrade lacks ``websocket`` or Connection lacks ``upgrade`` (426).
        InvalidHeader: Host is missing or repeated, or Sec-WebSocket-Key is missing, repeated,
            or not base64 of 16 bytes (400).
        InvalidVersion: Sec-WebSocket-Version is missing or not 13 (426, answered with
            ``Sec-WebSocket-Version: 13``).
    """
    if request.method != "GET":
        raise InvalidMessage(f"WebSocket handshake requires GET, not {request.method}", 405)
    if request.http_version != "1.1":
        raise InvalidMessage("WebSocket handshake requires HTTP/1.1", 505)
    _check_upgrade(request.headers)
    _single(request.headers, "Host")
    key = _single(request.headers, "Sec-WebSocket-Key")
    if not _is_valid_key(key):
        raise InvalidHeader("Sec-WebSocket-Key", key)
    version = _single(request.headers, "Sec-WebSocket-Version", InvalidVersion)
    if version.strip(" \t") != VERSION:
        raise InvalidVersion("Sec-WebSocket-Version", version)
    return key


def _check_upgrade(headers: Headers) -> None:
    upgrade, connection = _upgrade_options(headers)
    if "websocket" not in upgrade:  # "containing", section 4.2.1 step 3
        raise _upgrade_error(headers, "Upgrade")
    if "upgrade" not in connection:
        raise _upgrade_error(headers, "Connection")


def _is_valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("latin-1"), validate=True)) == 16
    except binascii.Error:
        return False


def check_origin(request: Request, origins: Sequence[str | re.Pattern[str] | None]) -> None:
    """Check the Origin header against the allowed origins (RFC 6455 section 10.2).

    Args:
        request: the parsed request.
        origins: allowed origins. A string matches exactly, ignoring case (origins are
            ``scheme://host[:port]``, where case doesn't matter); a compiled pattern must
            ``fullmatch``; ``None`` allows requests without Origin (non-browser clients).
            An empty sequence allows nothing.

    Raises:
        InvalidOrigin: Origin is missing (and ``None`` isn't allowed), repeated or not allowed
            (status 403).
    """
    values = request.headers.get_all("Origin")
    if len(values) > 1:
        raise InvalidOrigin("Origin", ", ".join(values), "more than one Origin header")
    if not values:
        if None in origins:
            return
        raise InvalidOrigin("Origin")
    origin = values[0]
    for allowed in origins:
        if isinstance(allowed, str) and allowed.lower() == origin.lower():
            return
        if isinstance(allowed, re.Pattern) and allowed.fullmatch(origin):
            return
    raise InvalidOrigin("Origin", origin)


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """Return the first of ``supported`` (the server's preference) that the client offered."""
    return next((s for s in supported if s in offered), None)


def build_accept(
    request: Request,
    key: str,
    *,
    subprotocol: str | None = None,
    extensions: str | None = None,
    extra_headers: HeadersLike | None = None,
    server: str | None = SERVER,
) -> Response:
    """Build the 101 response accepting the handshake (RFC 6455 section 4.2.2, step 5).

    Args:
        request: the checked request.
        key: the key returned by :func:`check_request`.
        subprotocol: the subprotocol chosen, which the client must have offered.
        extensions: the Sec-WebSocket-Extensions value accepted, if any.
        extra_headers: more headers; one named Server or Date replaces the default.
        server: the Server header value; ``None`` sends none.

    Returns:
        The response; after sending it, the connection speaks WebSocket.

    Raises:
        ValueError: ``subprotocol`` wasn't offered, or ``extra_headers`` sets Upgrade,
            Connection, Sec-WebSocket-Accept, -Protocol or -Extensions.
    """
    if subprotocol is not None and subprotocol not in parse_subprotocols(request.headers):
        raise ValueError(f"the client didn't offer subprotocol {subprotocol!r}")
    headers = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade")])
    headers.add("Sec-WebSocket-Accept", accept_key(key))
    _add_optional(headers, "Sec-WebSocket-Protocol", subprotocol)
    _add_optional(headers, "Sec-WebSocket-Extensions", extensions)
    _add_optional(headers, "Server", server)
    _merge_extra(headers, extra_headers, _SERVER_PROTECTED)
    return Response(101, headers)


def build_reject(
    status: int, body: str | bytes = "", headers: HeadersLike | None = None
) -> Response:
    """Build a response refusing the handshake; the server closes the connection after it.

    Args:
        status: the HTTP status.
        body: a plain text body; by default the status phrase.
        headers: more headers, replacing the defaults of the same name.

    Returns:
        A ``text/plain`` response with ``Connection: close`` and Date; a 426 also says
        ``Upgrade: websocket`` and ``Sec-WebSocket-Version: 13`` (RFC 6455 section 4.4).
    """
    if not body:
        body = f"{_phrase(status)}\n"
    data = body.encode() if isinstance(body, str) else body
    defaults = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close")])
    if status == 426:
        defaults.add("Upgrade", "websocket")
        defaults.add("Sec-WebSocket-Version", VERSION)
    if headers is not None:
        defaults.update(headers)
    return Response.bytes(status, data, "text/plain; charset=utf-8", defaults)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def response_for_error(exc: InvalidHandshake) -> Response:
    """Return the response a server sends when the handshake fails with ``exc``.

    The status is ``exc.status``: 400 by default, 403 for :class:`InvalidOrigin`, 426 (with
    ``Sec-WebSocket-Version: 13``) for :class:`InvalidUpgrade` and :class:`InvalidVersion`,
    413, 414, 431, 505 or 405 (with ``Allow: GET``) for :class:`InvalidMessage`. The body
    describes the protocol error, shortened, and never includes internal details: errors other
    than malformed requests and refusals get only the status phrase.
    """
    status = exc.status
    headers = Headers([("Allow", "GET")]) if status == 405 else None
    detail = _phrase(status)
    if isinstance(exc, InvalidMessage | InvalidHeader | NegotiationError | RequestRejected):
        detail = str(exc)
        if len(detail) > _MAX_DETAIL:
            detail = detail[: _MAX_DETAIL - 3] + "..."
    return build_reject(status, f"Failed to open a WebSocket connection: {detail}.\n", headers)
