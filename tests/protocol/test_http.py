"""Tests for wsend.protocol.http: Headers, Request, Response and the incremental parsers."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import json
import pathlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsend.exceptions import InvalidMessage, UsageError
from wsend.protocol.http import (
    Headers,
    HTTPLimits,
    Request,
    RequestParser,
    Response,
    ResponseParser,
)

UPGRADE_REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)
FRAME = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # masked "Hello" (RFC 6455 5.7)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets (sorted, deduplicated, clamped)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def feed_chunks(parser: RequestParser | ResponseParser, parts: list[bytes]) -> object:
    """Feed ``parts`` until a message comes out; return it (``None`` if none did)."""
    for part in parts:
        message = parser.feed(part)
        if message is not None:
            return message
    return None


# Headers


def test_headers_case_insensitive_lookup_keeps_case():
    headers = Headers([("Content-Type", "text/plain")])
    assert headers["content-type"] == "text/plain"
    assert "CONTENT-TYPE" in headers
    assert list(headers) == ["Content-Type"]


def test_headers_multi_values():
    headers = Headers()
    headers.add("Set-Cookie", "a=1")
    headers.add("X", "y")
    headers.add("set-cookie", "b=2")
    assert headers["Set-Cookie"] == "a=1"
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert len(headers) == 3
    assert headers.items() == [("Set-Cookie", "a=1"), ("X", "y"), ("set-cookie", "b=2")]


def test_headers_setitem_replaces_all_at_first_position():
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    headers["A"] = "4"
    assert headers.items() == [("A", "4"), ("B", "2")]
    headers["C"] = "5"
    assert headers.items()[-1] == ("C", "5")


def test_headers_missing():
    headers = Headers()
    with pytest.raises(KeyError):
        headers["Host"]
    with pytest.raises(KeyError):
        del headers["Host"]
    assert headers.get("Host") is None
    assert headers.get("Host", "x") == "x"
    assert headers.get_all("Host") == []
    assert 42 not in headers


def test_headers_delete_copy_update_eq():
    headers = Headers({"A": "1", "B": "2"})
    copy = headers.copy()
    del headers["a"]
    assert "A" not in headers
    assert "A" in copy
    copy.update([("b", "3"), ("b", "4"), ("C", "5")])
    assert copy.get_all("B") == ["3", "4"]
    assert copy == Headers([("C", "5"), ("a", "1"), ("B", "3"), ("b", "4")])
    assert copy != Headers([("A", "1"), ("B", "4"), ("B", "3"), ("C", "5")])
    assert copy != {"A": "1"}
    assert "Headers(" in repr(copy)


def test_headers_serialize():
    headers = Headers([("Host", "example.com"), ("X-Name", "Jos\xe9")])
    assert headers.serialize() == b"Host: example.com\r\nX-Name: Jos\xe9\r\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X", "a\r\nInjected: 1"),
        ("X", "a\nb"),
        ("X", "a\rb"),
        ("X", "a\x00b"),
        ("X\r\nY", "1"),
        ("X Y", "1"),
        ("", "1"),
        ("X:", "1"),
        ("X", "\u20ac"),
    ],
)
def test_headers_reject_injection(name, value):
    with pytest.raises(ValueError, match="header"):
        Headers().add(name, value)
    with pytest.raises(ValueError, match="header"):
        Headers()[name] = value
    with pytest.raises(ValueError, match="header"):
        Headers([(name, value)])


_names = st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}\Z")
_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
).map(str.strip)


@given(st.lists(st.tuples(_names, _values), max_size=10))
def test_headers_round_trip_through_parser(items):
    headers = Headers(items)
    request = Request("GET", "/", headers)
    parsed = RequestParser().feed(request.serialize())
    assert parsed is not None
    assert parsed.headers == headers
    assert parsed.headers.items() == headers.items()


# Request


def test_request_properties():
    request = Request(
        "GET",
        "/a%20b/c?x=1&x=2&empty=&q=%C3%A9",
        Headers([("Host", "h:8080"), ("Cookie", 'a=1; b="two"'), ("Cookie", "a=3; c=x=y")]),
    )
    assert request.path == "/a%20b/c"
    assert request.query == {"x": ["1", "2"], "empty": [""], "q": ["\xe9"]}
    assert request.cookies == {"a": "1", "b": "two", "c": "x=y"}
    assert request.host == "h:8080"


def test_request_path_forms():
    assert Request("GET", "/").path == "/"
    assert Request("GET", "http://h/p/q?x").path == "/p/q"
    assert Request("GET", "http://h").path == "/"
    assert Request("OPTIONS", "*").path == "*"
    assert Request("GET", "/").query == {}
    assert Request("GET", "/").host is None


@pytest.mark.parametrize(
    "cookie",
    ["", ";;;", "garbage", "=x", "a b=1", '"=1', "a=\\", 'a="\\', "\x80=\x81", "a=1; ;b"],
)
def test_request_cookies_never_raise(cookie):
    request = Request("GET", "/", Headers([("Cookie", cookie)]))
    cookies = request.cookies
    assert isinstance(cookies, dict)


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60))
def test_request_cookies_never_raise_hypothesis(cookie):
    assert isinstance(Request("GET", "/", Headers([("Cookie", cookie)])).cookies, dict)


def test_request_serialize():
    request = Request("POST", "/x", Headers([("Host", "h")]), b"abc")
    assert request.serialize() == b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    assert Request("GET", "/").serialize() == b"GET / HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize(("method", "target"), [("GET", "/a b"), ("GET", "/\r\n"), ("G T", "/")])
def test_request_serialize_rejects_injection(method, target):
    with pytest.raises(ValueError, match="invalid"):
        Request(method, target).serialize()


# Response


def test_response_defaults_and_serialize():
    response = Response(404)
    assert response.reason == "Not Found"
    assert response.serialize() == b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    assert Response(299).reason == ""


@pytest.mark.parametrize("status", [101, 204, 304])
def test_response_serialize_bodiless(status):
    assert b"Content-Length" not in Response(status).serialize()
    with pytest.raises(ValueError, match="body"):
        Response(status, body=b"x").serialize()


def test_response_serialize_keeps_explicit_length():
    response = Response(200, Headers([("Content-Length", "3")]), b"abc")
    assert response.serialize().count(b"Content-Length") == 1


@pytest.mark.parametrize(("status", "reason"), [(200, "OK\r\nX: y"), (42, "")])
def test_response_serialize_rejects_bad_status_line(status, reason):
    with pytest.raises(ValueError, match="status line"):
        Response(status, reason=reason).serialize()


def test_response_factories():
    text = Response.text(200, "h\xe9", {"X-A": "1"})
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text.body == "h\xe9".encode()
    assert text.headers["X-A"] == "1"
    data = Response.json(201, {"a": [1, 2]})
    assert data.body == b'{"a":[1,2]}'
    assert json.loads(data.body) == {"a": [1, 2]}
    assert data.headers["Content-Type"] == "application/json"
    html = Response.html(200, "<p>")
    assert html.headers["Content-Type"] == "text/html; charset=utf-8"
    raw = Response.bytes(200, b"\x00", "application/octet-stream", [("Content-Type", "x/y")])
    assert raw.headers.get_all("Content-Type") == ["x/y"]
    parsed = ResponseParser().feed(text.serialize())
    assert parsed is not None
    assert parsed.body == text.body


# RequestParser


def test_parse_upgrade_request_with_leftover():
    parser = RequestParser()
    request = parser.feed(UPGRADE_REQUEST + FRAME)
    assert request is not None
    assert request.method == "GET"
    assert request.target == "/chat?room=1"
    assert request.headers["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert request.http_version == "1.1"
    assert parser.leftover == FRAME


@settings(max_examples=200)
@given(st.lists(st.integers(0, len(UPGRADE_REQUEST) + len(FRAME)), max_size=12))
def test_parse_upgrade_request_any_split(cuts):
    parser = RequestParser()
    data = UPGRADE_REQUEST + FRAME
    parts = split(data, cuts)
    fed = b""
    request = None
    for part in parts:
        fed += part
        request = parser.feed(part)
        if request is not None:
            break
    assert request is not None
    assert len(fed) >= len(UPGRADE_REQUEST)
    assert parser.leftover == fed[len(UPGRADE_REQUEST) :]


def test_parse_incomplete_returns_none():
    parser = RequestParser()
    assert parser.feed(UPGRADE_REQUEST[:-1]) is None
    assert parser.feed(b"") is None
    assert parser.feed(b"\n") is not None
    assert parser.leftover == b""


def test_parse_after_complete_is_usage_error():
    parser = RequestParser()
    assert parser.feed(UPGRADE_REQUEST) is not None
    with pytest.raises(UsageError):
        parser.feed(b"more")


def test_parse_plain_get_leftover():
    parser = RequestParser()
    request = parser.feed(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n")
    assert request is not None
    assert request.path == "/health"
    assert parser.leftover == b"GET / HTTP/1.1\r\n"


def test_parse_http10_request():
    request = RequestParser().feed(b"GET / HTTP/1.0\r\n\r\n")
    assert request is not None
    assert request.http_version == "1.0"


def test_parse_content_length_body():
    parser = RequestParser()
    assert parser.feed(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab") is None
    request = parser.feed(b"cdeEXTRA")
    assert request is not None
    assert request.body == b"abcde"
    assert parser.leftover == b"EXTRA"


@given(st.lists(st.integers(0, 80), max_size=10))
def test_parse_chunked_body_any_split(cuts):
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na\r\n\r\n0;x=1\r\n\r\nNEXT"
    parser = RequestParser()
    request = feed_chunks(parser, split(data, cuts))
    assert isinstance(request, Request)
    assert request.body == b"a\r\n"
    assert b"NEXT".startswith(parser.leftover)


def test_parse_header_values_are_stripped_and_latin1():
    request = RequestParser().feed(b"GET / HTTP/1.1\r\nX:   a b  \r\nY: \xe9\r\n\r\n")
    assert request is not None
    assert request.headers["X"] == "a b"
    assert request.headers["Y"] == "\xe9"


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
    ],
)
def test_parse_malformed_request(data):
    parser = RequestParser()
    with pytest.raises(InvalidMessage) as info:
        parser.feed(data)
    assert info.value.status == 400
    with pytest.raises(InvalidMessage):  # the error sticks
        parser.feed(b"\r\n\r\n")


def test_parse_unsupported_version():
    with pytest.raises(InvalidMessage) as info:
        RequestParser().feed(b"GET / HTTP/2.0\r\n\r\n")
    assert info.value.status == 505


SMALL = HTTPLimits(
    max_request_line=100,
    max_headers=5,
    max_header_size=100,
    max_total_header_size=300,
    max_body_size=50,
)


def rejection(data: bytes | list[bytes], limits: HTTPLimits = SMALL) -> int:
    """Feed ``data`` and return the status of the InvalidMessage raised."""
    parser = RequestParser(limits)
    try:
        for part in [data] if isinstance(data, bytes) else data:
            parser.feed(part)
    except InvalidMessage as exc:
        return exc.status
    raise AssertionError("no InvalidMessage")


def test_limit_request_line():
    assert rejection(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n") == 414
    assert RequestParser(SMALL).feed(b"GET /" + b"a" * 99 + b" HTTP/1.1\r\n\r\n") is not None


def test_limit_request_line_streaming():
    parts = [b"GET /"] + [b"a" * 10] * 11
    assert rejection(parts) == 414


def test_limit_request_line_default():
    assert rejection(b"GET /" + b"a" * 8192, HTTPLimits()) == 414


def test_limit_number_of_headers():
    head = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 6 + b"\r\n"
    assert rejection(head) == 431
    ok = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5 + b"\r\n"
    assert RequestParser(SMALL).feed(ok) is not None


def test_limit_header_size():
    assert rejection(b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\r\n\r\n") == 431
    ok = b"GET / HTTP/1.1\r\nX: " + b"a" * 99 + b"\r\n\r\n"
    assert RequestParser(SMALL).feed(ok) is not None


def test_limit_header_size_streaming_without_end():
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nX: ")
    fed = 0
    status = None
    try:
        for _ in range(100):
            fed += 1000
            parser.feed(b"a" * 1000)
    except InvalidMessage as exc:
        status = exc.status
    assert status == 431
    # Noticed within a bounded distance of the limit, not after buffering everything.
    assert fed <= 8192 + 2000


def test_limit_header_size_one_big_chunk():
    parser = RequestParser()
    with pytest.raises(InvalidMessage) as info:
        parser.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 20000)
    assert info.value.status == 431


def test_limit_header_name_streaming():
    parts = [b"GET / HTTP/1.1\r\n"] + [b"X" * 1000] * 20
    assert rejection(parts, HTTPLimits()) == 431


def test_limit_total_header_size():
    head = b"GET / HTTP/1.1\r\n" + (b"X: " + b"a" * 90 + b"\r\n") * 4 + b"\r\n"
    assert rejection(head) == 431


def test_limit_body_content_length():
    assert rejection(b"POST / HTTP/1.1\r\nContent-Length: 51\r\n\r\n") == 413
    request = RequestParser(SMALL).feed(
        b"POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\n" + b"b" * 50
    )
    assert request is not None
    assert len(request.body) == 50


def test_limit_body_chunked():
    chunk = b"20\r\n" + b"c" * 32 + b"\r\n"
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert rejection([head, chunk, chunk]) == 413


def test_limit_body_ignored_for_upgrade():
    data = UPGRADE_REQUEST[:-2] + b"Content-Length: 1000\r\n\r\n"
    parser = RequestParser(dataclasses.replace(SMALL, max_headers=10))
    assert parser.feed(data + b"x") is not None
    assert parser.leftover == b"x"


# ResponseParser


def test_parse_switching_protocols_with_leftover():
    parser = ResponseParser()
    response = parser.feed(SWITCHING + FRAME)
    assert response is not None
    assert response.status == 101
    assert response.reason == "Switching Protocols"
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert parser.leftover == FRAME


@given(st.lists(st.integers(0, len(SWITCHING) + len(FRAME)), max_size=12))
def test_parse_switching_protocols_any_split(cuts):
    parser = ResponseParser()
    fed = b""
    for part in split(SWITCHING + FRAME, cuts):
        fed += part
        if parser.feed(part) is not None:
            break
    assert parser.leftover == fed[len(SWITCHING) :]


def test_parse_101_without_upgrade_header():
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\nDATA")
    assert response is not None
    assert parser.leftover == b"DATA"


def test_parse_response_content_length():
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnopeXX")
    assert response is not None
    assert (response.status, response.body) == (401, b"nope")
    assert parser.leftover == b"XX"


def test_parse_response_chunked():
    data = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"
    response = ResponseParser().feed(data)
    assert response is not None
    assert response.body == b"no"


def test_parse_response_until_eof():
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.0 500 Oops\r\n\r\nsome ") is None
    assert parser.feed(b"text") is None
    response = parser.feed_eof()
    assert response is not None
    assert (response.status, response.reason, response.body) == (500, "Oops", b"some text")
    assert response.http_version == "1.0"
    assert parser.feed_eof() is None


def test_parse_response_eof_cases():
    assert ResponseParser().feed_eof() is None
    for data in [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"]:
        parser = ResponseParser()
        parser.feed(data)
        with pytest.raises(InvalidMessage):
            parser.feed_eof()
        with pytest.raises(InvalidMessage):
            parser.feed_eof()
    parser = ResponseParser()
    with pytest.raises(InvalidMessage):
        parser.feed(b"garbage\r\n\r\n")
    with pytest.raises(InvalidMessage):
        parser.feed_eof()


def test_parse_response_bodiless_statuses():
    response = ResponseParser().feed(b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n")
    assert response is not None
    assert response.body == b""


def test_parse_response_body_truncated():
    parser = ResponseParser(SMALL)
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100000\r\n\r\n"
    assert parser.feed(head + b"a" * 30) is None
    response = parser.feed(b"a" * 30)
    assert response is not None
    assert response.body == b"a" * 50
    assert parser.leftover == b""


def test_parse_response_empty_reason():
    response = ResponseParser().feed(b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n")
    assert response is not None
    assert response.reason == "Not Found"


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 99 Too Low\r\n\r\n",
        b"HTTP/1.1 1000 Too High\r\n\r\n",
        b"HTTP/1.1 002 Too Low\r\n\r\n",
        b"HTTP/1.1 200 O\x00K\r\n\r\n",
        b"HTTP/1.1 200 O\x1bK\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX y: z\r\n\r\n",
    ],
)
def test_parse_malformed_response(data):
    with pytest.raises(InvalidMessage):
        ResponseParser().feed(data)


def test_parse_response_limits():
    parser = ResponseParser(SMALL)
    with pytest.raises(InvalidMessage) as info:
        parser.feed(b"HTTP/1.1 200 " + b"r" * 101 + b"\r\n\r\n")
    assert info.value.status == 400
    with pytest.raises(InvalidMessage) as info:
        ResponseParser(SMALL).feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 6 + b"\r\n")
    assert info.value.status == 431


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_parsers_only_raise_invalid_message(data, cuts):
    for parser in (RequestParser(SMALL), ResponseParser(SMALL)):
        with contextlib.suppress(InvalidMessage):
            feed_chunks(parser, split(data, cuts))


# The fuzz harness, without atheris

_FUZZ_PATH = pathlib.Path(__file__).parents[2] / "fuzzing" / "fuzz_http.py"


def load_fuzz_target():
    spec = importlib.util.spec_from_file_location("fuzz_http", _FUZZ_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(0, 5)):
        pos = rng.randrange(len(data) + 1)
        op = rng.random()
        if op < 0.3:
            del data[pos : pos + rng.randint(1, 8)]
        elif op < 0.6:
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op < 0.9:
            data[pos:pos] = rng.choice([b"\r\n", b"\r\n\r\n", b":", b"Content-Length: 9\r\n"])
        elif data:
            data[0] = rng.randrange(256)
    return bytes(data)


def test_fuzz_target_seeds_and_mutations():
    fuzz = load_fuzz_target()
    rng = random.Random(6455)
    for seed in fuzz.SEEDS:
        fuzz.TestOneInput(seed)
    for _ in range(500):
        fuzz.TestOneInput(mutate(rng, rng.choice(fuzz.SEEDS)))


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_fuzz_target_hypothesis(data):
    load_fuzz_target.__dict__.setdefault("module", load_fuzz_target())
    load_fuzz_target.__dict__["module"].TestOneInput(data)
