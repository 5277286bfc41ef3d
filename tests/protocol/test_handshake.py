"""Tests for wsend.protocol.handshake: the opening handshake on both sides and header values."""

from __future__ import annotations

import base64
import contextlib
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsend.exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidStatus,
    InvalidUpgrade,
    InvalidVersion,
    NegotiationError,
    RequestRejected,
    TooManyRedirects,
)
from wsend.protocol.handshake import (
    GUID,
    USER_AGENT,
    accept_key,
    build_accept,
    build_basic_auth,
    build_extensions,
    build_reject,
    build_request,
    check_origin,
    check_request,
    check_response,
    generate_key,
    parse_basic_auth,
    parse_bearer,
    parse_connection,
    parse_extensions,
    parse_subprotocols,
    parse_tokens,
    response_for_error,
    select_subprotocol,
)
from wsend.protocol.http import Headers, Request, RequestParser, Response, ResponseParser

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def make_request(**kwargs: object) -> Request:
    params: dict[str, object] = {
        "host": "example.com",
        "port": 80,
        "secure": False,
        "resource": "/chat",
        "key": KEY,
    }
    params.update(kwargs)
    return build_request(**params)  # type: ignore[arg-type]


def make_response(**kwargs: object) -> Response:
    return build_accept(make_request(), KEY, **kwargs)  # type: ignore[arg-type]


# Keys


def test_accept_key_rfc_example():
    assert accept_key(KEY) == ACCEPT
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_generate_key():
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


# Round trip


@settings(max_examples=100)
@given(
    st.lists(st.integers(0, 400), max_size=8),
    st.lists(st.integers(0, 300), max_size=8),
    st.binary(max_size=20),
)
def test_round_trip(request_cuts, response_cuts, frames):
    key = generate_key()
    request = build_request(
        host="example.com",
        port=8080,
        secure=False,
        resource="/chat?room=1",
        key=key,
        origin="https://example.com",
        subprotocols=["chat.v2", "chat.v1"],
        extensions="permessage-deflate; client_max_window_bits",
    )
    parser = RequestParser()
    received = None
    for part in split(request.serialize() + frames, request_cuts):
        received = parser.feed(part)
        if received is not None:
            break
    assert received is not None
    assert check_request(received) == key
    check_origin(received, ["https://example.com"])
    assert received.query == {"room": ["1"]}
    offered = parse_subprotocols(received.headers)
    assert offered == ["chat.v2", "chat.v1"]
    chosen = select_subprotocol(offered, ["chat.v1", "chat.v2"])
    assert chosen == "chat.v1"
    extensions = parse_extensions(received.headers)
    assert extensions == [("permessage-deflate", [("client_max_window_bits", None)])]
    response = build_accept(
        received, key, subprotocol=chosen, extensions="permessage-deflate; server_no_context"
    )
    client = ResponseParser()
    answer = None
    for part in split(response.serialize() + frames, response_cuts):
        answer = client.feed(part)
        if answer is not None:
            break
    assert answer is not None
    subprotocol, accepted = check_response(answer, key=key, subprotocols=["chat.v2", "chat.v1"])
    assert subprotocol == "chat.v1"
    assert accepted == [("permessage-deflate", [("server_no_context", None)])]


def test_upgrade_leftover_frames():
    frames = b"\x81\x05Hello"
    parser = RequestParser()
    request = parser.feed(make_request().serialize() + frames)
    assert request is not None
    assert parser.leftover == frames
    client = ResponseParser()
    assert client.feed(build_accept(request, KEY).serialize() + frames) is not None
    assert client.leftover == frames


# build_request


def test_build_request_defaults():
    request = make_request()
    assert request.method == "GET"
    assert request.target == "/chat"
    assert request.headers.items() == [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
        ("User-Agent", USER_AGENT),
    ]
    assert USER_AGENT.startswith("wsend/")


@pytest.mark.parametrize(
    ("host", "port", "secure", "expected"),
    [
        ("example.com", 80, False, "example.com"),
        ("example.com", 443, True, "example.com"),
        ("example.com", 443, False, "example.com:443"),
        ("example.com", 80, True, "example.com:80"),
        ("example.com", 8765, False, "example.com:8765"),
        ("127.0.0.1", 8000, False, "127.0.0.1:8000"),
        ("::1", 80, False, "[::1]"),
        ("::1", 8000, True, "[::1]:8000"),
        ("[fe80::1]", 8000, False, "[fe80::1]:8000"),
        ("b\xfccher.example", 80, False, "xn--bcher-kva.example"),
    ],
)
def test_build_request_host(host, port, secure, expected):
    request = make_request(host=host, port=port, secure=secure)
    assert request.headers["Host"] == expected


