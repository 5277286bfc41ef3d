"""End to end: every refusal (authentication, authorization), hostile input and rate limits.

Each test reads the exact reply and close code a client gets over a real socket.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsend.exceptions import ConnectionClosed
from wsend.hub import node as hub_node
from wsend.hub.client import HubClient, HubDisconnected
from wsend.hub.codes import DisconnectCode, ErrorCode, HubError
from wsend.hub.options import JwtOptions, RateLimit
from wsend.hub.session import Session

from .clock import T0, Clock
from .e2e import AUDIENCE, ISSUER, RawClient, error_code, options, raw, run_hub, token, wait_until


async def refused_at_connect(url: str, token_: str | None) -> tuple[int | None, int]:
    """Connect with ``token_``; return the error code and the close code that follow."""
    async with raw(url) as client:
        reply = await client.connect(token_)
        return error_code(reply), await client.closed()


@pytest.mark.parametrize(
    ("make", "error", "close"),
    [
        (lambda: "not-a-jwt", ErrorCode.UNAUTHORIZED, DisconnectCode.UNAUTHORIZED),
        (lambda: token("ann", key="another-secret" * 3), 101, 4501),
        (lambda: token("ann", exp=T0 - 1), ErrorCode.TOKEN_EXPIRED, DisconnectCode.TOKEN_EXPIRED),
        (lambda: token("ann", nbf=T0 + 60), 101, 4501),
        (lambda: token("ann", aud="someone-else"), 101, 4501),
        (lambda: token("ann", iss="https://evil.example"), 101, 4501),
        (lambda: None, 101, 4501),  # anonymous, not allowed here
    ],
    ids=["garbage", "signature", "expired", "nbf", "aud", "iss", "anonymous"],
)
async def test_connect_refusals(make: Any, error: int, close: int) -> None:
    async with run_hub(clock=Clock()) as running:
        assert await refused_at_connect(running.url, make()) == (error, close)


async def test_other_command_before_connect() -> None:
    async with run_hub() as running, raw(running.url) as client:
        assert error_code(await client.call("ping")) == ErrorCode.UNAUTHORIZED
        assert await client.closed() == DisconnectCode.UNAUTHORIZED


async def test_connect_callback_refuses() -> None:
    async with run_hub() as running:
        hub = running.hub

        @hub.on_connect_callback
        def check(session: Session, data: Any) -> Any:
            if data == "let me in":
                return {"welcome": session.user}
            raise HubError(ErrorCode.UNAUTHORIZED, "no")

        async with raw(running.url) as client:
            reply = await client.call("connect", token=token("ann"), data="let me in")
            assert reply["result"]["data"] == {"welcome": "ann"}
        assert await refused_at_connect(running.url, token("ann")) == (101, 4501)


def _pem_pair(private: Any) -> tuple[str, str]:
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_public_key_algorithms(algorithm: str) -> None:
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    private_pem, public_pem = _pem_pair(private)
    jwt = JwtOptions(public_key=public_pem, audience=AUDIENCE, issuer=ISSUER, leeway=0)
    async with run_hub(options(jwt=jwt)) as running:
        good = token("ann", key=private_pem, algorithm=algorithm)
        async with raw(running.url) as client:
            assert (await client.connect(good))["result"]["user"] == "ann"
        # HS256 is off without a secret: an HMAC token can't pass, whatever its key.
        forged = token("ann", key=os.urandom(32).hex(), algorithm="HS256")
        assert await refused_at_connect(running.url, forged) == (101, 4501)


async def test_token_in_the_endpoint_url() -> None:
    async with run_hub(clock=Clock()) as running:
        async with raw(f"{running.url}?token={token('ann')}") as client:
            assert (await client.connect())["result"]["user"] == "ann"
        async with raw(f"{running.url}?token={token('ann')}") as client:  # connect's wins
            assert (await client.connect(token("ben")))["result"]["user"] == "ben"
        url = f"{running.url}?token={token('ann', exp=T0 - 1)}"
        assert await refused_at_connect(url, None) == (109, 4004)


async def test_anonymous_where_configured() -> None:
    async with run_hub(options(allow_anonymous=True)) as running, raw(running.url) as client:
        assert (await client.connect())["result"]["user"] == ""
        assert "result" in await client.call("subscribe", channel="feed:open")
        denied = await client.call("subscribe", channel="chat:room")  # authenticated only
        assert error_code(denied) == ErrorCode.PERMISSION_DENIED


async def test_token_expiry_and_refresh_in_band(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_node, "_TICK", 0.01)
    clock = Clock()
    async with run_hub(clock=clock) as running, raw(running.url) as client:
        result = (await client.connect(token("ann", exp=T0 + 10)))["result"]
        assert (result["expires"], result["ttl"]) == (True, 10)
        refreshed = await client.call("refresh", token=token("ann", exp=T0 + 100))
        assert refreshed["result"] == {"expires": True, "ttl": 100}
        other = await client.call("refresh", token=token("ben", exp=T0 + 100))
        assert error_code(other) == ErrorCode.UNAUTHORIZED
        stale = await client.call("refresh", token=token("ann", exp=T0 - 1))
        assert error_code(stale) == ErrorCode.TOKEN_EXPIRED
        clock.now = T0 + 50  # past the first token's expiry: the refresh keeps it open
        assert "result" in await client.call("ping")
        clock.now = T0 + 100
        assert await client.closed() == DisconnectCode.TOKEN_EXPIRED


async def test_python_client_refreshes_after_4004(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_node, "_TICK", 0.01)
    clock = Clock()
    issued: list[float] = []

    async def get_token() -> str:
        issued.append(clock.now)
        return token("ann", exp=clock.now + 5)

    async with run_hub(clock=clock) as running:
        client = HubClient(running.url, get_token=get_token, backoff_min=0.01, backoff_max=0.02)
        async with client:
            first = client.info
            clock.now += 10  # expired without refresh: 4004, new token, reconnect
            await wait_until(lambda: client.info is not first and client.state == "connected")
            assert len(issued) >= 2


@pytest.mark.parametrize(
    ("channel", "claims", "error"),
    [
        ("secret:room", None, ErrorCode.PERMISSION_DENIED),  # channel token missing
        ("secret:room", {"channel": "secret:other"}, ErrorCode.PERMISSION_DENIED),
        ("secret:room", {"channel": "secret:room", "sub": "ben"}, ErrorCode.PERMISSION_DENIED),
        ("secret:room", {"channel": "secret:room", "exp": T0 - 1}, ErrorCode.TOKEN_EXPIRED),
        ("secret:room", {"channel": "secret:room"}, None),
        ("notes:#ann", None, None),
        ("notes:#ben", None, ErrorCode.PERMISSION_DENIED),
        ("dm:#ann,ben", None, None),
        ("dm:#ben,cyd", None, ErrorCode.PERMISSION_DENIED),
        ("vip:lounge", None, ErrorCode.PERMISSION_DENIED),  # the callback says no
        ("nope:room", None, ErrorCode.UNKNOWN_CHANNEL),  # unknown namespace
        ("bad channel", None, ErrorCode.UNKNOWN_CHANNEL),
    ],
)
async def test_subscribe_authorization(channel: str, claims: Any, error: int | None) -> None:
    async with run_hub(clock=Clock()) as running, raw(running.url, token("ann")) as client:
        hub = running.hub
        hub.on_subscribe_callback(lambda session, name, data: data == "vip pass")
        fields: dict[str, Any] = {"channel": channel}
        if claims is not None:
            claims = dict(claims)
            fields["token"] = token(claims.pop("sub", "ann"), **claims)
        assert error_code(await client.call("subscribe", **fields)) == error


async def test_subscribe_grants() -> None:
    async with run_hub() as running:
        hub = running.hub
        hub.on_subscribe_callback(lambda session, name, data: data == "vip pass")
        with_claim = token("ann", channels=["secret:granted"])
        async with raw(running.url, with_claim) as client:
            assert "result" in await client.call("subscribe", channel="secret:granted")
            vip = await client.call("subscribe", channel="vip:lounge", data="vip pass")
            assert "result" in vip
            again = await client.call("subscribe", channel="vip:lounge", data="vip pass")
            assert error_code(again) == ErrorCode.ALREADY_SUBSCRIBED


async def test_publish_and_read_authorization() -> None:
    async with run_hub() as running, raw(running.url, token("ann")) as client:
        refused = await client.call("publish", channel="feed:news", data="x")
        assert error_code(refused) == ErrorCode.PERMISSION_DENIED  # namespace disallows it
        other = await client.call("publish", channel="notes:#ben", data="x")
        assert error_code(other) == ErrorCode.PERMISSION_DENIED
        assert "result" in await client.call("publish", channel="notes:#ann", data="x")
        presence_off = await client.call("presence", channel="feed:news")
        assert error_code(presence_off) == ErrorCode.NOT_AVAILABLE
        history_off = await client.call("history", channel="notes:#ann")
        assert error_code(history_off) == ErrorCode.NOT_AVAILABLE
        secret = await client.call("presence_stats", channel="secret:room")
        assert error_code(secret) == ErrorCode.NOT_AVAILABLE
        assert "result" in await client.call("presence_stats", channel="chat:room")


async def read_until_closed(client: RawClient) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            frames.extend(await client.frames())
    return frames


GARBAGE: list[Any] = [
    b"\x00\xff\xfe garbage",
    "not json at all",
    "[1, 2, 3]",
    '{"id": 1}',
    '{"id": 2, "method": "teleport"}',
    '{"id": 3, "method": "publish", "channel": 5}',
    '{"id": -4, "method": "ping"}',
    "[]",
    '{"method": "ping"}',
    "{" * 5000,
]


async def test_garbage_gets_107_then_4500_and_spares_others() -> None:
    async with run_hub() as running, raw(running.url, token("ben")) as bystander:
        await bystander.call("subscribe", channel="chat:room")
        async with raw(running.url, token("ann")) as attacker:
            for message in GARBAGE:
                await attacker.ws.send(message)
            replies = await read_until_closed(attacker)
            assert attacker.ws.close_code == DisconnectCode.BAD_REQUEST
            assert {error_code(r) for r in replies} == {ErrorCode.BAD_REQUEST}
            assert {r["id"] for r in replies} >= {1, 2, 3}
        await running.hub.publish("chat:room", "still here")
        assert (await bystander.push())["data"] == "still here"
        assert "result" in await bystander.call("ping")


async def test_random_bytes_never_crash_the_hub() -> None:
    rng = random.Random(3)
    tolerant = options(max_bad_frames=1000)
    async with run_hub(tolerant) as running, raw(running.url, token("ann")) as client:
        for _ in range(200):
            blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            await client.ws.send(blob)
        assert "result" in await client.call("ping")


async def test_message_too_big_closes_1009() -> None:
    small = options(max_message_size=1024)
    async with run_hub(small) as running, raw(running.url, token("ann")) as client:
        await client.ws.send("x" * 4096)
        assert await client.closed() == 1009


async def test_rate_limit_111_then_4007() -> None:
    limits = options(commands_rate=RateLimit(0.01, 3), rate_limit_disconnect_after=3)
    async with run_hub(limits) as running, raw(running.url, token("ann")) as client:
        codes = [error_code(await client.call("ping")) for _ in range(4)]
        assert codes == [None, None, 111, 111]  # connect took the first token
        assert error_code(await client.call("ping")) == ErrorCode.TOO_MANY_REQUESTS
        assert await client.closed() == DisconnectCode.TOO_MANY_REQUESTS


async def test_publication_rate_limit() -> None:
    limits = options(publications_rate=RateLimit(0.01, 1))
    async with run_hub(limits) as running, raw(running.url, token("ann")) as client:
        assert "result" in await client.call("publish", channel="chat:a", data=1)
        reply = await client.call("publish", channel="chat:a", data=2)
        assert reply["error"] == {"code": 111, "message": "too many requests", "temporary": True}


async def test_terminal_codes_stop_the_python_client() -> None:
    async with run_hub() as running:
        client = HubClient(running.url, token="garbage", backoff_min=0.01, backoff_max=0.02)
        with pytest.raises((HubDisconnected, HubError)):
            await client.connect()
        assert client.state == "closed"
        await client.close()
