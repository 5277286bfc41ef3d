"""HTTP/1.1 messages and incremental parsers for the opening handshake (RFC 7230).

Sans-I/O: :class:`RequestParser` and :class:`ResponseParser` take bytes and return a
:class:`Request` or :class:`Response` once one is complete. Parsing is delegated to
``httptools`` (the llhttp parser); this module adds the limits, the exact position where the
message ends (the bytes after an upgrade are the first WebSocket frames) and the translation of
every parser error into :class:`~wsend.exceptions.InvalidMessage`.

Scope, by design:

* Only the first message on a connection is parsed: no keep-alive, no pipelining. Once a message
  is complete, the bytes that follow are in ``leftover`` and the parser accepts no more data.
* Requests: HTTP/1.0 and HTTP/1.1 are accepted (plain HTTP routes may serve HTTP/1.0 clients;
  the WebSocket handshake itself requires 1.1 and checks it), any other version is rejected with
  505. Bodies are read by ``Content-Length`` or ``Transfer-Encoding: chunked`` (llhttp decodes
  the chunks), up to :attr:`HTTPLimits.max_body_size`. An upgrade request (``Upgrade`` plus
  ``Connection: upgrade``) completes at the end of its headers.
* Responses: a 101 response completes at the end of its headers. Other bodies are read by
  ``Content-Length``, chunked coding, or until :meth:`ResponseParser.feed_eof`; a body longer
  than ``max_body_size`` is truncated and the response completes at the limit (the client only
  wants it for an error message and closes the connection next).
* Header names and values and the request-target are decoded as ISO-8859-1, which maps each
  byte to one character and back, so nothing the peer sends makes decoding fail.
"""

from __future__ import annotations

import builtins
import http
import http.cookies
import json as jsonlib
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import httptools

from ..exceptions import InvalidMessage, UsageError

# Header names and values that every WebSocket handshake repeats, decoded once and shared by
# every connection's headers: idle connections keep their request, so this saves memory.
_COMMON_NAMES = {
    name.encode(): name
    for name in (
        "Host",
        "Upgrade",
        "Connection",
        "Origin",
        "User-Agent",
        "Cookie",
        "Authorization",
        "Pragma",
        "Cache-Control",
        "Accept-Encoding",
        "Accept-Language",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Accept",
        "Content-Length",
        "Content-Type",
        "Server",
        "Date",
        "Location",
        "WWW-Authenticate",
    )
}
_COMMON_VALUES = {
    value.encode(): value
    for value in (
        "websocket",
        "Upgrade",
        "upgrade",
        "13",
        "no-cache",
        "gzip, deflate, br, zstd",
        "gzip, deflate, br",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate",
    )
}

__all__ = [
    "HTTPLimits",
    "Headers",
    "HeadersLike",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
]

# RFC 7230 section 3.2.6: token = 1*tchar.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Characters that would split or truncate a header line (header injection).
_FORBIDDEN_VALUE_RE = re.compile(r"[\r\n\x00]")
# The request-target must not contain whitespace or control characters.
_FORBIDDEN_TARGET_RE = re.compile(r"[\x00-\x20\x7f]")
# RFC 7230 section 3.1.2: reason-phrase = *( HTAB / SP / VCHAR / obs-text ).
_INVALID_REASON_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Statuses that never carry a body (RFC 7230 section 3.3.3).
_NO_BODY_STATUSES = frozenset({204, 304})
_ACCEPTED_VERSIONS = frozenset({"1.0", "1.1"})
_END_OF_HEAD = b"\r\n\r\n"
# Whitespace, ":" and CRLF around one header field beyond its name and value, tolerated before a
# field that is still being received counts as oversized.
_FIELD_SLACK = 256
# The head is fed to llhttp in segments of at most this size, so that a field still being received
# is noticed as oversized within this many bytes of the limit, whatever the size of the chunks.
_HEAD_SEGMENT = 1024


