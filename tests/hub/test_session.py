"""Tests of the sans-I/O session with the memory engine, an injected clock and a small test node.

Also covers the options (channel names, namespaces, loading from a dict) and the rate limiter,
which the session applies.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsend.hub.auth import TokenVerifier, make_token
from wsend.hub.broker import ClientInfo, Publication
from wsend.hub.codes import ErrorCode, HubError
from wsend.hub.memory import MemoryBroker, MemoryPresence
from wsend.hub.options import (
    ConfigError,
    HubOptions,
    JwtOptions,
    NamespaceOptions,
    RateLimit,
    parse_channel,
)
from wsend.hub.ratelimit import RejectionWindow, TokenBucket
from wsend.hub.session import Node, RpcHandler, Session
from wsend.hub.wire import JSON, MSGPACK, Codec, PubFrames

from .clock import T0, Clock

SECRET = "test-secret-" * 6


class Conn:
    """The sink of one session: records wakeups and the close request."""

    def __init__(self) -> None:
        self.wakeups = 0
        self.closed: tuple[int, str] | None = None

    def wakeup(self) -> None:
        self.wakeups += 1

    def write_now(self, message: bytes) -> bool:
        return False  # everything goes through the queue, where these tests read it

    def close(self, code: int, reason: str) -> None:
        assert self.closed is None, "close requested twice"
        self.closed = (code, reason)


class TestNode:
    """A real node over the memory engine: channel -> sessions, broker fan-out, callbacks."""

    __test__ = False

    def __init__(self, options: HubOptions, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self.broker = MemoryBroker(clock, cleanup_interval=0)
        self.presence = MemoryPresence(clock, ttl=60)
        self.verifier: TokenVerifier | None = TokenVerifier(secret=SECRET, leeway=0)
        self.rpc_handlers: dict[str, RpcHandler] = {}
        self.node_name = "n1"
        self.subscribers: dict[str, dict[Session, None]] = {}
        self.allowed_by_callback: set[str] = set()
        self.connect_data: Any = None

    async def start(self) -> None:
        await self.broker.start(self._on_publication)

    async def _on_publication(self, channel: str, publication: Publication | None) -> None:
        sessions = list(self.subscribers.get(channel, ()))
        if publication is not None:
            frames = PubFrames(channel, publication)
            sessions = [
                s for s in sessions if not s.deliver_publication(channel, publication, frames)
            ]
        for session in sessions:
            await session.unsubscribe(channel)

    async def on_connect(self, session: Session, data: Any) -> Any:
        if data == "refuse":
            raise HubError(ErrorCode.PERMISSION_DENIED)
        if data == "later":
            raise HubError(1001, "try later", temporary=True)
        return {"echo": data} if data is not None else self.connect_data

    async def can_subscribe(self, session: Session, channel: str, data: Any) -> bool:
        return channel in self.allowed_by_callback or data == "let me in"

    async def add_subscription(self, session: Session, channel: str) -> None:
        self.subscribers.setdefault(channel, {})[session] = None
        await self.broker.subscribe(channel)

    async def remove_subscription(self, session: Session, channel: str) -> None:
        sessions = self.subscribers.get(channel, {})
        sessions.pop(session, None)
        if not sessions:
            self.subscribers.pop(channel, None)
            await self.broker.unsubscribe(channel)

    async def announce(
        self, kind: Literal["join", "leave"], channel: str, info: ClientInfo
    ) -> None:
        for session in list(self.subscribers.get(channel, ())):
            if kind == "join":
                session.deliver_join(channel, info)
            else:
                session.deliver_leave(channel, info)


class Client:
    """One session with its sink: send commands, read decoded frames."""

    def __init__(self, node: TestNode, codec: Codec = JSON) -> None:
        self.conn = Conn()
        self.session = Session(node, self.conn, codec)
        self.codec = codec
        self.next_id = 0

    def encode(self, value: Any) -> str | bytes:
        if self.codec is JSON:
            return msgspec.json.encode(value).decode()
        return msgspec.msgpack.encode(value)

    def frames(self) -> list[dict[str, Any]]:
        """Everything queued, decoded, in order."""
        out: list[dict[str, Any]] = []
        while (message := self.session.pop_message(1 << 20)) is not None:
            assert isinstance(message, bytes if self.codec.binary else str)
            decoded = (
                msgspec.json.decode(message)
                if self.codec is JSON
                else msgspec.msgpack.decode(message)
            )
            out.extend(decoded if isinstance(decoded, list) else [decoded])
        return out

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command; return its reply (pushes queued before it are kept in .pushes)."""
        self.next_id += 1
        await self.session.handle_message(
            self.encode({"id": self.next_id, "method": method, **params})
        )
        return self.reply(self.next_id)

    def reply(self, id: int) -> dict[str, Any]:
        frames = self.frames()
        self.pushes = [f for f in frames if "push" in f]
        replies = [f for f in frames if f.get("id") == id]
        assert len(replies) == 1, frames
        return replies[0]

    async def call(self, method: str, **params: Any) -> Any:
        reply = await self.send(method, **params)
        assert "error" not in reply, reply
        return reply["result"]

    async def error(self, method: str, **params: Any) -> int:
        reply = await self.send(method, **params)
        assert "result" not in reply, reply
        code: int = reply["error"]["code"]
        return code

    async def connect(self, user: str | None = "alice", **claims: Any) -> dict[str, Any]:
        token = None if user is None else make_token(SECRET, user, **claims)
        result: dict[str, Any] = await self.call("connect", **({"token": token} if token else {}))
        return result