def test_build_request_options():
    request = make_request(
        origin="https://example.com",
        subprotocols=["a", "b"],
        extensions="permessage-deflate",
        user_agent=None,
        extra_headers={"Authorization": "Bearer t", "Host": "override.example"},
    )
    headers = request.headers
    assert headers["Origin"] == "https://example.com"
    assert headers["Sec-WebSocket-Protocol"] == "a, b"
    assert headers["Sec-WebSocket-Extensions"] == "permessage-deflate"
    assert "User-Agent" not in headers
    assert headers["Authorization"] == "Bearer t"
    assert headers.get_all("Host") == ["override.example"]


def test_build_request_extra_headers_forms():
    for extra in (Headers([("X-A", "1"), ("X-A", "2")]), [("X-A", "1"), ("X-A", "2")]):
        assert make_request(extra_headers=extra).headers.get_all("x-a") == ["1", "2"]
    request = make_request(extra_headers={"user-agent": "custom"})
    assert request.headers.get_all("User-Agent") == ["custom"]


@pytest.mark.parametrize(
    "name",
    [
        "Upgrade",
        "connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
    ],
)
def test_build_request_protected_headers(name):
    with pytest.raises(ValueError, match="extra headers"):
        make_request(extra_headers={name: "x"})


def test_build_request_injection():
    with pytest.raises(ValueError, match="header"):
        make_request(extra_headers={"X": "a\r\nEvil: 1"})
    with pytest.raises(ValueError, match="header"):
        make_request(origin="https://a\r\nb")


# check_response


def test_check_response_ok():
    assert check_response(make_response(), key=KEY, subprotocols=[]) == (None, [])


def test_check_response_case_insensitive():
    response = Response(
        101,
        Headers(
            [
                ("UPGRADE", "WebSocket"),
                ("connection", "keep-alive, UPGRADE"),
                ("sec-websocket-accept", ACCEPT),
            ]
        ),
    )
    assert check_response(response, key=KEY, subprotocols=[]) == (None, [])


def test_check_response_status():
    response = Response.text(401, "who are you?", {"WWW-Authenticate": "Basic"})
    with pytest.raises(InvalidStatus) as info:
        check_response(response, key=KEY, subprotocols=[])
    assert info.value.status_code == 401
    assert info.value.body == b"who are you?"
    assert info.value.headers["WWW-Authenticate"] == "Basic"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Upgrade", None),
        ("Upgrade", "h2c"),
        ("Upgrade", "websocket, h2c"),
        ("Upgrade", "web socket"),
        ("Connection", None),
        ("Connection", "close"),
        ("Connection", "up grade"),
    ],
)
def test_check_response_bad_upgrade(name, value):
    response = make_response()
    del response.headers[name]
    if value is not None:
        response.headers[name] = value
    with pytest.raises(InvalidUpgrade) as info:
        check_response(response, key=KEY, subprotocols=[])
    assert info.value.name == name


@pytest.mark.parametrize("value", [None, "wrong", ACCEPT + "x"])
def test_check_response_bad_accept(value):
    response = make_response()
    del response.headers["Sec-WebSocket-Accept"]
    if value is not None:
        response.headers["Sec-WebSocket-Accept"] = value
    with pytest.raises(InvalidHeader) as info:
        check_response(response, key=KEY, subprotocols=[])
    assert info.value.name == "Sec-WebSocket-Accept"
    assert not isinstance(info.value, InvalidUpgrade)


def test_check_response_repeated_accept():
    response = make_response()
    response.headers.add("Sec-WebSocket-Accept", ACCEPT)
    with pytest.raises(InvalidHeader, match="more than one"):
        check_response(response, key=KEY, subprotocols=[])


def test_check_response_wrong_key():
    with pytest.raises(InvalidHeader):
        check_response(make_response(), key=generate_key(), subprotocols=[])


