"""Tests for wsend.protocol.hosts: parsing Host values and the allowlist (sans-I/O; over real
sockets in tests/asyncio/test_hosts.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsend.exceptions import InvalidHeader, InvalidHost
from wsend.protocol.handshake import response_for_error
from wsend.protocol.hosts import AllowedHosts, check_host, parse_host
from wsend.protocol.http import Headers, Request


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("Example.COM:8443", ("example.com", 8443)),
        ("example.com.", ("example.com", None)),
        ("example.com.:80", ("example.com", 80)),
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        ("[::1]", ("::1", None)),
        ("[0:0::1]:8765", ("::1", 8765)),
        ("[FE80::1]", ("fe80::1", None)),
        ("xn--bcher-kva.example", ("xn--bcher-kva.example", None)),
        (" example.com ", ("example.com", None)),
        ("example.com:0", ("example.com", 0)),
        ("example.com:65535", ("example.com", 65535)),
    ],
)
def test_parse_host(value, expected):
    assert parse_host(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        ".",
        "example.com:",
        "example.com:65536",
        "example.com:123456",
        "example.com:-1",
        "example.com:80:80",
        "::1",
        "[::1",
        "[::g]",
        "[127.0.0.1]",
        "exa mple.com",
        "example.com/path",
        "user@example.com",
        "bücher.example",
        "example.com\x00",
    ],
)
def test_parse_host_rejects(value):
    with pytest.raises(InvalidHeader) as info:
        parse_host(value)
    assert info.value.status == 400


@given(st.text(max_size=40))
def test_parse_host_accepts_or_raises_invalid_header(value):
    try:
        host, port = parse_host(value)
    except InvalidHeader:
        return
    assert host == host.lower()
    assert port is None or 0 <= port <= 65535


ALLOWED = AllowedHosts(
    [
        "example.com",
        "api.example.com:8443",
        "*.apps.example",
        "*.alt.example:9000",
        "127.0.0.1:8765",
        "[::1]",
        re.compile(r"pr-\d+\.preview\.example(:\d+)?"),
    ]
)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("example.com", True),
        ("EXAMPLE.com:1234", True),
        ("example.com.", True),
        ("www.example.com", False),
        ("badexample.com", False),
        ("api.example.com:8443", True),
        ("api.example.com", False),
        ("api.example.com:443", False),
        ("chat.apps.example", True),
        ("a.b.apps.example:1", True),
        ("apps.example", False),
        ("xapps.example", False),
        ("chat.alt.example:9000", True),
        ("chat.alt.example", False),
        ("127.0.0.1:8765", True),
        ("127.0.0.1", False),
        ("127.0.0.1:80", False),
        ("[::1]:8765", True),
        ("[0::1]", True),
        ("[::2]", False),
        ("pr-12.preview.example", True),
        ("pr-12.preview.example:8080", True),
        ("pr-x.preview.example", False),
        ("attacker.example", False),
    ],
)
def test_allowlist(value, allowed):
    assert ALLOWED.allows(value, default_port=80) is allowed


def test_default_ports():
    allowed = AllowedHosts(["example.com:443", "plain.example:80"])
    assert allowed.allows("example.com", default_port=443)
    assert not allowed.allows("example.com", default_port=80)
    assert allowed.allows("plain.example", default_port=80)
    assert allowed.allows("plain.example:80", default_port=443)


def test_star_allows_anything_well_formed():
    allowed = AllowedHosts(["*"])
    assert allowed.allows("anything.example:1", default_port=80)
    with pytest.raises(InvalidHeader):
        allowed.allows("not a host", default_port=80)


def test_empty_allowlist_allows_nothing():
    assert not AllowedHosts([]).allows("localhost", default_port=80)


@pytest.mark.parametrize("entry", ["", "example.com:", "*.", "*.:80", "a b", "[::1", "ex/ample"])
def test_invalid_entries(entry):
    with pytest.raises(ValueError, match="invalid allowed host"):
        AllowedHosts([entry])


def request(*hosts: str) -> Request:
    return Request("GET", "/", Headers([("Host", host) for host in hosts]))


def test_check_host():
    allowed = AllowedHosts(["example.com:443"])
    check_host(request("example.com"), allowed, secure=True)
    check_host(request("example.com:443"), allowed, secure=False)


def test_check_host_not_allowed_is_421():
    with pytest.raises(InvalidHost) as info:
        check_host(request("attacker.example"), AllowedHosts(["example.com"]), secure=False)
    assert info.value.status == 421
    response = response_for_error(info.value)
    assert response.status == 421
    assert b"attacker.example" in response.body


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ((), "missing Host header"),
        (("example.com", "example.com"), "more than one Host header"),
        (("example.com:x",), "invalid Host header"),
    ],
)
def test_check_host_malformed_is_400(hosts, message):
    with pytest.raises(InvalidHeader, match=message) as info:
        check_host(request(*hosts), AllowedHosts(["example.com"]), secure=False)
    assert not isinstance(info.value, InvalidHost)
    assert response_for_error(info.value).status == 400
