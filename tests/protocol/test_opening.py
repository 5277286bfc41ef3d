"""Tests for wsend.protocol.opening: what both I/O layers negotiate in the opening handshake.

The client's attempt is played against the server side of
:mod:`~wsend.protocol.handshake` (its request checked, its answer built there), so each test is
a whole handshake without I/O; both layers run the same code over real sockets in
``tests/asyncio/test_client.py`` and ``tests/sync/test_client.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from wsend.asyncio.client import parse_uri
from wsend.asyncio.connection import ConnectionOptions
from wsend.exceptions import NegotiationError
from wsend.protocol import handshake
from wsend.protocol.connection import Side, State
from wsend.protocol.deflate import ClientDeflate, PerMessageDeflate, ServerDeflate
from wsend.protocol.http import Headers, Request, Response
from wsend.protocol.opening import (
    REDIRECT_STATUSES,
    ClientHandshake,
    ServerNegotiation,
    check_tls_setting,
    deflate_setting,
    hook_list,
    with_credentials,
)


@dataclass
class Settings:
    """What a ``connect`` object offers."""

    origin: str | None = None
    subprotocols: list[str] = field(default_factory=list)
    deflate: ClientDeflate | None = None
    user_agent: str | None = handshake.USER_AGENT


def answer(
    opening: ClientHandshake, *, subprotocol: str | None = None, extensions: str | None = None
) -> Response:
    """The server's 101 to ``opening``'s request, after checking it as a server does."""
    key = handshake.check_request(opening.request)
    return handshake.build_accept(
        opening.request, key, subprotocol=subprotocol, extensions=extensions
    )


def test_request():
    uri = parse_uri("wss://example.com:8443/chat?room=1")
    settings = Settings(origin="https://example.com", subprotocols=["v2", "v1"], user_agent="ua")
    opening = ClientHandshake(uri, Headers({"Cookie": "a=b"}), settings)
    request = opening.request
    assert request.target == "/chat?room=1"
    headers = request.headers
    assert headers["Host"] == "example.com:8443"
    assert headers["Sec-WebSocket-Key"] == opening.key
    assert headers["Origin"] == "https://example.com"
    assert headers["Sec-WebSocket-Protocol"] == "v2, v1"
    assert headers["User-Agent"] == "ua"
    assert headers["Cookie"] == "a=b"
    assert "Sec-WebSocket-Extensions" not in headers


def test_each_attempt_has_its_own_key():
    uri = parse_uri("ws://example.com/")
    first = ClientHandshake(uri, Headers(), Settings())
    second = ClientHandshake(uri, Headers(), Settings())
    assert first.key != second.key


def test_accept_plain():
    opening = ClientHandshake(parse_uri("ws://example.com/"), Headers(), Settings())
    options = ConnectionOptions(max_message_size=1000, max_frame_size=100)
    subprotocol, extensions, proto = opening.accept(answer(opening), options)
    assert (subprotocol, extensions) == (None, [])
    assert proto.side is Side.CLIENT
    assert proto.state is State.OPEN
    assert proto.max_message_size == 1000
    assert proto.max_frame_size == 100
    assert proto.defer_failure


def test_accept_subprotocol_and_deflate():
    settings = Settings(subprotocols=["v1"], deflate=ClientDeflate())
    opening = ClientHandshake(parse_uri("ws://example.com/"), Headers(), settings)
    offer = handshake.parse_extensions(opening.request.headers)
    assert [name for name, _ in offer] == ["permessage-deflate"]
    result = ServerDeflate().negotiate(offer[0][1])
    assert result is not None
    accepted = handshake.build_extensions([("permessage-deflate", result[0])])
    response = answer(opening, subprotocol="v1", extensions=accepted)
    subprotocol, extensions, proto = opening.accept(response, ConnectionOptions())
    assert (subprotocol, extensions) == ("v1", ["permessage-deflate"])
    assert proto.deflate is not None


@pytest.mark.parametrize(
    ("deflate", "extensions"),
    [
        (None, "permessage-deflate"),
        (ClientDeflate(), "x-other"),
        (ClientDeflate(), "permessage-deflate, permessage-deflate"),
    ],
    ids=["not-offered", "unknown", "twice"],
)
def test_accept_refuses_extensions_not_offered(deflate, extensions):
    opening = ClientHandshake(parse_uri("ws://example.com/"), Headers(), Settings(deflate=deflate))
    response = answer(opening, extensions=extensions)
    with pytest.raises(NegotiationError, match="unexpected extension"):
        opening.accept(response, ConnectionOptions())


@pytest.mark.parametrize("status", sorted(REDIRECT_STATUSES))
def test_redirects(status):
    assert ClientHandshake.redirects(Response(status, Headers({"Location": "/next"})))


@pytest.mark.parametrize(
    "response",
    [Response(302, Headers()), Response(300, Headers({"Location": "/next"})), Response(101)],
    ids=["no-location", "300", "101"],
)
def test_does_not_redirect(response):
    assert not ClientHandshake.redirects(response)


def test_with_credentials():
    headers = Headers({"Cookie": "a=b"})
    uri = parse_uri("ws://al%40ice:s%3Acret@example.com/")
    sent = with_credentials(uri, headers)
    assert sent["Authorization"] == handshake.build_basic_auth("al@ice", "s:cret")
    assert sent["Cookie"] == "a=b"
    assert "Authorization" not in headers  # a copy


def test_with_credentials_keeps_explicit_authorization():
    uri = parse_uri("ws://alice:secret@example.com/")
    sent = with_credentials(uri, Headers({"Authorization": "Bearer t"}))
    assert sent.get_all("Authorization") == ["Bearer t"]
    assert with_credentials(parse_uri("ws://example.com/"), Headers()) == Headers()


# -- server ------------------------------------------------------------------------------------


@dataclass
class ServerSettings:
    """What a ``Server`` accepts."""

    deflate: ServerDeflate | None = None
    subprotocols: list[str] = field(default_factory=list)
    select_subprotocol: Callable[[Any, list[str]], str | None] | None = None
    require_subprotocol: bool = False
    extra_headers: dict[str, str] | None = None
    server_header: str | None = "test-server"


class Negotiating(ServerNegotiation):
    """A server connection's handshake state, as both I/O layers keep it."""

    def __init__(self, server: ServerSettings) -> None:
        self.server = server
        self.options = ConnectionOptions(max_message_size=1000)
        self.protocol: str | None = None
        self.extensions: list[str] = []
        self._deflate: PerMessageDeflate | None = None
        self._protocol = None