def test_check_response_subprotocol():
    response = make_response()
    response.headers["Sec-WebSocket-Protocol"] = "b"
    assert check_response(response, key=KEY, subprotocols=["a", "b"])[0] == "b"
    with pytest.raises(NegotiationError, match="wasn't offered"):
        check_response(response, key=KEY, subprotocols=["a"])
    response.headers["Sec-WebSocket-Protocol"] = "a, b"
    with pytest.raises(NegotiationError, match="several"):
        check_response(response, key=KEY, subprotocols=["a", "b"])
    response.headers["Sec-WebSocket-Protocol"] = "a b"
    with pytest.raises(InvalidHeader):
        check_response(response, key=KEY, subprotocols=["a", "b"])


def test_check_response_extensions():
    response = make_response(extensions='x; a=1; b="2", y')
    assert check_response(response, key=KEY, subprotocols=[])[1] == [
        ("x", [("a", "1"), ("b", "2")]),
        ("y", []),
    ]
    response.headers["Sec-WebSocket-Extensions"] = "x;"
    with pytest.raises(InvalidHeader):
        check_response(response, key=KEY, subprotocols=[])


# check_request


def test_check_request_ok():
    assert check_request(make_request()) == KEY


def test_check_request_lenient_lists():
    request = make_request()
    request.headers["Connection"] = "keep-alive, Upgrade"
    request.headers["Upgrade"] = "WebSocket"
    assert check_request(request) == KEY


def expect_rejection(request: Request, exc_type: type[InvalidHandshake], status: int) -> None:
    with pytest.raises(exc_type) as info:
        check_request(request)
    assert info.value.status == status
    response = response_for_error(info.value)
    assert response.status == status
    assert response.headers["Connection"] == "close"


def test_check_request_method():
    request = make_request()
    request.method = "POST"
    expect_rejection(request, InvalidMessage, 405)
    with pytest.raises(InvalidMessage) as info:
        check_request(request)
    assert response_for_error(info.value).headers["Allow"] == "GET"


def test_check_request_http10():
    request = make_request()
    request.http_version = "1.0"
    expect_rejection(request, InvalidMessage, 505)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Upgrade", None),
        ("Upgrade", "h2c"),
        ("Upgrade", "web socket"),
        ("Connection", None),
        ("Connection", "keep-alive"),
        ("Connection", "up/grade"),
    ],
)
def test_check_request_bad_upgrade(name, value):
    request = make_request()
    del request.headers[name]
    if value is not None:
        request.headers[name] = value
    expect_rejection(request, InvalidUpgrade, 426)
    with pytest.raises(InvalidUpgrade) as info:
        check_request(request)
    response = response_for_error(info.value)
    assert response.headers["Upgrade"] == "websocket"
    assert response.headers["Sec-WebSocket-Version"] == "13"


def test_check_request_host():
    request = make_request()
    del request.headers["Host"]
    expect_rejection(request, InvalidHeader, 400)
    request.headers.add("Host", "a")
    request.headers.add("Host", "b")
    expect_rejection(request, InvalidHeader, 400)


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not base64!",
        base64.b64encode(b"x" * 15).decode(),
        base64.b64encode(b"x" * 17).decode(),
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQ==x",
        "\xe9GhlIHNhbXBsZSBub25jZQ==",
    ],
)
def test_check_request_bad_key(key):
    request = make_request()
    del request.headers["Sec-WebSocket-Key"]
    if key is not None:
        request.headers["Sec-WebSocket-Key"] = key
    expect_rejection(request, InvalidHeader, 400)


def test_check_request_repeated_key():
    request = make_request()
    request.headers.add("Sec-WebSocket-Key", KEY)
    expect_rejection(request, InvalidHeader, 400)


@pytest.mark.parametrize("version", [None, "8", "13, 8", "", "14"])
def test_check_request_bad_version(version):
    request = make_request()
    del request.headers["Sec-WebSocket-Version"]
    if version is not None:
        request.headers["Sec-WebSocket-Version"] = version
    expect_rejection(request, InvalidVersion, 426)
    with pytest.raises(InvalidVersion) as info:
        check_request(request)
    assert response_for_error(info.value).headers["Sec-WebSocket-Version"] == "13"


def test_check_request_repeated_version():
    request = make_request()
    request.headers.add("Sec-WebSocket-Version", "13")
    expect_rejection(request, InvalidVersion, 426)


# check_origin


def test_check_origin():
    request = make_request(origin="https://Example.com")
    check_origin(request, ["https://example.com"])
    check_origin(request, ["HTTPS://EXAMPLE.COM"])
    check_origin(request, [re.compile(r"https://(\w+\.)?example\.com", re.IGNORECASE)])
    for origins in ([], [None], ["https://example.com:443"], [re.compile("https://example")]):
        with pytest.raises(InvalidOrigin) as info:
            check_origin(request, origins)
        assert info.value.status == 403
        assert response_for_error(info.value).status == 403


