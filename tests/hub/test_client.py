"""Tests of the hub client against a scripted hub: a real ``wsend.serve`` server on loopback.

:class:`ScriptedHub` plays the hub's side of ``docs/protocol.md`` over real sockets: a small
in-memory hub (channels with offsets, history and recovery, presence, RPC echo) whose answers
tests replace per method (``hub.script["publish"] = ...``), and which tests drive directly
(publish without delivering, close with a chosen code, push anything).

End-to-end reuse: the tests in :class:`TestAnyHub` use only behaviour every hub has. They take
the ``hub_endpoint`` fixture; point it at a real node (an :class:`HubEndpoint` with its URL and
a token factory) to run them end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

import wsend
from wsend.hub import wire
from wsend.hub.client import CommandTimeout, HubClient, HubDisconnected, Publication
from wsend.hub.codes import HubError

Encoding = Literal["json", "msgpack"]
ENCODINGS: list[Encoding] = ["json", "msgpack"]
FAST: dict[str, Any] = {"backoff_min": 0.01, "backoff_max": 0.05}

Handler = Callable[["HubConn", Any], Awaitable[Any]]


# -- the scripted hub -----------------------------------------------------------------------------


@dataclass
class Channel:
    epoch: str = "e1"
    history: list[wire.PubPush] = field(default_factory=list)
    subscribers: set[HubConn] = field(default_factory=set)

    @property
    def offset(self) -> int:
        return len(self.history)


class HubConn:
    """One client connection as the scripted hub sees it."""

    def __init__(self, hub: ScriptedHub, ws: wsend.ServerConnection, number: int) -> None:
        self.hub, self.ws = hub, ws
        self.codec = wire.codec_for_subprotocol(ws.protocol)
        self.client_id = f"c{number}"
        self.user = ""
        self.token: str | None = None
        self.messages: list[list[Any]] = []  # decoded commands, per WebSocket message

    def commands(self, method: str) -> list[Any]:
        """The commands with ``method`` received on this connection."""
        return [c for m in self.messages for c in m if c.__struct_config__.tag == method]

    async def send(self, *frames: Any) -> None:
        """Send frames in one message (a batch when several)."""
        await self.ws.send(self.codec.encode(frames))

    async def reply(self, command: Any, result: Any = None, error: HubError | None = None) -> None:
        if error is not None:
            body = wire.ErrorBody(error.code, error.message, error.temporary)
            await self.send(wire.Reply(id=command.id, error=body))
        else:
            await self.send(wire.Reply(id=command.id, result={} if result is None else result))

    async def close(self, code: int, reason: str = "") -> None:
        await self.ws.close(code, reason)


class ScriptedHub:
    """A hub double: default answers from a tiny in-memory hub, replaceable per method.

    Attributes:
        script: ``{method: async f(conn, command)}`` replacing the default answer.
        conns: every connection accepted, in order.
        tokens: valid connection tokens (``None``: any token, or none, is accepted).
        expired: tokens answered with error 109.
        ttl: the ``ttl`` in connect results (``None``: credentials don't expire).
        recoverable: whether channels keep history.
    """

    def __init__(self) -> None:
        self.script: dict[str, Handler] = {}
        self.conns: list[HubConn] = []
        self.tokens: set[str] | None = None
        self.expired: set[str] = set()
        self.ttl: int | None = None
        self.recoverable = True
        self.channels: dict[str, Channel] = {}
        self.connected = asyncio.Event()
        self._numbers = itertools.count(1)
        self._server: wsend.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.port}/ws"

    @property
    def conn(self) -> HubConn:
        """The latest connection."""
        return self.conns[-1]

    def commands(self, method: str) -> list[Any]:
        """Every command with ``method`` received, across connections."""
        return [command for conn in self.conns for command in conn.commands(method)]

    async def start(self) -> None:
        self._server = await wsend.serve(
            self._handle, "127.0.0.1", 0, subprotocols=list(wire.SUBPROTOCOLS)
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed(timeout=2)

    async def wait_conns(self, count: int, timeout: float = 5) -> HubConn:
        """Wait until ``count`` connections sent ``connect``; returns the last of them."""
        async with asyncio.timeout(timeout):
            while len([c for c in self.conns if c.commands("connect")]) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        return self.conns[count - 1]

    async def _handle(self, ws: wsend.ServerConnection) -> None:
        conn = HubConn(self, ws, next(self._numbers))
        self.conns.append(conn)
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for message in ws:
                commands = conn.codec.decode_commands(message)
                conn.messages.append(commands)
                for command in commands:
                    task = asyncio.create_task(self._answer(conn, command))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except wsend.ConnectionClosed:
            pass
        finally:
            for channel in self.channels.values():
                channel.subscribers.discard(conn)
            for task in tasks:
                task.cancel()

    async def _answer(self, conn: HubConn, command: Any) -> None:
        assert not isinstance(command, wire.BadFrame), command
        method = command.__struct_config__.tag
        handler = self.script.get(method) or getattr(self, f"on_{method}")
        with contextlib.suppress(wsend.ConnectionClosed):
            await handler(conn, command)

    # -- the default answers ----------------------------------------------------------------

    def channel(self, name: str) -> Channel:
        return self.channels.setdefault(name, Channel())

    async def publish(
        self, name: str, data: Any, *, deliver: bool = True, info: Any = None, key: Any = None
    ) -> wire.PubPush:
        """Publish as the server; ``deliver=False`` keeps it in history only (a lost push)."""
        channel = self.channel(name)
        offset = channel.offset + 1 if self.recoverable else None
        push = wire.PubPush(channel=name, data=data, offset=offset, key=key, info=info)
        if self.recoverable:
            channel.history.append(push)
        if deliver:
            for conn in list(channel.subscribers):
                await conn.send(push)
        return push

    async def on_connect(self, conn: HubConn, cmd: wire.ConnectCommand) -> None:
        conn.token = cmd.token
        if cmd.token in self.expired:
            await conn.reply(cmd, error=HubError(109))
            return
        if self.tokens is not None and cmd.token not in self.tokens:
            await conn.reply(cmd, error=HubError(101))
            await conn.close(4501, "unauthorized")
            return
        conn.user = cmd.token or ""
        result = wire.ConnectResult(
            client=conn.client_id, user=conn.user, expires=self.ttl is not None,
            ttl=self.ttl, ping=0, node="scripted",
        )  # fmt: skip
        await conn.reply(cmd, result)

    async def on_subscribe(self, conn: HubConn, cmd: wire.SubscribeCommand) -> None:
        channel = self.channel(cmd.channel)
        result = wire.SubscribeResult(recoverable=self.recoverable)
        if self.recoverable:
            result.epoch, result.offset = channel.epoch, channel.offset
            if cmd.recover:
                ok = cmd.epoch == channel.epoch and cmd.offset is not None
                result.recovered = ok
                if ok and cmd.offset is not None:
                    result.publications = [
                        wire.PublicationFrame(p.data, p.offset, p.key, p.info)
                        for p in channel.history[cmd.offset :]
                    ]
        channel.subscribers.add(conn)
        await conn.reply(cmd, result)

    async def on_unsubscribe(self, conn: HubConn, cmd: wire.UnsubscribeCommand) -> None:
        self.channel(cmd.channel).subscribers.discard(conn)
        await conn.reply(cmd)

    async def on_publish(self, conn: HubConn, cmd: wire.PublishCommand) -> None:
        info = wire.InfoFrame(client=conn.client_id, user=conn.user)
        push = await self.publish(cmd.channel, conn.codec.data(cmd.data), info=info, key=cmd.key)
        epoch = self.channel(cmd.channel).epoch if push.offset else None
        await conn.reply(cmd, wire.PublishResult(offset=push.offset, epoch=epoch))

    async def on_presence(self, conn: HubConn, cmd: wire.PresenceCommand) -> None:
        subs = self.channel(cmd.channel).subscribers
        clients = {c.client_id: wire.PresenceEntry(user=c.user) for c in subs}
        await conn.reply(cmd, wire.PresenceResult(clients=clients))

    async def on_presence_stats(self, conn: HubConn, cmd: wire.PresenceStatsCommand) -> None:
        subs = self.channel(cmd.channel).subscribers
        users = {c.user for c in subs}
        await conn.reply(cmd, wire.PresenceStatsResult(len(subs), len(users)))

    async def on_history(self, conn: HubConn, cmd: wire.HistoryCommand) -> None:
        channel = self.channel(cmd.channel)
        pubs = channel.history[cmd.since.offset if cmd.since else 0 :]
        pubs = pubs[::-1] if cmd.reverse else pubs
        pubs = pubs[: 100 if cmd.limit is None else cmd.limit]
        frames = [wire.PublicationFrame(p.data, p.offset, p.key, p.info) for p in pubs]
        await conn.reply(cmd, wire.HistoryResult(frames, channel.epoch, channel.offset))

    async def on_rpc(self, conn: HubConn, cmd: wire.RpcCommand) -> None:
        await conn.reply(cmd, wire.RpcResult(data=conn.codec.data(cmd.data)))

    async def on_ping(self, conn: HubConn, cmd: wire.PingCommand) -> None:
        await conn.reply(cmd)

    async def on_refresh(self, conn: HubConn, cmd: wire.RefreshCommand) -> None:
        conn.token = cmd.token
        await conn.reply(cmd, wire.RefreshResult(expires=self.ttl is not None, ttl=self.ttl))


# -- fixtures -------------------------------------------------------------------------------------


@dataclass
class HubEndpoint:
    """Where a hub listens and how to get a token for it: what end-to-end tests need."""

    url: str
    make_token: Callable[[str], str | None] = lambda user: user


@pytest.fixture
async def hub() -> AsyncIterator[ScriptedHub]:
    scripted = ScriptedHub()
    await scripted.start()
    yield scripted
    await scripted.stop()


@pytest.fixture
async def hub_endpoint(hub: ScriptedHub) -> HubEndpoint:
    """The hub under test for :class:`TestAnyHub`; override it to run against the real node."""
    return HubEndpoint(hub.url)


@pytest.fixture(params=ENCODINGS)
def encoding(request: pytest.FixtureRequest) -> Encoding:
    value: Encoding = request.param
    return value


@pytest.fixture
async def client(hub: ScriptedHub, encoding: Encoding) -> AsyncIterator[HubClient]:
    hub_client = HubClient(hub.url, token="alice", encoding=encoding, **FAST)
    await hub_client.connect()
    yield hub_client
    await hub_client.close()


async def wait_for(predicate: Callable[[], object], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state that has no event to wait on
            await asyncio.sleep(0.005)


async def take(sub: AsyncIterator[Publication], count: int, timeout: float = 5) -> list[Any]:
    """The data of the next ``count`` publications."""
    async with asyncio.timeout(timeout):
        return [(await anext(sub)).data for _ in range(count)]


# -- tests that any hub passes --------------------------------------------------------------------


class TestAnyHub:
    """Behaviour of every hub: reusable end to end through the ``hub_endpoint`` fixture."""

    async def test_publish_reaches_subscriber(self, hub_endpoint: HubEndpoint) -> None:
        url, token = hub_endpoint.url, hub_endpoint.make_token
        async with (
            HubClient(url, token=token("alice")) as alice,
            HubClient(url, token=token("bob"), encoding="msgpack") as bob,
        ):
            sub = bob.subscribe("chat:lobby")
            await sub.ready()
            result = await alice.publish("chat:lobby", {"text": "hi"})
            pub = await anext(sub)
            assert pub.data == {"text": "hi"}
            assert pub.offset == result.offset
            assert pub.info is not None
            assert alice.info is not None
            assert pub.info.client == alice.info.client

    async def test_presence_and_history(self, hub_endpoint: HubEndpoint) -> None:
        async with HubClient(hub_endpoint.url, token=hub_endpoint.make_token("alice")) as c:
            await c.subscribe("chat:room").ready()
            assert c.info is not None
            assert c.info.client in await c.presence("chat:room")
            stats = await c.presence_stats("chat:room")
            assert (stats.num_clients, stats.num_users) == (1, 1)
            for n in range(3):
                await c.publish("chat:room", n)
            history = await c.history("chat:room", limit=2, reverse=True)
            assert [p.data for p in history.publications] == [2, 1]
            assert history.offset == 3

    async def test_ping(self, hub_endpoint: HubEndpoint) -> None:
        async with HubClient(hub_endpoint.url, token=hub_endpoint.make_token("alice")) as c:
            assert await c.ping() >= 0


# -- connection lifecycle -------------------------------------------------------------------------


async def test_connect(hub: ScriptedHub, encoding: Encoding) -> None:
    seen: list[wire.ConnectResult] = []
    c = HubClient(hub.url, token="alice", encoding=encoding, on_connected=seen.append)
    assert c.state == "disconnected"
    info = await c.connect()
    assert (info.client, info.user, c.state) == ("c1", "alice", "connected")
    assert seen == [info]
    (cmd,) = hub.commands("connect")
    assert (cmd.id, cmd.token, cmd.name) == (1, "alice", "wsend.py")
    assert hub.conn.ws.protocol == f"wsend.v1.{encoding}"
    await c.close()
    assert c.state == "closed"  # type: ignore[comparison-overlap]  # mypy narrowed it


async def test_unauthorized_is_terminal(hub: ScriptedHub) -> None:
    hub.tokens = {"good"}
    disconnects: list[tuple[int, str, bool]] = []
    c = HubClient(hub.url, token="bad", on_disconnected=lambda *a: disconnects.append(a), **FAST)
    with pytest.raises(HubError) as info:
        await c.connect()
    assert (info.value.code, info.value.temporary) == (101, False)
    assert c.state == "closed"
    await asyncio.sleep(0.1)
    assert len(hub.conns) == 1
    assert disconnects
    assert disconnects[-1][2] is False


async def test_terminal_close_code(hub: ScriptedHub, client: HubClient) -> None:
    disconnects: list[tuple[int, str, bool]] = []
    client.on_disconnected = lambda *a: disconnects.append(a)
    sub = client.subscribe("chat:x")
    await sub.ready()
    await hub.conn.close(4502, "forbidden")
    await wait_for(lambda: client.state == "closed")
    assert disconnects == [(4502, "forbidden", False)]
    assert sub.state == "unsubscribed"
    assert [p async for p in sub] == []
    with pytest.raises(HubDisconnected) as info:
        await client.ping()
    assert info.value.code == 4502
    await asyncio.sleep(0.1)
    assert len(hub.conns) == 1


@pytest.mark.parametrize("code", [4000, 4001, 4002, 1001])
async def test_reconnect_after_reconnectable_close(hub: ScriptedHub, code: int) -> None:
    disconnects: list[tuple[int, str, bool]] = []
    async with HubClient(
        hub.url, token="alice", on_disconnected=lambda *a: disconnects.append(a), **FAST
    ) as c:
        await hub.conn.close(code, "bye")
        await hub.wait_conns(2)
        await wait_for(lambda: c.state == "connected")
        assert disconnects == [(code, "bye", True)]
        assert c.info is not None
        assert c.info.client == "c2"
        assert await c.ping() >= 0


async def test_reconnect_after_tcp_drop(hub: ScriptedHub) -> None:
    async with HubClient(hub.url, token="alice", **FAST) as c:
        hub.conn.ws.abort()
        await hub.wait_conns(2)
        await wait_for(lambda: c.state == "connected")


async def test_reconnect_backoff_while_hub_is_down(hub: ScriptedHub) -> None:
    errors: list[Exception] = []
    calls = 0

    async def refuse(conn: HubConn, cmd: Any) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            await conn.reply(cmd, error=HubError(111, "slow down", True))
            await conn.close(4007 if calls == 1 else 4000)
        else:
            await hub.on_connect(conn, cmd)

    hub.script["connect"] = refuse
    c = HubClient(hub.url, token="alice", on_error=errors.append, **FAST)
    async with asyncio.timeout(5):
        await c.connect()
    assert calls == 3
    await c.close()


async def test_connect_without_reconnect_fails_once(hub: ScriptedHub) -> None:
    url = hub.url
    await hub.stop()
    c = HubClient(url, token="alice", reconnect=False)
    with pytest.raises(HubDisconnected) as info:
        await c.connect()
    assert info.value.code == 1006
    assert c.state == "closed"


async def test_close_stops_reconnecting(hub: ScriptedHub) -> None:
    c = HubClient(hub.url, token="alice", **FAST)
    await c.connect()
    sub = c.subscribe("chat:x")
    await sub.ready()
    pending = asyncio.ensure_future(c.rpc("x"))
    hub.script["rpc"] = lambda conn, cmd: asyncio.sleep(10)
    await c.close()
    assert c.state == "closed"
    with pytest.raises(HubDisconnected):
        await pending
    await asyncio.sleep(0.1)
    assert len(hub.conns) == 1
    assert [p async for p in sub] == []
    with pytest.raises(HubDisconnected):
        await c.connect()
    await c.close()  # idempotent


# -- commands -------------------------------------------------------------------------------------


async def test_out_of_order_replies(hub: ScriptedHub, client: HubClient) -> None:
    async def slow_echo(conn: HubConn, cmd: wire.RpcCommand) -> None:
        await asyncio.sleep(conn.codec.value(cmd.data))
        await hub.on_rpc(conn, cmd)

    hub.script["rpc"] = slow_echo
    results = await asyncio.gather(client.rpc("echo", 0.2), client.rpc("echo", 0.0), client.ping())
    assert list(results[:2]) == [0.2, 0.0]
    ids = [cmd.id for cmd in hub.commands("rpc")]
    assert len(set(ids)) == 2
    assert all(i > 1 for i in ids)


async def test_commands_are_batched(hub: ScriptedHub, client: HubClient) -> None:
    await asyncio.gather(*(client.publish("chat:x", n) for n in range(5)))
    assert [len(m) for m in hub.conn.messages if m[0].__struct_config__.tag == "publish"] == [5]


async def test_command_timeout_keeps_connection(hub: ScriptedHub, client: HubClient) -> None:
    async def never(conn: HubConn, cmd: Any) -> None:
        pass

    hub.script["ping"] = never
    with pytest.raises(CommandTimeout) as info:
        await client.ping(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert info.value.method == "ping"
    assert (await client.publish("chat:x", 1)).offset == 1
    assert client.state == "connected"


async def test_hub_error(hub: ScriptedHub, client: HubClient) -> None:
    async def deny(conn: HubConn, cmd: Any) -> None:
        await conn.reply(cmd, error=HubError(103, "no publishing here"))

    hub.script["publish"] = deny
    with pytest.raises(HubError) as info:
        await client.publish("news:x", 1)
    assert (info.value.code, info.value.message, info.value.temporary) == (
        103,
        "no publishing here",
        False,
    )


async def test_rpc_history_presence(hub: ScriptedHub, client: HubClient) -> None:
    assert await client.rpc("echo", {"a": [1, 2]}) == {"a": [1, 2]}
    for n in range(4):
        await client.publish("chat:h", n)
    history = await client.history("chat:h", since=(2, "e1"))
    assert [(p.offset, p.data) for p in history.publications] == [(3, 2), (4, 3)]
    (cmd,) = hub.commands("history")
    assert cmd.since == wire.Since(offset=2, epoch="e1")


async def test_commands_wait_for_connection(hub: ScriptedHub) -> None:
    c = HubClient(hub.url, token="alice", **FAST)
    ping = asyncio.ensure_future(c.ping())
    await asyncio.sleep(0.05)
    assert not ping.done()
    await c.connect()
    assert await ping >= 0
    await c.close()


async def test_message_push(hub: ScriptedHub, client: HubClient) -> None:
    messages: list[Any] = []
    client.on_message = messages.append
    await hub.conn.send(wire.MessagePush(data={"hello": 1}), wire.MessagePush(data=2))
    await wait_for(lambda: len(messages) == 2)
    assert messages == [{"hello": 1}, 2]


async def test_unknown_push_is_ignored(hub: ScriptedHub, client: HubClient) -> None:
    await hub.conn.send({"push": "future-thing", "x": 1})
    assert await client.ping() >= 0


# -- subscriptions --------------------------------------------------------------------------------


async def test_subscribe_callback_and_async_for(hub: ScriptedHub, client: HubClient) -> None:
    got: list[Any] = []

    async def on_pub(pub: Publication) -> None:
        got.append(pub.data)

    with_callback = client.subscribe("chat:a", on_publication=on_pub)
    iterated = client.subscribe("chat:b")
    await with_callback.ready()
    await iterated.ready()
    for n in range(3):
        await hub.publish("chat:a", n)
        await hub.publish("chat:b", n)
    assert await take(iterated, 3) == [0, 1, 2]
    await wait_for(lambda: len(got) == 3)
    assert got == [0, 1, 2]
    assert iterated.offset == 3
    assert iterated.epoch == "e1"
    assert iterated.recoverable


async def test_subscribe_refused(hub: ScriptedHub, client: HubClient) -> None:
    async def deny(conn: HubConn, cmd: Any) -> None:
        await conn.reply(cmd, error=HubError(103))

    hub.script["subscribe"] = deny
    sub = client.subscribe("secret:x")
    with pytest.raises(HubError) as info:
        await sub.ready(timeout=5)
    assert info.value.code == 103
    assert sub.state == "unsubscribed"
    assert "secret:x" not in client.subscriptions


async def test_subscribe_before_connect_and_unsubscribe(hub: ScriptedHub) -> None:
    c = HubClient(hub.url, token="alice", **FAST)
    sub = c.subscribe("chat:early")
    await c.connect()
    await sub.ready(timeout=5)
    await sub.unsubscribe()
    assert sub.state == "unsubscribed"
    await wait_for(lambda: hub.commands("unsubscribe"))
    with pytest.raises(Exception, match="already subscribed"):
        c.subscribe("chat:x"), c.subscribe("chat:x")
    await c.close()


async def test_join_leave_and_unsubscribe_push(hub: ScriptedHub, client: HubClient) -> None:
    joins: list[wire.InfoFrame] = []
    ended: list[tuple[int, str]] = []
    sub = client.subscribe(
        "chat:j", on_join=joins.append, on_unsubscribed=lambda s, c, r: ended.append((c, r))
    )
    await sub.ready()
    info = wire.InfoFrame(client="c9", user="bob")
    await hub.conn.send(wire.JoinPush(channel="chat:j", info=info))
    await wait_for(lambda: joins)
    assert joins == [info]
    await hub.conn.send(wire.UnsubscribePush(channel="chat:j", code=2000, reason="kicked"))
    await wait_for(lambda: ended)
    assert ended == [(2000, "kicked")]
    assert sub.state == "unsubscribed"


async def test_overflow_drops_oldest(hub: ScriptedHub, client: HubClient) -> None:
    sub = client.subscribe("chat:o", max_queue=2)
    await sub.ready()
    for n in range(5):
        await hub.publish("chat:o", n)
    await wait_for(lambda: sub.offset == 5)
    assert sub.dropped == 3
    assert await take(sub, 2) == [3, 4]


# -- recovery -------------------------------------------------------------------------------------


async def test_recovery_after_drop(hub: ScriptedHub, client: HubClient) -> None:
    sub = client.subscribe("chat:r")
    await sub.ready()
    await hub.publish("chat:r", 1)
    await hub.publish("chat:r", 2)
    assert await take(sub, 2) == [1, 2]

    async def replay_with_duplicates(conn: HubConn, cmd: wire.SubscribeCommand) -> None:
        # Send a duplicate (offset 2) in the recovery, then live pushes overlapping it.
        channel = hub.channel(cmd.channel)
        frames = [wire.PublicationFrame(p.data, p.offset) for p in channel.history[1:]]
        channel.subscribers.add(conn)
        result = wire.SubscribeResult(True, "e1", 4, True, frames)
        await conn.send(wire.Reply(cmd.id, result), channel.history[3], channel.history[2])
        await hub.publish("chat:r", 5)

    await hub.conn.close(4000)
    await hub.publish("chat:r", 3)
    await hub.publish("chat:r", 4)
    hub.script["subscribe"] = replay_with_duplicates
    assert await take(sub, 3) == [3, 4, 5]
    resubscribe = hub.commands("subscribe")[-1]
    assert (resubscribe.recover, resubscribe.epoch, resubscribe.offset) == (True, "e1", 2)
    assert sub.recovered is True
    assert sub.offset == 5
    await hub.publish("chat:r", 6)
    assert await take(sub, 1) == [6]


async def test_recovery_failed(hub: ScriptedHub, client: HubClient) -> None:
    unrecovered: list[Any] = []
    sub = client.subscribe("chat:u", on_unrecovered=unrecovered.append)
    await sub.ready()
    await hub.publish("chat:u", 1)
    assert await take(sub, 1) == [1]
    await hub.conn.close(4001)
    hub.channels["chat:u"] = Channel(epoch="e2")  # the history was lost
    await hub.publish("chat:u", "new-1")
    await wait_for(lambda: unrecovered)
    assert unrecovered == [sub]
    assert sub.recovered is False
    assert (sub.epoch, sub.offset) == ("e2", 1)
    await hub.publish("chat:u", "new-2")
    assert await take(sub, 1) == ["new-2"]


async def test_gap_triggers_recovery(hub: ScriptedHub, client: HubClient) -> None:
    sub = client.subscribe("chat:g")
    await sub.ready()
    await hub.publish("chat:g", 1)
    await hub.publish("chat:g", 2, deliver=False)  # lost on the way
    await hub.publish("chat:g", 3)
    assert await take(sub, 3) == [1, 2, 3]
    assert hub.commands("unsubscribe")
    last = hub.commands("subscribe")[-1]
    assert (last.recover, last.offset) == (True, 1)
    assert sub.state == "subscribed"
    assert client.state == "connected"


async def test_gap_ignored_when_fill_gaps_off(hub: ScriptedHub, client: HubClient) -> None:
    sub = client.subscribe("chat:c", fill_gaps=False)
    await sub.ready()
    await hub.publish("chat:c", 1, deliver=False)
    await hub.publish("chat:c", 2)
    assert await take(sub, 1) == [2]
    assert not hub.commands("unsubscribe")


async def test_non_recoverable_channel(hub: ScriptedHub, client: HubClient) -> None:
    hub.recoverable = False
    sub = client.subscribe("chat:n")
    await sub.ready()
    await hub.conn.close(4000)
    await hub.wait_conns(2)
    await sub.ready(timeout=5)
    assert hub.commands("subscribe")[-1].recover is None
    await hub.publish("chat:n", "x")
    assert await take(sub, 1) == ["x"]


# -- credentials ----------------------------------------------------------------------------------


async def test_token_refresh_before_expiry(hub: ScriptedHub) -> None:
    hub.ttl = 1
    tokens = iter(["t1", "t2", "t3", "t4"])

    async def get_token() -> str:
        return next(tokens)

    async with HubClient(hub.url, get_token=get_token, **FAST) as c:
        assert hub.commands("connect")[0].token == "t1"
        await wait_for(lambda: hub.commands("refresh"), timeout=3)
        assert hub.commands("refresh")[0].token == "t2"
        # The client adopts the token once the hub's answer arrives, just after.
        await wait_for(lambda: c.token == "t2", timeout=3)
        assert len(hub.conns) == 1


async def test_token_expired_close_gets_new_token(hub: ScriptedHub) -> None:
    tokens = iter(["t1", "t2"])

    async def get_token() -> str:
        return next(tokens)

    async with HubClient(hub.url, get_token=get_token, **FAST) as c:
        await hub.conn.close(4004, "token expired")
        await hub.wait_conns(2)
        await wait_for(lambda: c.state == "connected")
        assert [cmd.token for cmd in hub.commands("connect")] == ["t1", "t2"]


async def test_connect_error_109_gets_new_token(hub: ScriptedHub) -> None:
    hub.expired = {"old"}
    fetched: list[str] = []

    async def get_token() -> str:
        fetched.append("fresh")
        return "fresh"

    async with HubClient(hub.url, token="old", get_token=get_token, **FAST) as c:
        assert c.info is not None
        assert c.info.user == "fresh"
    assert fetched == ["fresh"]