class Headers:
    """A case-insensitive multi-dict of header fields, in the order they were added.

    Names keep the case they were given in; lookups ignore case. ``len()`` and iteration count
    every field, duplicates included (iteration yields names).

    Args:
        items: initial fields, as ``(name, value)`` pairs, a mapping, or another ``Headers``.

    Raises:
        ValueError: a name is not an RFC 7230 token, or a value contains CR, LF or NUL, or a
            character outside ISO-8859-1 (this rules out header injection).
    """

    __slots__ = ("_items",)

    def __init__(self, items: HeadersLike | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        if items is not None:
            for name, value in _iter_items(items):
                self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping the fields already present under that name.

        Raises:
            ValueError: the name or the value is invalid (see the class docstring).
        """
        self._items.append((_check_name(name), _check_value(value)))

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every field named ``name`` by one field, at the place of the first one."""
        item = (_check_name(name), _check_value(value))
        key = name.lower()
        index = next((i for i, (n, _) in enumerate(self._items) if n.lower() == key), None)
        self._items = [(n, v) for n, v in self._items if n.lower() != key]
        self._items.insert(len(self._items) if index is None else index, item)

    def __getitem__(self, name: str) -> str:
        """Return the first value of ``name``.

        Raises:
            KeyError: there is no such field.
        """
        key = name.lower()
        for n, v in self._items:
            if n.lower() == key:
                return v
        raise KeyError(name)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of ``name``, or ``default``."""
        try:
            return self[name]
        except KeyError:
            return default

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in order (an empty list when there is none)."""
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(n.lower() == key for n, _ in self._items)

    def __delitem__(self, name: str) -> None:
        """Remove every field named ``name``.

        Raises:
            KeyError: there is no such field.
        """
        if name not in self:
            raise KeyError(name)
        key = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, _ in self._items])

    def items(self) -> list[tuple[str, str]]:
        """Return every ``(name, value)`` pair, duplicates included, in order."""
        return list(self._items)

    def copy(self) -> Headers:
        """Return a shallow copy."""
        other = Headers()
        other._items = list(self._items)
        return other

    def update(self, items: HeadersLike) -> None:
        """Replace the fields named in ``items`` by the values given there (all of them).

        Names absent from ``items`` are kept. Unlike :meth:`add`, this is ``dict.update``-like.

        Raises:
            ValueError: a name or a value is invalid.
        """
        new = Headers(items)
        names = {n.lower() for n in new}
        self._items = [(n, v) for n, v in self._items if n.lower() not in names]
        self._items.extend(new._items)

    def serialize(self) -> builtins.bytes:
        """Return the fields as ``Name: value\\r\\n`` lines (without the final empty line)."""
        return b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in self._items)

    def _grouped(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for n, v in self._items:
            grouped.setdefault(n.lower(), []).append(v)
        return grouped

    def __eq__(self, other: object) -> bool:
        """Equal when both hold the same values per name (ignoring case and order across names)."""
        if not isinstance(other, Headers):
            return NotImplemented
        return self._grouped() == other._grouped()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


HeadersLike: TypeAlias = Headers | Mapping[str, str] | Iterable[tuple[str, str]]
"""What every function taking headers accepts."""


def _iter_items(items: HeadersLike) -> Iterable[tuple[str, str]]:
    if isinstance(items, Headers):
        return items.items()
    if isinstance(items, Mapping):
        return items.items()
    return items


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
        raise ValueError(f"invalid header name: {name!r}")
    return name


def _check_value(value: str) -> str:
    if not isinstance(value, str) or _FORBIDDEN_VALUE_RE.search(value):
        raise ValueError(f"invalid header value: {value!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"header value isn't ISO-8859-1: {value!r}") from None
    return value


def _with_content_length(headers: Headers, body: builtins.bytes, always: bool) -> Headers:
    """Return ``headers`` plus Content-Length when it is missing and needed."""
    if "Content-Length" in headers or "Transfer-Encoding" in headers or not (body or always):
        return headers
    headers = headers.copy()
    headers.add("Content-Length", str(len(body)))
    return headers


@dataclass
class Request:
    """An HTTP request.

    Attributes:
        method: the method, e.g. ``"GET"``.
        target: the request-target as sent, e.g. ``"/chat?room=1"`` (RFC 7230 section 5.3).
        headers: the header fields.
        body: the body, after removing any chunked coding.
        http_version: ``"1.1"`` or ``"1.0"``.
    """

    method: str
    target: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    http_version: str = "1.1"

    @property
    def path(self) -> str:
        """The target without its query; percent-decoding is *not* applied."""
        target = self.target
        if not target.startswith("/") and "://" in target:  # absolute-form
            target = urllib.parse.urlsplit(target).path or "/"
        return target.partition("?")[0].partition("#")[0]

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parameters, decoded, blank values kept (``urllib.parse.parse_qs``)."""
        query = self.target.partition("?")[2].partition("#")[0]
        return urllib.parse.parse_qs(query, keep_blank_values=True)

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies of every Cookie field (RFC 6265 section 5.4); the first one of a name wins.

        Pairs that are not ``name=value`` with a token name are skipped; this never raises.
        """
        cookies: dict[str, str] = {}
        decoder = http.cookies.SimpleCookie()
        for header in self.headers.get_all("Cookie"):
            for pair in header.split(";"):
                name, sep, value = pair.partition("=")
                name = name.strip()
                if sep and _TOKEN_RE.fullmatch(name) and name not in cookies:
                    cookies[name] = decoder.value_decode(value.strip())[0]
        return cookies

    @property
    def host(self) -> str | None:
        """The value of the Host field, or ``None``."""
        return self.headers.get("Host")

    def serialize(self) -> bytes:
        """Return the request as bytes; adds Content-Length when there is a body without it.

        Raises:
            ValueError: the method is not a token or the target contains whitespace or controls.
        """
        if not _TOKEN_RE.fullmatch(self.method):
            raise ValueError(f"invalid method: {self.method!r}")
        if not self.target or _FORBIDDEN_TARGET_RE.search(self.target):
            raise ValueError(f"invalid request-target: {self.target!r}")
        headers = _with_content_length(self.headers, self.body, always=False)
        line = f"{self.method} {self.target} HTTP/{self.http_version}\r\n".encode("latin-1")
        return line + headers.serialize() + b"\r\n" + self.body


@dataclass
class Response:
    """An HTTP response.

    Attributes:
        status: the status code.
        headers: the header fields.
        body: the body (after removing any chunked coding; possibly truncated by the parser).
        reason: the reason phrase; defaults to the standard phrase of ``status``.
        http_version: ``"1.1"`` or ``"1.0"``.
    """

    status: int
    headers: Headers = field(default_factory=Headers)
    body: builtins.bytes = b""
    reason: str = ""
    http_version: str = "1.1"

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = _phrase(self.status)

    def serialize(self) -> builtins.bytes:
        """Return the response as bytes, adding Content-Length when it is missing.

        Content-Length is added unless the status is 1xx, 204 or 304 (which carry no body) or
        the headers already hold Content-Length or Transfer-Encoding.

        Raises:
            ValueError: the status is not 100-999, the reason contains CR/LF, or a 1xx, 204 or
                304 response has a body.
        """
        if not 100 <= self.status <= 999 or _FORBIDDEN_VALUE_RE.search(self.reason):
            raise ValueError(f"invalid status line: {self.status} {self.reason!r}")
        bodiless = self.status < 200 or self.status in _NO_BODY_STATUSES
        if bodiless and self.body:
            raise ValueError(f"a {self.status} response can't have a body")
        headers = _with_content_length(self.headers, self.body, always=not bodiless)
        line = f"HTTP/{self.http_version} {self.status} {self.reason}\r\n".encode("latin-1")
        return line + headers.serialize() + b"\r\n" + self.body

    @classmethod
    def bytes(
        cls,
        status: int,
        data: builtins.bytes,
        content_type: str,
        headers: HeadersLike | None = None,
    ) -> Response:
        """Return a response with ``data`` as body; ``headers`` override the defaults."""
        merged = Headers([("Content-Type", content_type)])
        if headers is not None:
            merged.update(headers)
        return cls(status, merged, data)

    @classmethod
    def text(cls, status: int, text: str, headers: HeadersLike | None = None) -> Response:
        """Return a ``text/plain; charset=utf-8`` response."""
        return cls.bytes(status, text.encode(), "text/plain; charset=utf-8", headers)

    @classmethod
    def html(cls, status: int, html: str, headers: HeadersLike | None = None) -> Response:
        """Return a ``text/html; charset=utf-8`` response."""
        return cls.bytes(status, html.encode(), "text/html; charset=utf-8", headers)

    @classmethod
    def json(cls, status: int, obj: object, headers: HeadersLike | None = None) -> Response:
        """Return an ``application/json`` response with ``obj`` encoded compactly.

        Raises:
            TypeError: ``obj`` is not JSON-serializable.
        """
        data = jsonlib.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        return cls.bytes(status, data, "application/json", headers)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


@dataclass(frozen=True)
class HTTPLimits:
    """Size limits applied while parsing, before anything unbounded is buffered.

    Attributes:
        max_request_line: length of the request-target (the method is one of llhttp's fixed
            set); over it: 414. For responses it bounds the reason phrase (400).
        max_headers: number of header fields; over it: 431.
        max_header_size: bytes of one field, name plus value; over it: 431.
        max_total_header_size: bytes of all names and values; over it: 431.
        max_body_size: body bytes; a request over it is rejected with 413 (as soon as a
            Content-Length announces it); a response body is truncated to it.
    """

    # 8 KiB is the common ceiling: nginx (large_client_header_buffers 4 8k: a request line
    # beyond one 8 KiB buffer gets 414), Apache LimitRequestLine 8190, aiohttp max_line_size
    # 8190, websockets MAX_LINE_LENGTH 8192.
    max_request_line: int = 8192
    # Apache LimitRequestFields and Gunicorn limit_request_fields default to 100; websockets
    # allows 128. A browser's handshake sends about 15.
    max_headers: int = 100
    # nginx caps one field at one 8 KiB buffer, Apache LimitRequestFieldSize and aiohttp
    # max_field_size are 8190, websockets caps a line at 8192.
    max_header_size: int = 8192
    # nginx allows 4 x 8 KiB for the whole head and Node 16 KiB (--max-http-header-size); 64 KiB
    # leaves room for large cookie sets while bounding memory per pending handshake.
    max_total_header_size: int = 65536
    # 1 MiB: nginx client_max_body_size 1m, aiohttp client_max_size 1 MiB, websockets
    # MAX_BODY_SIZE 1 MiB for handshake responses.
    max_body_size: int = 1 << 20


class _StopParsing(Exception):
    """Raised from a callback to abort llhttp; the reason is kept on the parser."""


class _Parser:
    """What request and response parsing share: segmentation, limits and error translation.

    Input is fed to llhttp in segments that end at every possible message end: after each
    ``CRLF CRLF`` (end of the head, or of a chunked body) and after exactly the bytes remaining
    of a Content-Length body. A message can only complete at the end of a segment, so the
    bytes after it are known exactly without llhttp reporting an offset.
    """

    def __init__(self, limits: HTTPLimits) -> None:
        self.limits = limits
        self.leftover = b""
        self._headers = Headers()
        self._body = bytearray()
        self._received = False
        self._head_done = False
        self._complete = False
        self._truncated = False
        self._error: InvalidMessage | None = None
        self._tail = b""  # last bytes fed, to find CRLF CRLF across segments
        self._pending = 0  # bytes fed since the parser last reported progress in the head
        self._head_size = 0
        self._remaining: int | None = None  # body bytes left by Content-Length
        self._parser: httptools.HttpRequestParser | httptools.HttpResponseParser

    # llhttp callbacks

    def on_message_begin(self) -> None:
        if self._complete:  # never expected: segments end where messages end
            raise _StopParsing

    def on_header(self, name: builtins.bytes, value: builtins.bytes) -> None:
        self._pending = 0
        size = len(name) + len(value)
        self._head_size += size
        if len(self._headers) >= self.limits.max_headers:
            self._fail("too many header fields", 431)
        if size > self.limits.max_header_size:
            self._fail("header field too large", 431)
        if self._head_size > self.limits.max_total_header_size:
            self._fail("header section too large", 431)
        try:
            self._headers.add(
                _COMMON_NAMES.get(name) or name.decode("latin-1"),
                _COMMON_VALUES.get(value) or value.decode("latin-1").rstrip(" \t"),
            )
        except ValueError:
            self._fail("invalid header field", 400)

    def on_headers_complete(self) -> None:
        self._head_done = True
        version = self._parser.get_http_version()
        if version not in _ACCEPTED_VERSIONS:
            self._fail(f"unsupported HTTP version: {version}", 505)
        length = self._headers.get("Content-Length")
        if length is not None and length.isdigit():
            self._remaining = int(length)
        self._check_head()

    def on_body(self, body: builtins.bytes) -> None:
        if self._remaining is not None:
            self._remaining -= len(body)
        room = self.limits.max_body_size - len(self._body)
        if len(body) > room:
            self._body_too_large()
            body = body[:room]
        self._body += body

    def on_message_complete(self) -> None:
        self._complete = True

    # hooks for subclasses

    def _check_head(self) -> None:
        """Validate the head once complete; may call :meth:`_fail`."""

    def _body_too_large(self) -> None:
        """React to a body growing over max_body_size."""

    def _build(self) -> Request | Response:
        raise NotImplementedError

    # driving llhttp

    def _fail(self, msg: str, status: int) -> None:
        self._error = InvalidMessage(msg, status)
        raise _StopParsing

    def _feed(self, data: builtins.bytes | bytearray | memoryview) -> Request | Response | None:
        if self._complete:
            raise UsageError("the HTTP message is already complete")
        if self._error is not None:
            raise self._error
        data = builtins.bytes(data)
        self._received = self._received or bool(data)
        pos = 0
        while pos < len(data) and not (self._complete or self._truncated):
            end = self._segment_end(data, pos)
            self._feed_segment(data, pos, end)
            pos = end
        if not (self._complete or self._truncated):
            return None
        self._complete = True
        self.leftover = b"" if self._truncated else data[pos:]
        return self._build()

    def _segment_end(self, data: builtins.bytes, pos: int) -> int:
        """Return where the segment starting at ``pos`` ends (see the class docstring)."""
        if self._head_done and self._remaining:
            return min(len(data), pos + self._remaining)
        window = self._tail + data[pos : pos + 3]
        index = window.find(_END_OF_HEAD)
        if index != -1:
            return pos + index + 4 - len(self._tail)
        index = data.find(_END_OF_HEAD, pos)
        end = len(data) if index == -1 else index + 4
        return end if self._head_done else min(end, pos + _HEAD_SEGMENT)

    def _feed_segment(self, data: builtins.bytes, start: int, end: int) -> None:
        self._tail = (self._tail + data[max(start, end - 3) : end])[-3:]
        if not self._head_done:
            self._pending += end - start
        try:
            self._parser.feed_data(memoryview(data)[start:end])
        except httptools.HttpParserUpgrade:
            pass  # the message completed at the end of this segment
        except httptools.HttpParserError as exc:
            self._raise_parser_error(exc)
        if not self._head_done and self._pending > self.limits.max_header_size + _FIELD_SLACK:
            self._error = InvalidMessage("header field too large", 431)
            raise self._error

    def _raise_parser_error(self, exc: httptools.HttpParserError) -> None:
        if self._complete:
            return  # llhttp pauses after an upgrade completes: not an error
        if self._error is None:
            self._error = InvalidMessage(f"invalid HTTP message: {exc}", 400)
        raise self._error from exc


class RequestParser(_Parser):
    """Incremental parser of the first HTTP request on a connection (server side).

    Args:
        limits: the size limits; see :class:`HTTPLimits`.

    Attributes:
        leftover: once the request is complete, the bytes received after it (after an upgrade
            request, the first WebSocket frames).
    """

    def __init__(self, limits: HTTPLimits = HTTPLimits()) -> None:
        super().__init__(limits)
        self._target = bytearray()
        self._parser = httptools.HttpRequestParser(self)

    def feed(self, data: builtins.bytes | bytearray | memoryview) -> Request | None:
        """Parse more bytes; return the request once it is complete, else ``None``.

        Args:
            data: the next bytes from the connection (any split is fine).

        Returns:
            The :class:`Request`, exactly once; ``leftover`` then holds the bytes after it.

        Raises:
            InvalidMessage: the request is malformed (400), its target is too long (414), its
                header section exceeds a limit (431), its body exceeds ``max_body_size`` (413)
                or its version is not HTTP/1.0 or 1.1 (505). Further calls raise it again.
            UsageError: the request was already returned.
        """
        result = self._feed(data)
        assert result is None or isinstance(result, Request)
        return result

    def on_url(self, url: builtins.bytes) -> None:
        self._pending = 0
        self._target += url
        if len(self._target) > self.limits.max_request_line:
            self._fail("request-target too long", 414)

    def _check_head(self) -> None:
        length = self._remaining
        too_large = length is not None and length > self.limits.max_body_size
        if too_large and not self._parser.should_upgrade():
            self._fail("request body too large", 413)

    def _body_too_large(self) -> None:
        self._fail("request body too large", 413)

    def _build(self) -> Request:
        assert isinstance(self._parser, httptools.HttpRequestParser)
        return Request(
            method=self._parser.get_method().decode("latin-1"),
            target=self._target.decode("latin-1"),
            headers=self._headers,
            body=builtins.bytes(self._body),
            http_version=self._parser.get_http_version(),
        )


class ResponseParser(_Parser):
    """Incremental parser of the HTTP response to the opening handshake (client side).

    Args:
        limits: the size limits; see :class:`HTTPLimits` (``max_request_line`` bounds the
            reason phrase; ``max_body_size`` truncates the body).
        head_only: complete every response at the end of its head, whatever its status and
            headers say of a body: for the answer to CONNECT, where a 2xx starts the tunnel
            and a body is ignored (RFC 9110 section 9.3.6); the body of a refusal isn't read.

    Attributes:
        leftover: once the response is complete, the bytes received after it (after a 101
            response, the first WebSocket frames; after a 2xx to CONNECT, the first bytes
            through the tunnel; empty when the body was truncated).
    """

    def __init__(self, limits: HTTPLimits = HTTPLimits(), *, head_only: bool = False) -> None:
        super().__init__(limits)
        self._reason = bytearray()
        self._head_only = head_only
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: builtins.bytes | bytearray | memoryview) -> Response | None:
        """Parse more bytes; return the response once it is complete, else ``None``.

        A response without Content-Length or chunked coding (other than 1xx, 204 and 304)
        ends at the end of the connection: call :meth:`feed_eof` then.

        Returns:
            The :class:`Response`, exactly once; ``leftover`` then holds the bytes after it.

        Raises:
            InvalidMessage: the response is malformed or exceeds a header limit (``status``
                is 400, 431 or 505, as if a server had detected it). Further calls raise it.
            UsageError: the response was already returned.
        """
        result = self._feed(data)
        assert result is None or isinstance(result, Response)
        return result

    def feed_eof(self) -> Response | None:
        """Signal the end of the connection.

        Returns:
            The response if its body was delimited by the end of the connection; ``None`` if
            it was already returned or nothing at all was received.

        Raises:
            InvalidMessage: the connection closed in the middle of the response (400).
        """
        if self._complete or not self._received:
            return None
        if self._error is not None:
            raise self._error
        if not self._head_done or self._remaining is not None or self._is_chunked():
            self._error = InvalidMessage("connection closed before the end of the response")
            raise self._error
        self._complete = True
        return self._build()

    def on_status(self, reason: builtins.bytes) -> None:
        self._pending = 0
        self._reason += reason
        if _INVALID_REASON_RE.search(reason):
            self._fail("invalid reason phrase", 400)
        if len(self._reason) > self.limits.max_request_line:
            self._fail("status line too long", 400)

    def _check_head(self) -> None:
        assert isinstance(self._parser, httptools.HttpResponseParser)
        if not 100 <= self._parser.get_status_code() <= 999:  # llhttp accepts "000"
            self._fail("invalid status code", 400)
        if self._head_only:
            # Input is fed in segments ending after each CRLF CRLF: this one ends here.
            self._complete = True

    def _is_chunked(self) -> bool:
        codings = ",".join(self._headers.get_all("Transfer-Encoding")).lower()
        return "chunked" in codings

    def _body_too_large(self) -> None:
        self._truncated = True

    def _build(self) -> Response:
        assert isinstance(self._parser, httptools.HttpResponseParser)
        return Response(
            status=self._parser.get_status_code(),
            headers=self._headers,
            body=builtins.bytes(self._body),
            reason=self._reason.decode("latin-1"),
            http_version=self._parser.get_http_version(),
        )