def upgrade(subprotocols: str | None = None, extensions: str | None = None) -> tuple[Request, str]:
    """A checked upgrade request offering ``subprotocols`` and ``extensions``; its key."""
    headers = Headers(
        [
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    if subprotocols is not None:
        headers["Sec-WebSocket-Protocol"] = subprotocols
    if extensions is not None:
        headers["Sec-WebSocket-Extensions"] = extensions
    request = Request("GET", "/", headers)
    return request, handshake.check_request(request)


def test_accept_upgrade_plain():
    conn = Negotiating(ServerSettings(extra_headers={"X-Extra": "1"}))
    request, key = upgrade(subprotocols="v1", extensions="permessage-deflate")
    response = conn._accept_upgrade(request, key)
    assert response.status == 101
    assert response.headers["Sec-WebSocket-Accept"] == handshake.accept_key(key)
    assert response.headers["Server"] == "test-server"
    assert response.headers["X-Extra"] == "1"
    assert "Sec-WebSocket-Protocol" not in response.headers
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert (conn.protocol, conn.extensions) == (None, [])
    assert conn._protocol is not None
    assert conn._protocol.side is Side.SERVER
    assert conn._protocol.max_message_size == 1000
    assert conn._protocol.deflate is None


def test_accept_upgrade_deflate():
    conn = Negotiating(ServerSettings(deflate=ServerDeflate()))
    request, key = upgrade(extensions="x-other, permessage-deflate; client_max_window_bits")
    response = conn._accept_upgrade(request, key)
    assert response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    assert conn.extensions == ["permessage-deflate"]
    assert conn._protocol is not None
    assert conn._protocol.deflate is conn._deflate is not None


def test_accept_upgrade_deflate_unacceptable_offer():
    conn = Negotiating(ServerSettings(deflate=ServerDeflate()))
    request, key = upgrade(extensions="permessage-deflate; server_max_window_bits=7")
    response = conn._accept_upgrade(request, key)
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert conn.extensions == []
    assert conn._deflate is None


@pytest.mark.parametrize(
    ("supported", "offered", "chosen"),
    [([], "v1", None), (["v2", "v1"], "v1, v2", "v2"), (["v3"], "v1", None), (["v1"], None, None)],
)
def test_choose_subprotocol_supported(supported, offered, chosen):
    conn = Negotiating(ServerSettings(subprotocols=supported))
    request, key = upgrade(subprotocols=offered)
    response = conn._accept_upgrade(request, key)
    assert conn.protocol == chosen
    assert response.headers.get("Sec-WebSocket-Protocol") == chosen


def test_choose_subprotocol_required():
    conn = Negotiating(ServerSettings(subprotocols=["v3"], require_subprotocol=True))
    request, key = upgrade(subprotocols="v1")
    with pytest.raises(NegotiationError, match="no supported subprotocol"):
        conn._accept_upgrade(request, key)


def test_choose_subprotocol_hook():
    calls = []

    def select(ws: Any, offered: list[str]) -> str | None:
        calls.append((ws, offered))
        return offered[-1]

    conn = Negotiating(ServerSettings(subprotocols=["v1"], select_subprotocol=select))
    request, key = upgrade(subprotocols="v1, v2")
    conn._accept_upgrade(request, key)
    assert calls == [(conn, ["v1", "v2"])]
    assert conn.protocol == "v2"


def test_choose_subprotocol_hook_choosing_what_was_not_offered():
    conn = Negotiating(ServerSettings(select_subprotocol=lambda ws, offered: "v9"))
    request, key = upgrade(subprotocols="v1")
    with pytest.raises(NegotiationError, match="was not offered"):
        conn._accept_upgrade(request, key)


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [ClientDeflate, ServerDeflate])
def test_deflate_setting(kind):
    assert isinstance(deflate_setting("deflate", kind), kind)
    assert deflate_setting(None, kind) is None
    custom = kind()
    assert deflate_setting(custom, kind) is custom


@pytest.mark.parametrize(
    ("compression", "kind"),
    [("gzip", ClientDeflate), (ServerDeflate(), ClientDeflate), (ClientDeflate(), ServerDeflate)],
)
def test_deflate_setting_refuses_others(compression, kind):
    with pytest.raises(ValueError, match="unsupported compression"):
        deflate_setting(compression, kind)


@pytest.mark.parametrize("ssl", [None, True, object()])
def test_check_tls_setting_secure(ssl):
    check_tls_setting(ssl, True)


@pytest.mark.parametrize("ssl", [None, False])
def test_check_tls_setting_plain(ssl):
    check_tls_setting(ssl, False)


def test_check_tls_setting_mismatch():
    with pytest.raises(ValueError, match="only for wss://"):
        check_tls_setting(True, False)
    with pytest.raises(ValueError, match="need TLS"):
        check_tls_setting(False, True)


def test_hook_list():
    def hook(ws: Any, request: Request) -> None:
        return None

    assert hook_list(None) == []
    assert hook_list(hook) == [hook]
    hooks = (hook, hook)
    assert hook_list(hooks) == [hook, hook]
    assert hook_list([]) == []
