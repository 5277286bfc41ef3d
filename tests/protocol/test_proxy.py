"""Tests for wsend.protocol.proxy: proxy URLs, the environment, no_proxy and the CONNECT
exchange (sans-I/O; the same code runs against real proxies in tests/asyncio/test_proxy.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsend.exceptions import (
    InvalidMessage,
    InvalidProxy,
    ProxyAuthenticationRequired,
    ProxyRefused,
)
from wsend.protocol.handshake import parse_basic_auth
from wsend.protocol.http import Headers, Response, ResponseParser
from wsend.protocol.proxy import (
    Proxy,
    build_connect_request,
    check_connect_response,
    choose_proxy,
    no_proxy_matches,
    parse_proxy,
    proxy_from_environment,
)

# Proxy URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy.example:3128", Proxy("http", "proxy.example", 3128)),
        ("http://proxy.example", Proxy("http", "proxy.example", 80)),
        ("https://proxy.example/", Proxy("https", "proxy.example", 443)),
        ("socks5://127.0.0.1", Proxy("socks5", "127.0.0.1", 1080)),
        ("socks5h://[::1]:1081", Proxy("socks5h", "::1", 1081)),
        ("socks4://p:1", Proxy("socks4", "p", 1)),
        ("socks4a://p", Proxy("socks4a", "p", 1080)),
        ("HTTP://Proxy.Example:8080", Proxy("http", "proxy.example", 8080)),
        ("proxy.example:3128", Proxy("http", "proxy.example", 3128)),
        ("  http://p:1  ", Proxy("http", "p", 1)),
        ("http://u:p@p:1", Proxy("http", "p", 1, "u", "p")),
        ("http://u:@p:1", Proxy("http", "p", 1, "u", "")),
        ("http://al%40ice:s3cr%3At%40%2F@p:1", Proxy("http", "p", 1, "al@ice", "s3cr:t@/")),
        ("http://bücher.example:1", Proxy("http", "xn--bcher-kva.example", 1)),
    ],
)
def test_parse_proxy(url, expected):
    assert parse_proxy(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://proxy.example", "scheme 'ftp' isn't supported"),
        ("socks://proxy.example", "scheme 'socks' isn't supported"),
        ("http://", "the host is missing"),
        ("http://:8080", "the host is missing"),
        ("http://p:99999", "out of range"),
        ("http://p:port", "Port could not be cast"),
        ("http://p/path", "no path, query or fragment"),
        ("http://p?q", "no path, query or fragment"),
        ("http://p#f", "no path, query or fragment"),
        ("http://user@p", "a user name without a password"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://ü..example:1", "isn't a valid domain name"),
    ],
)
def test_parse_proxy_rejects(url, message):
    with pytest.raises(InvalidProxy, match=message) as info:
        parse_proxy(url)
    assert isinstance(info.value, ValueError)
    assert info.value.proxy == url


def test_invalid_proxy_hides_the_password():
    with pytest.raises(InvalidProxy) as info:
        parse_proxy("http://alice:hunter2@p/path")
    assert "hunter2" not in str(info.value)
    assert "alice:***@p/path" in str(info.value)


def test_proxy_repr_and_address_hide_the_password():
    proxy = parse_proxy("socks5h://alice:hunter2@[::1]:1080")
    assert "hunter2" not in repr(proxy)
    assert proxy.address == "socks5h://[::1]:1080"
    assert proxy.is_socks
    assert proxy.remote_dns


@pytest.mark.parametrize(
    ("scheme", "socks", "remote_dns"),
    [
        ("http", False, True),
        ("https", False, True),
        ("socks5", True, False),
        ("socks5h", True, True),
        ("socks4", True, False),
        ("socks4a", True, True),
    ],
)
def test_proxy_kinds(scheme, socks, remote_dns):
    proxy = parse_proxy(f"{scheme}://p")
    assert proxy.is_socks is socks
    assert proxy.remote_dns is remote_dns


# Choosing a proxy from the environment

SECURE = [True, False]


def choose(env: dict[str, str], secure: bool = True, host: str = "ws.example", port: int = 443):
    return proxy_from_environment(secure, host, port, env)


def test_no_variable_means_direct():
    assert choose({}) is None
    assert choose({"https_proxy": ""}) is None
    assert choose({"https_proxy": "  "}) is None


@pytest.mark.parametrize(
    ("env", "secure", "expected"),
    [
        ({"https_proxy": "h"}, True, "h"),
        ({"https_proxy": "h"}, False, "h"),
        ({"HTTPS_PROXY": "H"}, True, "H"),
        ({"https_proxy": "h", "HTTPS_PROXY": "H"}, True, "h"),
        ({"http_proxy": "p"}, True, None),
        ({"http_proxy": "p"}, False, "p"),
        ({"HTTP_PROXY": "P"}, False, "P"),
        ({"http_proxy": "p", "https_proxy": "h"}, False, "h"),
        ({"wss_proxy": "w", "https_proxy": "h"}, True, "w"),
        ({"ws_proxy": "w", "https_proxy": "h"}, False, "w"),
        ({"ws_proxy": "w"}, True, None),
        ({"wss_proxy": "w"}, False, None),
        ({"WSS_PROXY": "W"}, True, "W"),
        ({"all_proxy": "a"}, True, "a"),
        ({"ALL_PROXY": "A"}, False, "A"),
        ({"all_proxy": "a", "https_proxy": "h"}, True, "h"),
        ({"all_proxy": "a", "http_proxy": "p"}, False, "p"),
        ({"all_proxy": "a", "http_proxy": "p"}, True, "a"),
        ({"https_proxy": "", "all_proxy": "a"}, True, "a"),
        # An empty lower-case value hides the upper-case one (as in urllib).
        ({"https_proxy": "", "HTTPS_PROXY": "H"}, True, None),
    ],
)
def test_variables_in_order(env, secure, expected):
    assert choose(env, secure) == expected


def test_upper_case_http_proxy_is_ignored_under_cgi():
    env = {"HTTP_PROXY": "evil", "REQUEST_METHOD": "GET"}
    assert choose(env, secure=False) is None
    env["http_proxy"] = "p"
    assert choose(env, secure=False) == "p"
    assert choose({"HTTPS_PROXY": "H", "REQUEST_METHOD": "GET"}) == "H"


@pytest.mark.parametrize("name", ["no_proxy", "NO_PROXY"])
def test_no_proxy_in_the_environment(name):
    env = {"https_proxy": "h", name: "example.com"}
    assert choose(env, host="ws.example") == "h"
    assert choose(env, host="ws.example.com") is None


def test_lower_case_no_proxy_wins():
    env = {"https_proxy": "h", "no_proxy": "a.example", "NO_PROXY": "ws.example"}
    assert choose(env, host="ws.example") == "h"


def test_choose_proxy():
    env = {"https_proxy": "socks5://user:pw@proxy.example", "no_proxy": "direct.example"}
    chosen = choose_proxy(True, True, "ws.example", 443, env)
    assert chosen == Proxy("socks5", "proxy.example", 1080, "user", "pw")
    assert choose_proxy(True, True, "direct.example", 443, env) is None
    assert choose_proxy(True, True, "ws.example", 443, {}) is None
    given_proxy = Proxy("http", "other.example", 3128)
    for setting in (given_proxy, None, False):
        expected = given_proxy if setting else None
        assert choose_proxy(setting, True, "ws.example", 443, env) == expected


def test_choose_proxy_invalid_url_in_the_environment():
    with pytest.raises(InvalidProxy):
        choose_proxy(True, False, "ws.example", 80, {"ws_proxy": "ftp://proxy.example"})


# no_proxy


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "expected"),
    [
        ("*", "anything", 1, True),
        ("  *  ", "anything", 1, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "EXAMPLE.com", 443, True),
        ("example.com", "example.com.", 443, True),
        ("Example.COM", "example.com", 443, True),
        ("example.com", "ws.example.com", 443, True),
        ("example.com", "a.b.example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        ("example.com", "example.org", 443, False),
        (".example.com", "example.com", 443, True),
        (".example.com", "ws.example.com", 443, True),
        ("*.example.com", "ws.example.com", 443, True),
        ("*.example.com", "example.com", 443, True),
        ("*.example.com", "badexample.com", 443, False),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("example.com:port", "example.com", 443, False),
        ("a.example, example.com", "example.com", 1, True),
        ("a.example,,b.example", "b.example", 1, True),
        ("a.example b.example", "b.example", 1, True),
        ("", "example.com", 1, False),
        (",", "example.com", 1, False),
        (".", "example.com", 1, False),
        ("*.", "example.com", 1, False),
        ("10.1.2.3", "10.1.2.3", 80, True),
        ("10.1.2.3", "10.1.2.4", 80, False),
        ("10.1.2.3:80", "10.1.2.3", 80, True),
        ("10.1.2.3:80", "10.1.2.3", 81, False),
        ("10.0.0.0/8", "10.200.3.4", 80, True),
        ("10.0.0.0/8", "11.0.0.1", 80, False),
        ("10.0.0.0/8", "ten.example", 80, False),
        ("10.0.0.0/8:80", "10.0.0.1", 80, True),
        ("10.0.0.0/8:80", "10.0.0.1", 81, False),
        ("10.0.0.0/33", "10.0.0.1", 80, False),
        ("::1", "::1", 80, True),
        ("::1", "[::1]", 80, True),
        ("[::1]", "::1", 80, True),
        ("[::1]:8080", "::1", 8080, True),
        ("[::1]:8080", "::1", 80, False),
        ("0:0::1", "::1", 80, True),
        ("fd00::/8", "fd12::3", 80, True),
        ("fd00::/8", "fe80::1", 80, False),
        ("127.0.0.1", "localhost", 80, False),
        ("localhost", "127.0.0.1", 80, False),
        ("example.com", "10.0.0.1", 80, False),
    ],
)
def test_no_proxy_matches(no_proxy, host, port, expected):
    assert no_proxy_matches(no_proxy, host, port) is expected


@given(st.text(max_size=80), st.text(max_size=30), st.integers(0, 65535))
def test_no_proxy_never_raises(no_proxy, host, port):
    assert no_proxy_matches(no_proxy, host, port) in (True, False)


# CONNECT


def test_build_connect_request():
    proxy = parse_proxy("http://p:3128")
    request = build_connect_request(proxy, "ws.example", 443, user_agent="test/1")
    assert request.serialize() == (
        b"CONNECT ws.example:443 HTTP/1.1\r\nHost: ws.example:443\r\nUser-Agent: test/1\r\n\r\n"
    )


def test_build_connect_request_with_credentials():
    proxy = parse_proxy("http://al%40ice:s3cr%3At@p:3128")
    request = build_connect_request(proxy, "ws.example", 80, user_agent=None)
    assert parse_basic_auth(request.headers["Proxy-Authorization"]) == ("al@ice", "s3cr:t")
    assert "User-Agent" not in request.headers


def test_build_connect_request_headers_replace_credentials():
    proxy = parse_proxy("http://alice:secret@p:3128")
    headers = {"Proxy-Authorization": "Bearer abc", "X-Trace": "1"}
    request = build_connect_request(proxy, "ws.example", 80, headers=headers)
    assert request.headers.get_all("Proxy-Authorization") == ["Bearer abc"]
    assert request.headers["X-Trace"] == "1"


@pytest.mark.parametrize(
    ("host", "port", "target"),
    [
        ("::1", 8080, "[::1]:8080"),
        ("127.0.0.1", 80, "127.0.0.1:80"),
        ("bücher.example", 443, "xn--bcher-kva.example:443"),
    ],
)
def test_build_connect_request_targets(host, port, target):
    request = build_connect_request(parse_proxy("http://p"), host, port)
    assert request.target == target
    assert request.headers["Host"] == target


def test_build_connect_request_rejects_a_colon_in_the_user_name():
    proxy = Proxy("http", "p", 1, "a:b", "c")
    with pytest.raises(ValueError, match="can't contain ':'"):
        build_connect_request(proxy, "ws.example", 80)


def parse_answer(data: bytes) -> tuple[Response, bytes]:
    parser = ResponseParser(head_only=True)
    response = parser.feed(data)
    assert response is not None
    return response, parser.leftover


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        b"HTTP/1.0 200 Connection established\r\nProxy-Agent: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ],
)
def test_tunnel_opens_at_the_end_of_the_head(answer):
    proxy = parse_proxy("http://p")
    response, leftover = parse_answer(answer + b"\x16\x03\x01")
    assert leftover == b"\x16\x03\x01"  # the first bytes through the tunnel
    check_connect_response(response, proxy, "ws.example", 443)


def test_tunnel_answer_split_in_many_reads():
    parser = ResponseParser(head_only=True)
    data = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 p\r\n\r\n"
    for i in range(len(data) - 1):
        assert parser.feed(data[i : i + 1]) is None
    response = parser.feed(data[-1:])
    assert response is not None
    assert response.headers["Via"] == "1.1 p"
    assert parser.leftover == b""


@pytest.mark.parametrize(
    ("answer", "error", "status"),
    [
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="p"\r\nContent-Length: 5\r\n\r\ndenied',
            ProxyAuthenticationRequired,
            407,
        ),
        (b"HTTP/1.0 401 Unauthorized\r\n\r\n", ProxyAuthenticationRequired, 401),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", ProxyRefused, 403),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad", ProxyRefused, 502),
        (b"HTTP/1.1 100 Continue\r\n\r\n", ProxyRefused, 100),
        (b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\n\r\n", ProxyRefused, 302),
        (b"HTTP/1.1 599\r\n\r\n", ProxyRefused, 599),
    ],
)
def test_refusals(answer, error, status):
    proxy = parse_proxy("http://alice:hunter2@p:3128")
    response, _ = parse_answer(answer)
    with pytest.raises(error) as info:
        check_connect_response(response, proxy, "::1", 443)
    assert info.value.status_code == status
    assert info.value.reply is None
    assert isinstance(info.value.headers, Headers)
    assert f"proxy http://p:3128 refused the tunnel to [::1]:443: HTTP {status}" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
)
def test_malformed_answers(answer):
    with pytest.raises(InvalidMessage):
        ResponseParser(head_only=True).feed(answer)


def test_oversized_answer_is_refused():
    parser = ResponseParser(head_only=True)
    assert parser.feed(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(InvalidMessage) as info:
        parser.feed(b"X-Padding: " + b"a" * 20_000)
    assert info.value.status == 431
