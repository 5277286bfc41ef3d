"""Tests for wsend.protocol.opening: what both I/O layers negotiate in the opening handshake.

The client's attempt is played against the server side of
:mod:`~wsend.protocol.handshake` (its request checked, its answer built there), so each test is
a whole handshake without I/O; both layers run the same code over real sockets in
``tests/asyncio/test_client.py`` and ``tests/sync/test_client.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from wsend.asyncio.client import parse_uri
from wsend.asyncio.connection import ConnectionOptions
from wsend.exceptions import NegotiationError
from wsend.protocol import handshake
from wsend.protocol.connection import Side, State
from wsend.protocol.deflate import ClientDeflate, ServerDeflate
from wsend.protocol.http import Headers, Response
from wsend.protocol.opening import REDIRECT_STATUSES, ClientHandshake, with_credentials


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