NAMESPACES = {
    "": NamespaceOptions(publish=True),
    "chat": NamespaceOptions(
        subscribe="authenticated",
        publish=True,
        presence=True,
        join_leave=True,
        history_size=10,
        history_ttl=300,
        recovery=True,
    ),
    "feed": NamespaceOptions(history_size=5, history_ttl=300),
    "secret": NamespaceOptions(subscribe="token", publish=True),
    "app": NamespaceOptions(subscribe="callback"),
    "dm": NamespaceOptions(subscribe="token", publish=True, history_size=10, recovery=True),
    "ro": NamespaceOptions(publish=False),
    "ticker": NamespaceOptions(publish=True, slow_consumer="conflate", queue_max_bytes=600),
    "slow": NamespaceOptions(publish=True, queue_max_bytes=600),
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def options() -> HubOptions:
    return HubOptions(namespaces=dict(NAMESPACES), allow_anonymous=True, node_name="n1")


@pytest.fixture
async def node(options: HubOptions, clock: Clock) -> AsyncIterator[TestNode]:
    node = TestNode(options, clock)
    await node.start()
    yield node
    await node.broker.close()


@pytest.fixture(params=[JSON, MSGPACK], ids=lambda c: c.name)
def codec(request: pytest.FixtureRequest) -> Codec:
    result: Codec = request.param
    return result


@pytest.fixture
def client(node: TestNode, codec: Codec) -> Client:
    return Client(node, codec)


# -- connect ------------------------------------------------------------------------------------


async def test_connect_with_token(client: Client, clock: Clock) -> None:
    result = await client.connect("alice", exp=T0 + 3600)
    assert result == {
        "client": client.session.client,
        "user": "alice",
        "expires": True,
        "ttl": 3600,
        "ping": 20,
        "node": "n1",
    }
    assert len(client.session.client) == 32
    assert client.conn.wakeups >= 1


async def test_connect_anonymous_and_callback_data(client: Client) -> None:
    result = await client.call("connect", data={"hello": 1}, name="wsend.py", version="0")
    assert result["user"] == ""
    assert result["expires"] is False
    assert "ttl" not in result
    assert result["data"] == {"echo": {"hello": 1}}


async def test_connect_anonymous_refused(node: TestNode, options: HubOptions) -> None:
    node.options = HubOptions(namespaces=options.namespaces, allow_anonymous=False)
    client = Client(node)
    assert await client.error("connect") == ErrorCode.UNAUTHORIZED
    assert client.conn.closed == (4501, "unauthorized")


@pytest.mark.parametrize("token", ["junk", make_token("other-secret-" * 5, "alice")])
async def test_connect_bad_token(client: Client, token: str) -> None:
    assert await client.error("connect", token=token) == ErrorCode.UNAUTHORIZED
    assert client.conn.closed is not None
    assert client.conn.closed[0] == 4501
    await client.session.handle_message(client.encode({"id": 9, "method": "ping"}))
    assert client.frames() == []


async def test_connect_expired_token(client: Client) -> None:
    token = make_token(SECRET, "alice", exp=T0 - 1)
    assert await client.error("connect", token=token) == ErrorCode.TOKEN_EXPIRED
    assert client.conn.closed is not None
    assert client.conn.closed[0] == 4004


async def test_connect_without_verifier(node: TestNode) -> None:
    node.verifier = None
    client = Client(node)
    assert await client.error("connect", token="x") == ErrorCode.UNAUTHORIZED


async def test_connect_refused_by_application(client: Client) -> None:
    assert await client.error("connect", data="refuse") == ErrorCode.PERMISSION_DENIED
    assert client.conn.closed is not None
    assert client.conn.closed[0] == 4501


async def test_connect_refused_for_now_by_application(client: Client) -> None:
    reply = await client.send("connect", data="later")
    assert reply["error"] == {"code": 1001, "message": "try later", "temporary": True}
    assert client.conn.closed is None
    assert "client" in await client.connect()


async def test_close_reason_fits_a_close_frame(client: Client) -> None:
    client.session.close(4000, "é" * 100)  # 200 bytes of UTF-8
    assert client.conn.closed is not None
    reason = client.conn.closed[1]
    assert reason == "é" * 61
    assert len(reason.encode()) <= 123


async def test_token_info_must_be_encodable(client: Client) -> None:
    # Presence and join pushes carry it to clients of both encodings.
    assert await client.error("connect", token=make_token(SECRET, "al", info=2**70)) == 101
    assert client.conn.closed == (4501, "unauthorized")


async def test_channel_token_info_must_be_encodable(client: Client) -> None:
    await client.connect("alice")
    bad = make_token(SECRET, "alice", channel="secret:x", info={"n": -(2**70)})
    assert await client.error("subscribe", channel="secret:x", token=bad) == 103


async def test_connect_twice(client: Client) -> None:
    await client.connect()
    assert await client.error("connect") == ErrorCode.BAD_REQUEST


async def test_connect_reply_that_cant_be_encoded(node: TestNode, client: Client) -> None:
    node.connect_data = object()  # the application's callback returns something unencodable
    assert await client.error("connect") == ErrorCode.INTERNAL
    assert not client.session.connected
    assert client.conn.closed is None
    node.connect_data = {"ok": True}
    assert (await client.connect())["data"] == {"ok": True}


async def test_ttl_of_a_far_expiry_fits_any_client(client: Client, clock: Clock) -> None:
    result = await client.connect("alice", exp=1e300)
    assert result["ttl"] == 2**31 - 1
    assert await client.error("refresh", token=make_token(SECRET, "alice", exp=-1.0)) == 109
    refreshed = await client.call("refresh", token=make_token(SECRET, "alice", exp=clock.now + 9))
    assert refreshed == {"expires": True, "ttl": 9}


async def test_connect_first(client: Client) -> None:
    assert await client.error("ping") == ErrorCode.UNAUTHORIZED
    assert client.conn.closed == (4501, "connect first")


async def test_connect_first_stops_batch(client: Client) -> None:
    batch = [{"id": 1, "method": "ping"}, {"id": 2, "method": "connect"}]
    await client.session.handle_message(client.encode(batch))
    frames = client.frames()
    assert [f["id"] for f in frames] == [1]
    assert not client.session.connected


async def test_connect_and_subscribe_in_one_batch(client: Client) -> None:
    batch = [
        {"id": 1, "method": "connect"},
        {"id": 2, "method": "subscribe", "channel": "news"},
        {"id": 3, "method": "ping"},
    ]
    await client.session.handle_message(client.encode(batch))
    assert [(f["id"], "result" in f) for f in client.frames()] == [(1, True), (2, True), (3, True)]


async def test_connect_timeout(client: Client, clock: Clock) -> None:
    client.session.check_expiry(clock.now + 9.9)
    assert client.conn.closed is None
    client.session.check_expiry(clock.now + 10)
    assert client.conn.closed == (4501, "connect timeout")


# -- expiry and refresh ---------------------------------------------------------------------------


async def test_expiry_closes_with_4004(client: Client, clock: Clock) -> None:
    await client.connect("alice", exp=T0 + 60)
    client.session.check_expiry(T0 + 59)
    assert client.conn.closed is None
    client.session.check_expiry(T0 + 60)
    assert client.conn.closed == (4004, "token expired")


async def test_refresh_extends_expiry(client: Client, clock: Clock) -> None:
    await client.connect("alice", exp=T0 + 60)
    clock.advance(30)
    result = await client.call("refresh", token=make_token(SECRET, "alice", exp=T0 + 120))
    assert result == {"expires": True, "ttl": 90}
    client.session.check_expiry(T0 + 100)
    assert client.conn.closed is None
    result = await client.call("refresh", token=make_token(SECRET, "alice"))
    assert result == {"expires": False}
    client.session.check_expiry(T0 + 10_000)
    assert client.conn.closed is None


async def test_refresh_errors(client: Client, clock: Clock) -> None:
    await client.connect("alice", exp=T0 + 60)
    other = make_token(SECRET, "mallory", exp=T0 + 600)
    assert await client.error("refresh", token=other) == ErrorCode.UNAUTHORIZED
    expired = make_token(SECRET, "alice", exp=T0 - 1)
    assert await client.error("refresh", token=expired) == ErrorCode.TOKEN_EXPIRED
    assert await client.error("refresh", token="junk") == ErrorCode.UNAUTHORIZED
    assert client.conn.closed is None
    client.session.node.verifier = None  # type: ignore[misc]
    assert await client.error("refresh", token="x") == ErrorCode.UNAUTHORIZED


# -- subscribe permissions ------------------------------------------------------------------------


async def test_subscribe_default_namespace(client: Client) -> None:
    await client.connect(None)
    assert await client.call("subscribe", channel="news") == {"recoverable": False}
    assert client.session.channels == ["news"]


async def test_subscribe_authenticated_policy(node: TestNode) -> None:
    anonymous, alice = Client(node), Client(node)
    await anonymous.connect(None)
    await alice.connect("alice")
    assert await anonymous.error("subscribe", channel="chat:x") == ErrorCode.PERMISSION_DENIED
    result = await alice.call("subscribe", channel="chat:x")
    assert result["recoverable"] is True
    assert result["offset"] == 0
    assert isinstance(result["epoch"], str)


async def test_subscribe_unknown_namespace_and_bad_names(client: Client) -> None:
    await client.connect()
    assert await client.error("subscribe", channel="nope:x") == ErrorCode.UNKNOWN_CHANNEL
    for bad in ["", "has space", "x" * 256, "a:b#", "é", "a*b", "#a,,b"]:
        assert await client.error("subscribe", channel=bad) == ErrorCode.UNKNOWN_CHANNEL


async def test_subscribe_token_policy(client: Client, clock: Clock) -> None:
    await client.connect("alice")
    channel = "secret:plans"
    assert await client.error("subscribe", channel=channel) == ErrorCode.PERMISSION_DENIED
    wrong_user = make_token(SECRET, "bob", channel=channel)
    assert await client.error("subscribe", channel=channel, token=wrong_user) == 103
    wrong_channel = make_token(SECRET, "alice", channel="secret:other")
    assert await client.error("subscribe", channel=channel, token=wrong_channel) == 103
    expired = make_token(SECRET, "alice", channel=channel, exp=T0 - 1)
    assert await client.error("subscribe", channel=channel, token=expired) == 109
    assert await client.error("subscribe", channel=channel, token="junk") == 103
    good = make_token(SECRET, "alice", channel=channel, exp=T0 + 60, info={"role": "spy"})
    assert await client.call("subscribe", channel=channel, token=good) == {"recoverable": False}


async def test_subscribe_token_policy_without_verifier(node: TestNode) -> None:
    client = Client(node)
    await client.connect("alice")
    node.verifier = None
    token = make_token(SECRET, "alice", channel="secret:x")
    assert await client.error("subscribe", channel="secret:x", token=token) == 103


async def test_subscribe_callback_policy(node: TestNode, client: Client) -> None:
    await client.connect("alice")
    assert await client.error("subscribe", channel="app:x") == ErrorCode.PERMISSION_DENIED
    node.allowed_by_callback.add("app:x")
    assert await client.call("subscribe", channel="app:x") == {"recoverable": False}
    assert await client.call("subscribe", channel="app:y", data="let me in") == {
        "recoverable": False
    }


async def test_a_subscribe_overtaken_during_its_callback_is_refused(node: TestNode) -> None:
    # The node runs a connection's commands one after the other; a caller running two
    # messages of one session at once must still not get two subscriptions of one channel.
    release = asyncio.Event()
    calls = 0

    async def slow_first(session: Session, channel: str, data: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
        return True

    node.can_subscribe = slow_first  # type: ignore[method-assign]
    client = Client(node)
    await client.connect("alice")
    first = asyncio.ensure_future(
        client.session.handle_message('{"id": 10, "method": "subscribe", "channel": "app:x"}')
    )
    await asyncio.sleep(0)
    assert calls == 1
    await client.session.handle_message('{"id": 11, "method": "subscribe", "channel": "app:x"}')
    release.set()
    await first
    replies = {frame["id"]: frame for frame in client.frames() if "id" in frame}
    assert replies[11]["result"] == {"recoverable": False}
    assert replies[10]["error"]["code"] == ErrorCode.ALREADY_SUBSCRIBED
    assert client.session.channels == ["app:x"]
    assert list(node.subscribers["app:x"]) == [client.session]


async def test_subscribe_channels_claim(client: Client) -> None:
    await client.connect("alice", channels=["secret:granted", "app:granted"])
    assert "result" in await client.send("subscribe", channel="secret:granted")
    assert "result" in await client.send("subscribe", channel="app:granted")
    assert await client.error("subscribe", channel="secret:other") == 103


async def test_user_private_channels(node: TestNode) -> None:
    alice, bob, carol, anonymous = (Client(node) for _ in range(4))
    await alice.connect("alice")
    await bob.connect("bob")
    await carol.connect("carol")
    await anonymous.connect(None)
    # dm requires a channel token, but the user list grants access by itself.
    assert "result" in await alice.send("subscribe", channel="dm:#alice,bob")
    assert "result" in await bob.send("subscribe", channel="dm:#alice,bob")
    assert await carol.error("subscribe", channel="dm:#alice,bob") == 103
    assert await anonymous.error("subscribe", channel="#alice") == 103
    assert "result" in await alice.send("subscribe", channel="#alice")
    assert await carol.error("publish", channel="dm:#alice,bob", data=1) == 103
    assert await carol.error("history", channel="dm:#alice,bob") == 103
    assert "result" in await bob.send("publish", channel="dm:#alice,bob", data="hi")


async def test_subscribe_twice_and_limit(node: TestNode, options: HubOptions) -> None:
    node.options = HubOptions(
        namespaces=options.namespaces, allow_anonymous=True, max_subscriptions_per_client=2
    )
    client = Client(node)
    await client.connect()
    await client.call("subscribe", channel="a")
    assert await client.error("subscribe", channel="a") == ErrorCode.ALREADY_SUBSCRIBED
    await client.call("subscribe", channel="b")
    assert await client.error("subscribe", channel="c") == ErrorCode.LIMIT_EXCEEDED
    assert await client.call("unsubscribe", channel="a") == {}
    await client.call("subscribe", channel="c")


async def test_unsubscribe(node: TestNode, client: Client) -> None:
    await client.connect()
    assert await client.call("unsubscribe", channel="never:subscribed") == {}
    await client.call("subscribe", channel="news")
    await client.call("unsubscribe", channel="news")
    assert "news" not in node.subscribers
    other = Client(node)
    await other.connect()
    await other.call("publish", channel="news", data=1)
    assert client.frames() == []


# -- publications ---------------------------------------------------------------------------------


async def test_publish_and_receive(node: TestNode, codec: Codec) -> None:
    alice, bob = Client(node, codec), Client(node, JSON)
    await alice.connect("alice", info={"name": "Alice"})
    await bob.connect("bob")
    await alice.call("subscribe", channel="chat:room")
    await bob.call("subscribe", channel="chat:room")
    bob.frames()
    alice.frames()
    result = await alice.call("publish", channel="chat:room", data={"text": "hi"}, key="k")
    assert result == {"offset": 1, "epoch": alice.session._subs["chat:room"].epoch}
    pub = {
        "push": "pub",
        "channel": "chat:room",
        "data": {"text": "hi"},
        "offset": 1,
        "key": "k",
        "info": {"client": alice.session.client, "user": "alice", "info": {"name": "Alice"}},
    }
    assert alice.pushes == [pub]
    assert bob.frames() == [pub]


async def test_publish_without_history(node: TestNode, client: Client) -> None:
    await client.connect(None)
    await client.call("subscribe", channel="news")
    assert await client.call("publish", channel="news", data=[1, 2]) == {}
    assert client.pushes[0]["data"] == [1, 2]
    assert "offset" not in client.pushes[0]


async def test_publish_refusals(node: TestNode, options: HubOptions) -> None:
    node.options = HubOptions(
        namespaces=options.namespaces, allow_anonymous=True, max_publication_size=50
    )
    client = Client(node)
    await client.connect(None)
    assert await client.error("publish", channel="ro:x", data=1) == ErrorCode.PERMISSION_DENIED
    assert await client.error("publish", channel="chat:x", data=1) == 103  # anonymous
    assert await client.error("publish", channel="secret:x", data=1) == 103  # not subscribed
    assert await client.error("publish", channel="nope:x", data=1) == ErrorCode.UNKNOWN_CHANNEL
    assert await client.error("publish", channel="news") == ErrorCode.BAD_REQUEST
    assert await client.error("publish", channel="news", data="x" * 49) == 106
    assert await client.call("publish", channel="news", data=None) == {}


async def test_publish_after_token_subscription(client: Client) -> None:
    await client.connect("alice")
    token = make_token(SECRET, "alice", channel="secret:x")
    await client.call("subscribe", channel="secret:x", token=token)
    assert await client.call("publish", channel="secret:x", data=1) == {}


async def test_duplicate_and_old_offsets_dropped(node: TestNode, client: Client) -> None:
    await client.connect("alice")
    await client.call("subscribe", channel="chat:d")
    epoch = client.session._subs["chat:d"].epoch
    await node.broker.publish("chat:d", Publication("a"), NAMESPACES["chat"].history)
    assert [f["offset"] for f in client.frames()] == [1]
    assert client.session.deliver_publication("chat:d", Publication("dup", 1, epoch))
    assert client.session.deliver_publication("other", Publication("not subscribed"))
    assert client.frames() == []


@pytest.mark.parametrize(("epoch", "offset"), [("e2", 1), ("e2", 2), ("same", 3), ("same", 9)])
async def test_epoch_change_or_gap_asks_to_resubscribe(
    node: TestNode, client: Client, epoch: str, offset: int
) -> None:
    # The client can't tell another epoch's offsets from its own (pushes carry no epoch), and
    # a gap would go unnoticed by a client that doesn't check: both end in a resubscription.
    await client.connect("alice")
    await client.call("subscribe", channel="chat:d")
    await node.broker.publish("chat:d", Publication("a"), NAMESPACES["chat"].history)
    client.frames()
    current = client.session._subs["chat:d"].epoch
    publication = Publication("x", offset, current if epoch == "same" else epoch)
    assert not client.session.deliver_publication("chat:d", publication)
    assert client.frames() == []
    await node._on_publication("chat:d", publication)
    assert client.frames() == [
        {"push": "unsubscribe", "channel": "chat:d", "code": 2500, "reason": "resubscribe"}
    ]
    assert client.session.channels == []
    assert "chat:d" not in node.subscribers
    assert await node.presence.get("chat:d") == {}


async def test_history_lost_while_subscribed_then_recovery_fails(
    node: TestNode, client: Client, clock: Clock
) -> None:
    # The channel's position outlives its last publication by meta_ttl only; a subscriber that
    # stays longer sees the next publication start a new epoch: it must resubscribe, and its
    # recovery from the old position fails (never a silent jump from offset 1 to 1).
    history = NAMESPACES["chat"].history
    await client.connect("alice")
    await client.call("subscribe", channel="chat:e")
    await node.broker.publish("chat:e", Publication("a"), history)
    [pub] = client.frames()
    old = client.session._subs["chat:e"].epoch
    clock.advance(history.meta_ttl + 1)
    await node.broker.publish("chat:e", Publication("b"), history)
    assert [f.get("push") for f in client.frames()] == ["unsubscribe"]
    result = await client.call(
        "subscribe", channel="chat:e", recover=True, epoch=old, offset=pub["offset"]
    )
    assert result["recovered"] is False
    assert result["epoch"] != old
    assert "publications" not in result


async def test_server_publication_with_python_data(node: TestNode, client: Client) -> None:
    await client.connect()
    await client.call("subscribe", channel="news")
    await node.broker.publish("news", Publication({"n": 1}), NAMESPACES[""].history)
    assert client.frames() == [{"push": "pub", "channel": "news", "data": {"n": 1}}]


async def test_unencodable_publication_skipped(client: Client) -> None:
    await client.connect()
    await client.call("subscribe", channel="news")
    client.session.deliver_publication("news", Publication(object()))
    assert client.frames() == []
    assert client.conn.closed is None


# -- subscribe ordering and recovery --------------------------------------------------------------


class RacingNode(TestNode):
    """Publishes while the session's subscription is pending: before and after the history read."""

    __test__ = False

    async def add_subscription(self, session: Session, channel: str) -> None:
        await super().add_subscription(session, channel)
        history = self.options.namespaces["chat"].history
        await self.broker.publish(channel, Publication("during"), history)


async def test_no_push_before_subscribe_reply(options: HubOptions, clock: Clock) -> None:
    node = RacingNode(options, clock)
    await node.start()
    client = Client(node)
    await client.connect("alice")
    await node.broker.publish("chat:r", Publication("before"), NAMESPACES["chat"].history)
    await client.session.handle_message(
        client.encode({"id": 5, "method": "subscribe", "channel": "chat:r"})
    )
    frames = client.frames()
    # "during" was published after add_subscription and before the position was read: it is in
    # the position (offset 2), so it is not delivered again.
    assert frames[0]["id"] == 5
    assert frames[0]["result"]["offset"] == 2
    assert [f["push"] for f in frames[1:]] == ["join"]
    await node.broker.publish("chat:r", Publication("after"), NAMESPACES["chat"].history)
    assert [(f["data"], f["offset"]) for f in client.frames()] == [("after", 3)]


async def test_buffered_publications_follow_reply(options: HubOptions, clock: Clock) -> None:
    node = TestNode(options, clock)
    await node.start()
    client = Client(node)
    await client.connect("alice")
    original = node.broker.history

    async def history(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        await node.broker.publish("chat:b", Publication("later"), NAMESPACES["chat"].history)
        return result

    node.broker.history = history  # type: ignore[method-assign]
    await client.session.handle_message(
        client.encode({"id": 1, "method": "subscribe", "channel": "chat:b"})
    )
    frames = client.frames()
    assert frames[0] == {
        "id": 1,
        "result": {"recoverable": True, "epoch": frames[0]["result"]["epoch"], "offset": 0},
    }
    assert [(f["push"], f.get("data")) for f in frames[1:]] == [("pub", "later"), ("join", None)]
    assert frames[1]["offset"] == 1


async def publish_n(node: TestNode, channel: str, count: int, ns: str = "chat") -> None:
    for i in range(count):
        await node.broker.publish(channel, Publication(i), NAMESPACES[ns].history)


async def test_recovery_success(node: TestNode, codec: Codec) -> None:
    client = Client(node, codec)
    await client.connect("alice")
    first = await client.call("subscribe", channel="chat:rec")
    await client.call("unsubscribe", channel="chat:rec")
    await publish_n(node, "chat:rec", 3)
    result = await client.call(
        "subscribe", channel="chat:rec", recover=True, epoch=first["epoch"], offset=0
    )
    assert result["recovered"] is True
    assert result["offset"] == 3
    assert [(p["data"], p["offset"]) for p in result["publications"]] == [(0, 1), (1, 2), (2, 3)]


async def test_recovery_nothing_missed(client: Client) -> None:
    await client.connect("alice")
    first = await client.call("subscribe", channel="chat:r0")
    await client.call("unsubscribe", channel="chat:r0")
    result = await client.call(
        "subscribe", channel="chat:r0", recover=True, epoch=first["epoch"], offset=0
    )
    assert result["recovered"] is True
    assert "publications" not in result or result["publications"] == []


@pytest.mark.parametrize(
    ("case", "published"),
    [("gap beyond history", 12), ("epoch changed", 1), ("ahead of the channel", 1)],
)
async def test_recovery_failure(node: TestNode, client: Client, case: str, published: int) -> None:
    await client.connect("alice")
    first = await client.call("subscribe", channel="chat:f")
    await client.call("unsubscribe", channel="chat:f")
    await publish_n(node, "chat:f", published)
    epoch, offset = first["epoch"], 0
    if case == "epoch changed":
        epoch = "other"
    elif case == "ahead of the channel":
        offset = 50
    result = await client.call(
        "subscribe", channel="chat:f", recover=True, epoch=epoch, offset=offset
    )
    assert result["recovered"] is False
    assert "publications" not in result
    assert result["offset"] == published


async def test_recovery_over_the_limit(node: TestNode, options: HubOptions) -> None:
    node.options = HubOptions(
        namespaces=options.namespaces, allow_anonymous=True, recovery_max_publications=2
    )
    client = Client(node)
    await client.connect("alice")
    first = await client.call("subscribe", channel="chat:l")
    await client.call("unsubscribe", channel="chat:l")
    await publish_n(node, "chat:l", 3)
    result = await client.call(
        "subscribe", channel="chat:l", recover=True, epoch=first["epoch"], offset=0
    )
    assert result["recovered"] is False
    result2 = await client.call("unsubscribe", channel="chat:l")
    assert result2 == {}
    result = await client.call(
        "subscribe", channel="chat:l", recover=True, epoch=first["epoch"], offset=1
    )
    assert result["recovered"] is True
    assert [p["offset"] for p in result["publications"]] == [2, 3]


async def test_recovery_off_in_namespace(node: TestNode, client: Client) -> None:
    await client.connect("alice")
    first = await client.call("subscribe", channel="feed:x")
    assert first["recoverable"] is False
    await client.call("unsubscribe", channel="feed:x")
    result = await client.call(
        "subscribe", channel="feed:x", recover=True, epoch=first["epoch"], offset=0
    )
    assert result["recovered"] is False


async def test_subscribe_cleanup_when_position_fails(node: TestNode, client: Client) -> None:
    await client.connect("alice")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine down")

    node.broker.history = broken  # type: ignore[method-assign]
    assert await client.error("subscribe", channel="chat:x") == ErrorCode.INTERNAL
    assert client.session.channels == []
    assert "chat:x" not in node.subscribers


async def test_close_during_pending_subscribe(options: HubOptions, clock: Clock) -> None:
    node = TestNode(options, clock)
    await node.start()
    client = Client(node)
    await client.connect("alice")
    original = node.broker.history

    async def history(*args: Any, **kwargs: Any) -> Any:
        await client.session.on_close()
        return await original(*args, **kwargs)

    node.broker.history = history  # type: ignore[method-assign]
    await client.session.handle_message(
        client.encode({"id": 1, "method": "subscribe", "channel": "chat:z"})
    )
    assert client.frames() == []
    assert node.subscribers == {}


# -- presence, join/leave, history ---------------------------------------------------------------


async def test_presence_and_join_leave(node: TestNode) -> None:
    alice, bob = Client(node), Client(node)
    await alice.connect("alice", info={"n": "A"})
    await bob.connect("bob")
    await alice.call("subscribe", channel="chat:p")
    assert [f["push"] for f in alice.pushes] == ["join"]  # its own join, after the reply
    await bob.call("subscribe", channel="chat:p")
    join = alice.frames()
    assert join == [
        {"push": "join", "channel": "chat:p", "info": {"client": bob.session.client, "user": "bob"}}
    ]
    presence = await alice.call("presence", channel="chat:p")
    assert presence == {
        "clients": {
            alice.session.client: {"user": "alice", "info": {"n": "A"}},
            bob.session.client: {"user": "bob"},
        }
    }
    assert await alice.call("presence_stats", channel="chat:p") == {
        "num_clients": 2,
        "num_users": 2,
    }
    await bob.session.on_close()
    assert alice.frames() == [{"push": "leave", "channel": "chat:p", "info": join[0]["info"]}]
    assert await alice.call("presence_stats", channel="chat:p") == {
        "num_clients": 1,
        "num_users": 1,
    }
    await alice.call("unsubscribe", channel="chat:p")
    assert await node.presence.stats("chat:p") == (await node.presence.stats("none"))


async def test_presence_refresh(node: TestNode, clock: Clock) -> None:
    client = Client(node)
    await client.connect("alice")
    await client.call("subscribe", channel="chat:p")
    clock.advance(50)
    await client.session.refresh_presence()
    clock.advance(50)
    assert (await node.presence.stats("chat:p")).num_clients == 1


class GatedPresence(MemoryPresence):
    """Presence whose next ``add`` waits for a gate (a slow engine)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock, ttl=60)
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def add(self, channel: str, info: ClientInfo) -> None:
        if self.gate is not None:
            self.entered.set()
            await self.gate.wait()
        await super().add(channel, info)


@pytest.mark.parametrize("how", ["unsubscribe", "close"])
async def test_presence_refresh_racing_a_removal(node: TestNode, clock: Clock, how: str) -> None:
    presence = node.presence = GatedPresence(clock)
    client = Client(node)
    await client.connect("alice")
    await client.call("subscribe", channel="chat:p")
    presence.gate = asyncio.Event()
    refresh = asyncio.create_task(client.session.refresh_presence())
    await presence.entered.wait()
    if how == "unsubscribe":
        await client.call("unsubscribe", channel="chat:p")
    else:
        client.session.close(4000, "bye")
        await client.session.on_close()
    assert await node.presence.get("chat:p") == {}
    presence.gate.set()  # the refresh's add lands after the removal
    await refresh
    assert await node.presence.get("chat:p") == {}


async def test_presence_errors(client: Client) -> None:
    await client.connect(None)
    assert await client.error("presence", channel="news") == ErrorCode.NOT_AVAILABLE
    assert await client.error("presence_stats", channel="news") == ErrorCode.NOT_AVAILABLE
    assert await client.error("presence", channel="chat:x") == ErrorCode.PERMISSION_DENIED


async def test_history(node: TestNode, client: Client) -> None:
    await client.connect("alice")
    await publish_n(node, "chat:h", 5)
    result = await client.call("history", channel="chat:h")
    assert [p["data"] for p in result["publications"]] == [0, 1, 2, 3, 4]
    assert result["offset"] == 5
    epoch = result["epoch"]
    result = await client.call("history", channel="chat:h", limit=2, reverse=True)
    assert [p["offset"] for p in result["publications"]] == [5, 4]
    result = await client.call("history", channel="chat:h", since={"offset": 3, "epoch": epoch})
    assert [p["offset"] for p in result["publications"]] == [4, 5]
    result = await client.call("history", channel="chat:h", limit=0)
    assert result == {"publications": [], "epoch": epoch, "offset": 5}
    since = {"offset": 3, "epoch": "old"}
    assert await client.error("history", channel="chat:h", since=since) == 112
    assert await client.error("history", channel="news") == ErrorCode.NOT_AVAILABLE
    assert await client.error("history", channel="dm:x") == ErrorCode.PERMISSION_DENIED


# -- rpc and ping ---------------------------------------------------------------------------------


async def test_rpc(node: TestNode, client: Client) -> None:
    async def add(session: Session, data: Any) -> Any:
        return {"sum": sum(data), "user": session.user}

    def sync(session: Session, data: Any) -> Any:
        return data

    def refuse(session: Session, data: Any) -> Any:
        raise HubError(1001, "custom", temporary=True)

    def crash(session: Session, data: Any) -> Any:
        raise KeyError("secret internals")

    node.rpc_handlers.update(add=add, sync=sync, refuse=refuse, crash=crash)
    await client.connect("alice")
    assert await client.call("rpc", name="add", data=[1, 2, 3]) == {
        "data": {"sum": 6, "user": "alice"}
    }
    assert await client.call("rpc", name="sync") == {}
    assert await client.error("rpc", name="nope") == ErrorCode.METHOD_NOT_FOUND
    reply = await client.send("rpc", name="refuse")
    assert reply["error"] == {"code": 1001, "message": "custom", "temporary": True}
    reply = await client.send("rpc", name="crash")
    assert reply["error"] == {"code": 100, "message": "internal error", "temporary": True}


async def test_ping(client: Client) -> None:
    await client.connect()
    assert await client.call("ping") == {}


# -- rate limits ----------------------------------------------------------------------------------


async def test_command_rate_limit(node: TestNode, options: HubOptions, clock: Clock) -> None:
    node.options = HubOptions(
        namespaces=options.namespaces,
        allow_anonymous=True,
        commands_rate=RateLimit(1, 3),
        rate_limit_disconnect_after=3,
    )
    client = Client(node)
    await client.connect()
    await client.call("ping")
    await client.call("ping")
    reply = await client.send("ping")
    assert reply["error"] == {"code": 111, "message": "too many requests", "temporary": True}
    clock.advance(1)
    await client.call("ping")
    assert await client.error("ping") == 111
    assert client.conn.closed is None
    assert await client.error("ping") == 111
    assert client.conn.closed == (4007, "too many requests")


async def test_publication_rate_limit(node: TestNode, options: HubOptions, clock: Clock) -> None:
    node.options = HubOptions(
        namespaces=options.namespaces, allow_anonymous=True, publications_rate=RateLimit(1, 1)
    )
    client = Client(node)
    await client.connect()
    await client.call("publish", channel="news", data=1)
    assert await client.error("publish", channel="news", data=2) == 111
    await client.call("ping")
    clock.advance(1)
    await client.call("publish", channel="news", data=3)


def test_token_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(2, 3, clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)
    assert bucket.take()
    assert not bucket.take()
    clock.advance(100)
    assert bucket.tokens == 3
    clock.advance(-50)  # a clock going backwards adds nothing
    assert bucket.tokens == 3
    assert not bucket.take(4)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1, clock)


def test_rejection_window() -> None:
    clock = Clock()
    window = RejectionWindow(3, 10, clock)
    assert not window.record()
    clock.advance(11)
    assert not window.record()  # a pause longer than the window: a new run
    clock.advance(6)
    assert not window.record()
    clock.advance(9)
    assert window.record()  # three in a run, spread over more than the window
    assert window.record()  # and every refusal after it
    with pytest.raises(ValueError, match="limit"):
        RejectionWindow(0, 1, clock)


# -- garbage input --------------------------------------------------------------------------------


async def test_bad_frames_then_4500(client: Client) -> None:
    await client.connect()
    for i in range(9):
        await client.session.handle_message(client.encode({"id": i + 10, "method": "bogus"}))
        [reply] = client.frames()
        assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
    assert client.conn.closed is None
    await client.session.handle_message(b"\xff\x00garbage" if client.codec.binary else "{oops")
    assert client.conn.closed == (4500, "bad request")
    assert client.frames() == []


@pytest.mark.parametrize(
    "message",
    ["", "[]", "null", "{}", '{"id":1}', '[{"id":1,"method":"ping"},7]', "\x00", "[" * 10000],
)
async def test_garbage_never_raises(node: TestNode, message: str) -> None:
    client = Client(node)
    await client.connect()
    await client.session.handle_message(message)
    await client.session.handle_message(message.encode())


async def test_message_too_big(node: TestNode, options: HubOptions) -> None:
    node.options = HubOptions(
        namespaces=options.namespaces, allow_anonymous=True, max_message_size=50
    )
    client = Client(node)
    await client.session.handle_message("x" * 51)
    assert client.conn.closed == (1009, "message too big")


async def test_unexpected_error_is_100(node: TestNode, client: Client) -> None:
    await client.connect()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    node.broker.publish = broken  # type: ignore[method-assign]
    reply = await client.send("publish", channel="news", data=1)
    assert reply["error"]["code"] == ErrorCode.INTERNAL
    assert client.conn.closed is None


# -- slow consumers -------------------------------------------------------------------------------


async def test_slow_consumer_disconnect(node: TestNode) -> None:
    reader, writer = Client(node), Client(node)
    await reader.connect()
    await writer.connect()
    await reader.call("subscribe", channel="slow:x")
    for _ in range(20):
        await node.broker.publish("slow:x", Publication("x" * 50), NAMESPACES["slow"].history)
        if reader.conn.closed:
            break
    assert reader.conn.closed == (4002, "slow consumer")
    assert reader.session.queue.size_bytes <= 600


async def test_slow_consumer_conflate(node: TestNode, codec: Codec) -> None:
    reader = Client(node, codec)
    await reader.connect()
    await reader.call("subscribe", channel="ticker:t")
    history = NAMESPACES["ticker"].history
    for price in range(100):
        for symbol in ("AAA", "BBB", "CCC"):
            await node.broker.publish("ticker:t", Publication(price, key=symbol), history)
    assert reader.conn.closed is None
    frames = reader.frames()
    assert [(f["key"], f["data"]) for f in frames] == [("AAA", 99), ("BBB", 99), ("CCC", 99)]


async def test_conflate_still_over_bound(node: TestNode) -> None:
    reader = Client(node)
    await reader.connect()
    await reader.call("subscribe", channel="ticker:t")
    history = NAMESPACES["ticker"].history
    for i in range(20):
        await node.broker.publish("ticker:t", Publication("x" * 50, key=str(i)), history)
    assert reader.conn.closed == (4002, "slow consumer")


async def test_pending_buffer_overflow(options: HubOptions, clock: Clock) -> None:
    class FloodNode(TestNode):
        __test__ = False

        async def add_subscription(self, session: Session, channel: str) -> None:
            await super().add_subscription(session, channel)
            for _ in range(20):
                session.deliver_publication(channel, Publication("x" * 50))

    node = FloodNode(options, clock)
    await node.start()
    client = Client(node)
    await client.connect()
    await client.session.handle_message(
        client.encode({"id": 2, "method": "subscribe", "channel": "slow:p"})
    )
    assert client.conn.closed == (4002, "slow consumer")
    assert node.subscribers == {}


# -- server-side actions --------------------------------------------------------------------------


async def test_server_unsubscribe_and_message(node: TestNode, client: Client) -> None:
    await client.connect()
    await client.call("subscribe", channel="news")
    await client.session.unsubscribe("news")
    await client.session.unsubscribe("news")
    client.session.deliver_message({"hello": "you"})
    assert client.frames() == [
        {"push": "unsubscribe", "channel": "news", "code": 2500, "reason": "resubscribe"},
        {"push": "message", "data": {"hello": "you"}},
    ]
    assert "news" not in node.subscribers


async def test_closed_session_ignores_everything(node: TestNode, client: Client) -> None:
    await client.connect()
    await client.call("subscribe", channel="chat:c")
    await client.session.on_close()
    await client.session.on_close()
    client.session.deliver_publication("chat:c", Publication(1))
    client.session.deliver_message(1)
    client.session.check_expiry(T0 + 10**9)
    await client.session.handle_message('{"id":5,"method":"ping"}')
    assert client.frames() == []
    assert client.conn.closed is None


async def test_cleanup_errors_are_logged(node: TestNode, client: Client, caplog: Any) -> None:
    await client.connect("alice")
    await client.call("subscribe", channel="chat:e")

    async def broken(*args: Any) -> None:
        raise RuntimeError("presence down")

    node.presence.remove = broken  # type: ignore[method-assign,assignment]
    await client.session.on_close()
    assert "chat:e" not in node.subscribers
    assert "cleaning up" in caplog.text


# -- options --------------------------------------------------------------------------------------


def test_parse_channel() -> None:
    assert parse_channel("news") == parse_channel("news")
    channel = parse_channel("chat:room.1/a=b")
    assert (channel.namespace, channel.users) == ("chat", None)
    assert parse_channel("dm:#alice,bob").users == ("alice", "bob")
    assert parse_channel("#alice").namespace == ""
    assert parse_channel("a:b:c").namespace == "a"
    assert parse_channel("x" * 255).full == "x" * 255
    for bad in ["", "x" * 256, "a b", "a:", "ns:#", "#", "a#b,", "a,b", "ü", ":x", "a\nb"]:
        with pytest.raises(HubError) as excinfo:
            parse_channel(bad)
        assert excinfo.value.code == ErrorCode.UNKNOWN_CHANNEL


def test_options_from_dict() -> None:
    options = HubOptions.from_dict(
        {
            "allow_anonymous": True,
            "node_name": "n7",
            "connect_timeout": 5,
            "commands_rate": {"rate": 10, "burst": 20},
            "jwt": {"secret": "s", "algorithms": ["HS256"], "leeway": 1},
            "namespaces": {
                "": {},
                "chat": {"presence": True, "history_size": 10, "recovery": True},
                "book": {"delta": True, "slow_consumer": "conflate"},
            },
        }
    )
    assert options.namespaces["book"].delta
    assert not options.namespaces["chat"].delta
    assert options.node_name == "n7"
    assert options.commands_rate == RateLimit(10, 20)
    assert options.jwt == JwtOptions(secret="s", algorithms=("HS256",), leeway=1)
    assert options.namespaces["chat"].history.size == 10
    assert options.namespace(parse_channel("chat:x")).recovery
    assert HubOptions.from_dict({}).namespaces == {"": NamespaceOptions()}


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"allow_anonymous": "yes"}, "allow_anonymous"),
        ({"namespaces": {"x": {"delta": "fossil"}}}, "namespaces.x.delta"),
        ({"max_message_size": 1.5}, "max_message_size"),
        ({"max_message_size": True}, "max_message_size"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"namespaces": []}, "namespaces"),
        ({"namespaces": {"chat": {"subscribe": "everyone"}}}, "namespaces.chat.subscribe"),
        ({"namespaces": {"chat": {"recovery": True}}}, "namespaces.chat.recovery"),
        ({"namespaces": {"chat": {"publish": 1}}}, "namespaces.chat.publish"),
        ({"namespaces": {"chat": {"nope": 1}}}, "namespaces.chat.nope"),
        ({"namespaces": {"chat": {"slow_consumer": "x"}}}, "namespaces.chat.slow_consumer"),
        (
            {"namespaces": {"chat": {"history_size": 1, "history_ttl": 0}}},
            "namespaces.chat.history_ttl",
        ),
        ({"namespaces": {"bad name": {}}}, "namespaces.bad name"),
        ({"jwt": {"algorithms": "HS256"}}, "jwt.algorithms"),
        ({"jwt": {"secret": 5}}, "jwt.secret"),
        ({"jwt": 5}, "jwt"),
        ({"commands_rate": {"rate": 0, "burst": 1}}, "commands_rate"),
        ({"commands_rate": {"rate": 1}}, "commands_rate"),
        ({"publications_rate": {"burst": 1, "x": 2}}, "publications_rate.x"),
    ],
)
def test_options_errors_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        HubOptions.from_dict(data)
    assert excinfo.value.key == key


def test_unknown_namespace() -> None:
    with pytest.raises(HubError) as excinfo:
        HubOptions().namespace(parse_channel("x:y"))
    assert excinfo.value.code == ErrorCode.UNKNOWN_CHANNEL


def test_ping_interval_rounds_up() -> None:
    assert math.ceil(HubOptions(ping_interval=2.5).ping_interval) == 3


def test_test_node_implements_node(options: HubOptions) -> None:
    node: Node = TestNode(options, Clock())  # checked by mypy: TestNode satisfies Node
    assert node.node_name == "n1"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=200), st.text(max_size=200)), max_size=15))
async def test_arbitrary_messages_never_raise(messages: list[str | bytes]) -> None:
    clock = Clock()
    node = TestNode(HubOptions(namespaces=dict(NAMESPACES), allow_anonymous=True), clock)
    await node.start()
    for codec in (JSON, MSGPACK):
        client = Client(node, codec)
        await client.connect()
        for message in messages:
            await client.session.handle_message(message)
        client.frames()
        if len(messages) >= 10:
            assert client.conn.closed is not None
    await node.broker.close()