def test_check_origin_missing():
    request = make_request()
    check_origin(request, [None])
    check_origin(request, ["https://example.com", None])
    with pytest.raises(InvalidOrigin, match="missing"):
        check_origin(request, ["https://example.com"])


def test_check_origin_repeated():
    request = make_request(origin="https://example.com")
    request.headers.add("Origin", "https://example.com")
    with pytest.raises(InvalidOrigin, match="more than one"):
        check_origin(request, ["https://example.com"])


# Subprotocols


def test_select_subprotocol():
    assert select_subprotocol(["a", "b"], ["b", "a"]) == "b"
    assert select_subprotocol(["a", "b"], ["c"]) is None
    assert select_subprotocol([], ["a"]) is None
    assert select_subprotocol(["a"], []) is None


def test_parse_subprotocols_across_fields():
    headers = Headers([("Sec-WebSocket-Protocol", "Chat, ,v1"), ("sec-websocket-protocol", "v2")])
    assert parse_subprotocols(headers) == ["Chat", "v1", "v2"]


# build_accept


def test_build_accept():
    request = make_request(subprotocols=["chat"])
    response = build_accept(request, KEY, subprotocol="chat", extensions="x", server=None)
    assert response.status == 101
    assert response.headers.items() == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Sec-WebSocket-Extensions", "x"),
    ]
    assert b"Content-Length" not in response.serialize()
    assert make_response().headers["Server"] == USER_AGENT


def test_build_accept_extra_headers():
    response = make_response(extra_headers={"Server": "custom", "Set-Cookie": "a=1"})
    assert response.headers.get_all("Server") == ["custom"]
    assert response.headers["Set-Cookie"] == "a=1"
    with pytest.raises(ValueError, match="extra headers"):
        make_response(extra_headers={"Sec-WebSocket-Accept": "x"})


def test_build_accept_subprotocol_not_offered():
    with pytest.raises(ValueError, match="didn't offer"):
        make_response(subprotocol="chat")


# Rejections


def test_build_reject():
    response = build_reject(403)
    assert response.status == 403
    assert response.body == b"Forbidden\n"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Connection"] == "close"
    assert response.headers["Date"].endswith("GMT")
    parsed = ResponseParser().feed(response.serialize())
    assert parsed is not None
    assert parsed.body == b"Forbidden\n"


def test_build_reject_options():
    assert build_reject(400, "nope").body == b"nope"
    assert build_reject(400, b"\x00").body == b"\x00"
    assert build_reject(599).body == b"HTTP 599\n"
    response = build_reject(401, headers={"WWW-Authenticate": "Bearer", "Connection": "x"})
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers.get_all("Connection") == ["x"]
    upgrade = build_reject(426)
    assert upgrade.headers["Upgrade"] == "websocket"
    assert upgrade.headers["Sec-WebSocket-Version"] == "13"


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidMessage("bad", 414), 414),
        (InvalidMessage("bad", 431), 431),
        (InvalidHeader("Sec-WebSocket-Key", "x"), 400),
        (InvalidUpgrade("Upgrade"), 426),
        (InvalidVersion("Sec-WebSocket-Version", "8"), 426),
        (InvalidOrigin("Origin", "https://evil"), 403),
        (NegotiationError("no"), 400),
        (RequestRejected(401, "log in first"), 401),
        (TooManyRedirects("internal detail"), 400),
    ],
)
def test_response_for_error(exc, status):
    response = response_for_error(exc)
    assert response.status == status
    assert response.body.startswith(b"Failed to open a WebSocket connection: ")
    assert b"internal detail" not in response.body


def test_response_for_error_truncates_detail():
    response = response_for_error(InvalidHeader("X", "v" * 5000))
    assert len(response.body) < 300


# Header value helpers


def test_parse_tokens():
    assert parse_tokens(["a, B", "", " ,c ,", "d"]) == ["a", "B", "c", "d"]
    assert parse_tokens([]) == []
    with pytest.raises(InvalidHeader) as info:
        parse_tokens(["a b"], name="X")
    assert info.value.name == "X"
    with pytest.raises(InvalidHeader):
        parse_tokens(['"a"'])


