"""``docs/protocol.md`` read as a contract: its statements, checked over real sockets.

The clients here are written from the document only: plain WebSocket connections sending JSON
text or MessagePack binary frames, reading exact frames and close codes. Where the document
says something both encodings do, the test runs with both.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

import wsend
from wsend.exceptions import ConnectionClosed
from wsend.hub import fossil
from wsend.hub.auth import make_token
from wsend.hub.codes import HubError
from wsend.hub.memory import MemoryBroker
from wsend.hub.options import HubOptions, JwtOptions, NamespaceOptions
from wsend.hub.session import Session

from .clock import T0, Clock
from .e2e import run_hub

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
SECRET = "protocol-doc-secret-" * 3


def hub_options(**overrides: Any) -> HubOptions:
    chat = NamespaceOptions(
        subscribe="authenticated",
        publish=True,
        presence=True,
        join_leave=True,
        history_size=20,
        history_ttl=60,
        recovery=True,
    )
    values: dict[str, Any] = {
        "namespaces": {"": NamespaceOptions(publish=True), "chat": chat},
        "jwt": JwtOptions(secret=SECRET, leeway=0),
        "allow_anonymous": True,
    }
    values.update(overrides)
    return HubOptions(**values)


def jwt(user: str, **claims: Any) -> str:
    return make_token(SECRET, user, **claims)


class DocClient:
    """A client written from the document: one encoding, frames in, frames out."""

    def __init__(self, ws: wsend.ClientConnection, encoding: str) -> None:
        self.ws = ws
        self.binary = encoding == "msgpack"
        self.next = 0
        self.inbox: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, encoding: str, **kwargs: Any) -> DocClient:
        ws = await wsend.connect(url, subprotocols=[f"wsend.v1.{encoding}"], **kwargs)
        return cls(ws, encoding)

    def encode(self, value: Any) -> str | bytes:
        if self.binary:
            return msgspec.msgpack.encode(value)
        return msgspec.json.encode(value).decode()

    async def receive(self) -> list[dict[str, Any]]:
        async with asyncio.timeout(5):
            message = await self.ws.recv()
        assert isinstance(message, bytes if self.binary else str), "frame type per section 1"
        decoded = (msgspec.msgpack if self.binary else msgspec.json).decode(message)
        return decoded if isinstance(decoded, list) else [decoded]

    async def command(self, method: str, **fields: Any) -> dict[str, Any]:
        self.next += 1
        await self.ws.send(self.encode({"id": self.next, "method": method, **fields}))
        while True:
            for frame in await self.receive():
                if frame.get("id") == self.next:
                    return frame
                self.inbox.append(frame)

    async def result(self, method: str, **fields: Any) -> dict[str, Any]:
        reply = await self.command(method, **fields)
        assert set(reply) == {"id", "result"}, reply
        result: dict[str, Any] = reply["result"]
        return result

    async def error(self, method: str, **fields: Any) -> dict[str, Any]:
        reply = await self.command(method, **fields)
        assert set(reply) == {"id", "error"}, reply
        error: dict[str, Any] = reply["error"]
        assert set(error) == {"code", "message", "temporary"}
        return error

    async def push(self, kind: str) -> dict[str, Any]:
        while True:
            for index, frame in enumerate(self.inbox):
                if frame.get("push") == kind:
                    return self.inbox.pop(index)
            self.inbox.extend(await self.receive())

    async def close_code(self) -> int:
        with contextlib.suppress(ConnectionClosed):
            while True:
                self.inbox.extend(await self.receive())
        assert self.ws.close_code is not None
        return self.ws.close_code


ENCODINGS = pytest.mark.parametrize("encoding", ["json", "msgpack"])


@pytest.fixture
async def running() -> Any:
    async with run_hub(hub_options(), clock=Clock()) as running:
        yield running


# -- section 1 ----------------------------------------------------------------------------------


async def test_subprotocol_choice(running: Any) -> None:
    for offered, chosen in [(None, None), (["other"], None), (["wsend.v1.msgpack"], "msgpack")]:
        ws = await wsend.connect(running.url, subprotocols=offered)
        assert ws.protocol == (None if chosen is None else f"wsend.v1.{chosen}")
        client = DocClient(ws, chosen or "json")
        assert (await client.result("connect"))["user"] == ""
        await ws.close()


@ENCODINGS
async def test_data_round_trips_and_transcodes(running: Any, encoding: str) -> None:
    other = "json" if encoding == "msgpack" else "msgpack"
    deep: Any = "bottom"
    for _ in range(500):  # "nesting up to 500 levels is always accepted"
        deep = [deep]
    payloads: list[Any] = [None, 0, -(2**63), 2**64 - 1, 1.5, "é", [1, {"a": None}], deep]
    publisher = await DocClient.open(running.url, encoding)
    same = await DocClient.open(running.url, encoding)
    transcoded = await DocClient.open(running.url, other)
    for client in (publisher, same, transcoded):
        await client.result("connect")
    for client in (same, transcoded):
        await client.result("subscribe", channel="data")
    for data in payloads:
        assert await publisher.result("publish", channel="data", data=data) == {}
        for client in (same, transcoded):
            push = await client.push("pub")
            assert push["data"] == data
            assert set(push) <= {"push", "channel", "data", "offset", "key", "info"}


async def test_msgpack_bin_reaches_json_as_base64(running: Any) -> None:
    publisher = await DocClient.open(running.url, "msgpack")
    reader = await DocClient.open(running.url, "json")
    for client in (publisher, reader):
        await client.result("connect")
    await reader.result("subscribe", channel="bin")
    await publisher.result("publish", channel="bin", data=b"\x00\x01")
    assert (await reader.push("pub"))["data"] == "AAE="


@ENCODINGS
async def test_limits(encoding: str) -> None:
    async with run_hub(hub_options(max_publication_size=100)) as running:
        client = await DocClient.open(running.url, encoding)
        await client.result("connect")
        assert (await client.error("publish", channel="x", data="a" * 200))["code"] == 106
        batch = [{"id": i, "method": "ping"} for i in range(1, 102)]  # 101 frames: invalid
        await client.ws.send(client.encode(batch))
        await client.ws.send(client.encode(batch[:100]))  # 100 frames: executed in order
        replies = await client.receive()
        assert [r["id"] for r in replies] == list(range(1, 101))
        await client.ws.send(client.encode({"id": 1, "method": "publish", "data": "a" * 70000}))
        assert await client.close_code() == 1009


# -- section 2 ----------------------------------------------------------------------------------


@ENCODINGS
async def test_invalid_frames(running: Any, encoding: str) -> None:
    client = await DocClient.open(running.url, encoding)
    await client.result("connect")
    for method, fields in (
        ("teleport", {}),
        ("subscribe", {"channel": 1}),
        ("history", {"channel": "chat:x", "limit": "3"}),
        ("publish", {"channel": "x", "data": 1.0, "key": 7}),
    ):
        error = await client.error(method, **fields)
        assert (error["code"], error["temporary"]) == (107, False)
    for _ in range(6):  # no readable id: no reply; the tenth invalid frame closes
        await client.ws.send(client.encode({"method": "ping"}))
    assert await client.close_code() == 4500
    assert all(frame.get("error", {}).get("code") == 107 for frame in client.inbox)


# -- section 3 ----------------------------------------------------------------------------------


async def test_lifecycle_refusals(running: Any) -> None:
    hub = running.hub
    client = await DocClient.open(running.url, "json")
    assert (await client.error("ping"))["code"] == 101
    assert await client.close_code() == 4501

    expired = await DocClient.open(running.url, "json")
    assert (await expired.error("connect", token=jwt("ann", exp=T0 - 1)))["code"] == 109
    assert await expired.close_code() == 4004

    @hub.on_connect_callback
    def gate(session: Session, data: Any) -> Any:
        if data == "busy":
            raise HubError(1005, "busy", temporary=True)
        if data == "banned":
            raise HubError(1006, "banned")
        return {"hello": session.user}

    retry = await DocClient.open(running.url, "json")
    assert await retry.error("connect", data="busy") == {
        "code": 1005,
        "message": "busy",
        "temporary": True,
    }
    result = await retry.result("connect", token=jwt("ann"))
    assert set(result) == {"client", "user", "expires", "ping", "node", "data"}
    assert re.fullmatch("[0-9a-f]{32}", result["client"])
    assert (result["user"], result["expires"], result["data"]) == ("ann", False, {"hello": "ann"})
    assert (await retry.error("connect"))["code"] == 107  # already connected, stays open
    assert await retry.result("ping") == {}

    banned = await DocClient.open(running.url, "json")
    assert (await banned.error("connect", data="banned"))["code"] == 1006
    assert await banned.close_code() == 4501


# -- section 4 ----------------------------------------------------------------------------------


@ENCODINGS
async def test_commands_as_documented(running: Any, encoding: str) -> None:
    ann = await DocClient.open(running.url, encoding)
    ben = await DocClient.open(running.url, encoding)
    connected = await ann.result("connect", token=jwt("ann", exp=T0 + 100, info={"n": 1}))
    assert (connected["expires"], connected["ttl"], connected["ping"]) == (True, 100, 20)
    await ben.result("connect", token=jwt("ben"))

    subscribed = await ann.result("subscribe", channel="chat:room")
    assert set(subscribed) == {"recoverable", "epoch", "offset"}
    assert (subscribed["recoverable"], subscribed["offset"]) == (True, 0)
    assert await ann.result("subscribe", channel="plain", recover=True) == {
        "recoverable": False,
        "recovered": False,
    }
    assert (await ann.error("subscribe", channel="chat:room"))["code"] == 105
    assert (await ann.error("subscribe", channel="nope:x"))["code"] == 102
    assert (await ann.error("subscribe", channel="bad name"))["code"] == 102

    await ben.result("subscribe", channel="chat:room")
    joined = await ann.push("join")
    assert joined["info"]["user"] == "ben"
    assert set(joined) == {"push", "channel", "info"}

    published = await ben.result("publish", channel="chat:room", data={"t": 1}, key="k")
    assert published == {"offset": 1, "epoch": subscribed["epoch"]}
    pub = await ann.push("pub")
    assert pub["offset"] == 1
    assert pub["key"] == "k"
    assert set(pub["info"]) == {"client", "user"}

    presence = await ann.result("presence", channel="chat:room")
    assert {entry["user"] for entry in presence["clients"].values()} == {"ann", "ben"}
    assert [e["info"] for e in presence["clients"].values() if e["user"] == "ann"] == [{"n": 1}]
    stats = await ann.result("presence_stats", channel="chat:room")
    assert stats == {"num_clients": 2, "num_users": 2}
    assert (await ann.error("presence", channel="plain"))["code"] == 108
    assert (await ann.error("history", channel="plain"))["code"] == 108

    for n in range(2, 6):
        await ben.result("publish", channel="chat:room", data=n)
    epoch = subscribed["epoch"]
    page = await ann.result(
        "history", channel="chat:room", limit=2, since={"offset": 1, "epoch": epoch}
    )
    assert [p["offset"] for p in page["publications"]] == [2, 3]
    assert (page["epoch"], page["offset"]) == (epoch, 5)
    newest = await ann.result("history", channel="chat:room", limit=2, reverse=True)
    assert [p["offset"] for p in newest["publications"]] == [5, 4]
    assert (await ann.result("history", channel="chat:room", limit=0))["publications"] == []
    bad_epoch = {"offset": 1, "epoch": "other"}
    assert (await ann.error("history", channel="chat:room", since=bad_epoch))["code"] == 112

    running.hub.rpc("echo")(lambda session, data: data)
    running.hub.rpc("nothing")(lambda session, data: None)
    assert await ann.result("rpc", name="echo", data=[1, "x"]) == {"data": [1, "x"]}
    assert await ann.result("rpc", name="nothing") == {}
    assert (await ann.error("rpc", name="missing"))["code"] == 104

    refreshed = await ann.result("refresh", token=jwt("ann", exp=T0 + 500))
    assert refreshed == {"expires": True, "ttl": 500}
    assert (await ann.error("refresh", token=jwt("ben", exp=T0 + 500)))["code"] == 101

    assert await ben.result("unsubscribe", channel="chat:room") == {}
    assert await ben.result("unsubscribe", channel="never:subscribed") == {}
    left = await ann.push("leave")
    assert left["info"]["user"] == "ben"

    running.hub.send_message("ann", {"note": 1})
    assert await ann.push("message") == {"push": "message", "data": {"note": 1}}


async def test_recovery_all_or_nothing(running: Any) -> None:
    client = await DocClient.open(running.url, "json")
    await client.result("connect", token=jwt("ann"))
    position = await client.result("subscribe", channel="chat:r")
    await client.result("unsubscribe", channel="chat:r")
    for n in range(3):
        await running.hub.publish("chat:r", n)
    again = await client.result(
        "subscribe", channel="chat:r", recover=True, epoch=position["epoch"], offset=0
    )
    assert again["recovered"] is True
    assert [p["data"] for p in again["publications"]] == [0, 1, 2]
    await client.result("unsubscribe", channel="chat:r")
    nothing_missed = await client.result(
        "subscribe", channel="chat:r", recover=True, epoch=position["epoch"], offset=3
    )
    assert (nothing_missed["recovered"], nothing_missed["publications"]) == (True, [])
    await client.result("unsubscribe", channel="chat:r")
    for n in range(3, 30):  # beyond the history (20)
        await running.hub.publish("chat:r", n)
    lost = await client.result(
        "subscribe", channel="chat:r", recover=True, epoch=position["epoch"], offset=3
    )
    assert lost["recovered"] is False
    assert "publications" not in lost
    assert lost["offset"] == 30


# -- section 5 ----------------------------------------------------------------------------------


async def test_epoch_change_while_subscribed_asks_to_resubscribe() -> None:
    clock = Clock()
    async with run_hub(
        hub_options(), clock=clock, broker=MemoryBroker(clock, cleanup_interval=0)
    ) as running:
        client = await DocClient.open(running.url, "json")
        await client.result("connect", token=jwt("ann"))
        position = await client.result("subscribe", channel="chat:e")
        await running.hub.publish("chat:e", "a")
        assert (await client.push("pub"))["offset"] == 1
        clock.now += 86_400 + 1  # the channel's position expires: the next publication is
        await running.hub.publish("chat:e", "b")  # offset 1 of a new epoch
        push = await client.push("unsubscribe")
        assert push == {
            "push": "unsubscribe",
            "channel": "chat:e",
            "code": 2500,
            "reason": "resubscribe",
        }
        assert not [f for f in client.inbox if f.get("push") == "pub"]
        again = await client.result(
            "subscribe", channel="chat:e", recover=True, epoch=position["epoch"], offset=1
        )
        assert again["recovered"] is False
        assert (again["offset"], again["epoch"] != position["epoch"]) == (1, True)


# -- section 7 and the example --------------------------------------------------------------------


async def test_example_session_frames(running: Any) -> None:
    text = DOC.read_text()
    example = text[text.index("## 11. Example session") :]
    sent = [json_line for json_line in re.findall(r"^→ (\{.*\})$", example, re.M)]
    client = await DocClient.open(running.url, "json")
    token = jwt("alice", exp=T0 + 3599)
    shapes = []
    for line in sent[:4]:
        command = msgspec.json.decode(line)
        if "token" in command:
            command["token"] = token
        command.pop("id")
        reply = await client.command(command.pop("method"), **command)
        shapes.append(sorted(reply.get("result", reply.get("error", {}))))
    assert shapes == [
        ["client", "expires", "node", "ping", "ttl", "user"],
        ["epoch", "offset", "recoverable"],
        ["epoch", "offset"],
        ["code", "message", "temporary"],
    ]
    assert (await client.push("pub"))["info"]["user"] == "alice"


# -- section 5: delta compression ----------------------------------------------------------------


def test_the_delta_example_of_section_11_applies() -> None:
    """The example's delta turns the first payload into the second, as the text explains."""
    text = DOC.read_text()
    first = (
        '{"bids":[[100.5,3],[100.4,7],[100.3,12]],"asks":[[100.6,5],[100.7,9],[100.8,4]],"seq":1}'
    )
    assert msgspec.json.encode(first).decode()[1:-1] in text  # the string, escaped, as shown
    delta = "1O\nQ@0,1:8w@R,2:2}d0I43;"
    assert msgspec.json.encode(delta).decode()[1:-1] in text
    second = fossil.apply(first.encode(), delta.encode())
    assert len(first) == 88
    assert second == first.replace("[100.4,7]", "[100.4,8]").replace('"seq":1', '"seq":2').encode()


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_delta_compression_as_section_5_says(encoding: str) -> None:
    ns = NamespaceOptions(publish=True, delta=True)
    async with run_hub(hub_options(namespaces={"": NamespaceOptions(), "book": ns})) as running:
        client = await DocClient.open(running.url, encoding)
        await client.result("connect")
        assert (await client.error("subscribe", channel="book:x", delta="vcdiff"))["code"] == 107
        assert (await client.result("subscribe", channel="book:x", delta="fossil"))["delta"]
        book = {"bids": [[100.5, 3], [100.4, 7], [100.3, 12]] * 4, "seq": 1}
        await client.result("publish", channel="book:x", data=book)
        full = await client.push("pub")
        assert "delta" not in full
        payload = full["data"] if client.binary else full["data"].encode()
        assert (msgspec.msgpack if client.binary else msgspec.json).decode(payload) == book
        book["seq"] = 2
        await client.result("publish", channel="book:x", data=book)
        push = await client.push("pub")
        assert push["delta"] is True
        delta = push["data"] if client.binary else push["data"].encode()
        rebuilt = fossil.apply(payload, delta)
        assert (msgspec.msgpack if client.binary else msgspec.json).decode(rebuilt) == book