def test_parse_connection():
    headers = Headers([("Connection", "Keep-Alive, UPGRADE"), ("connection", "close")])
    assert parse_connection(headers) == {"keep-alive", "upgrade", "close"}
    assert parse_connection(Headers()) == set()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        (["foo"], [("foo", [])]),
        (
            ["permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
            [
                (
                    "permessage-deflate",
                    [("client_max_window_bits", None), ("server_max_window_bits", "10")],
                )
            ],
        ),
        (
            ['x; a="1"; b = "t\\ok" ; c', "y"],
            [("x", [("a", "1"), ("b", "tok"), ("c", None)]), ("y", [])],
        ),
        ([" a , , b ,"], [("a", []), ("b", [])]),
        (["a;b=1,c;d"], [("a", [("b", "1")]), ("c", [("d", None)])]),
        (["\ta\t;\tb\t=\t1\t"], [("a", [("b", "1")])]),
    ],
)
def test_parse_extensions(values, expected):
    headers = Headers([("Sec-WebSocket-Extensions", v) for v in values])
    assert parse_extensions(headers) == expected


@pytest.mark.parametrize(
    "value",
    [
        ";",
        "a;",
        "a; =1",
        "a; b=",
        "a; b=1 2",
        'a; b="1 2"',
        'a; b="',
        'a; b=""',
        'a; b="x"y',
        "a b",
        "a; b=1; c=@",
        "(a)",
        'a; b="\\"',
    ],
)
def test_parse_extensions_errors(value):
    with pytest.raises(InvalidHeader) as info:
        parse_extensions(Headers([("Sec-WebSocket-Extensions", value)]))
    assert info.value.name == "Sec-WebSocket-Extensions"


_tokens = st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}\Z")
_extensions = st.lists(
    st.tuples(_tokens, st.lists(st.tuples(_tokens, st.none() | _tokens), max_size=3)),
    max_size=4,
)


@given(_extensions)
def test_extensions_round_trip(extensions):
    value = build_extensions(extensions)
    assert parse_extensions(Headers([("Sec-WebSocket-Extensions", value)])) == extensions


@given(st.text(max_size=40))
def test_parse_extensions_only_raises_invalid_header(value):
    try:
        headers = Headers([("Sec-WebSocket-Extensions", value)])
    except ValueError:
        return
    with contextlib.suppress(InvalidHeader):
        parse_extensions(headers)


@pytest.mark.parametrize(
    "extensions",
    [[("a b", [])], [("a", [("b c", None)])], [("a", [("b", "1 2")])], [("a", [("b", "")])]],
)
def test_build_extensions_rejects_non_tokens(extensions):
    with pytest.raises(ValueError, match="token"):
        build_extensions(extensions)


def test_build_extensions():
    assert build_extensions([]) == ""
    assert build_extensions([("a", [("b", None), ("c", "1")]), ("d", [])]) == "a; b; c=1, d"


def test_basic_auth_round_trip():
    value = build_basic_auth("Aladdin", "open sesame")
    assert value == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    assert parse_basic_auth(value) == ("Aladdin", "open sesame")
    assert parse_basic_auth("basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ== ") == ("Aladdin", "open sesame")
    assert parse_basic_auth(build_basic_auth("j\xf6rg", "p:\u20ac")) == ("j\xf6rg", "p:\u20ac")
    assert parse_basic_auth(build_basic_auth("", "")) == ("", "")


@given(st.text(max_size=20).filter(lambda u: ":" not in u), st.text(max_size=20))
def test_basic_auth_round_trip_hypothesis(username, password):
    assert parse_basic_auth(build_basic_auth(username, password)) == (username, password)


def test_build_basic_auth_rejects_colon():
    with pytest.raises(ValueError, match="':'"):
        build_basic_auth("a:b", "c")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Basic",
        "Basic ",
        "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "Basic !!!",
        "Basic QWxhZGRpbg==",  # no colon
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ",  # bad padding
        "Basic a b",
    ],
)
def test_parse_basic_auth_errors(value):
    with pytest.raises(InvalidHeader) as info:
        parse_basic_auth(value)
    assert info.value.name == "Authorization"
    assert "QWxh" not in str(info.value)


def test_parse_bearer():
    assert parse_bearer("Bearer mF_9.B5f-4.1JqM") == "mF_9.B5f-4.1JqM"
    assert parse_bearer("bearer abc==") == "abc=="
    for value in ["", "Bearer", "Bearer a b", "Basic abc", "Bearer a=b", "Token abc"]:
        with pytest.raises(InvalidHeader):
            parse_bearer(value)
