"""End to end: the HTTP API (``POST /api/<method>``) of a real hub, and its API key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wsend.hub.codes import DisconnectCode, ErrorCode, HubError
from wsend.hub.memory import MemoryBroker

from .e2e import API_KEY, Running, http, options, raw, run_hub, token


async def api(running: Running, method: str, body: Any = None, **kwargs: Any) -> Any:
    return await http(f"{running.base}/api/{method}", body, **kwargs)


async def test_publish_broadcast_history_presence_disconnect_send() -> None:
    async with run_hub(api_key=API_KEY) as running, raw(running.url, token("ann")) as client:
        await client.call("subscribe", channel="chat:room")
        status, body = await api(running, "publish", {"channel": "chat:room", "data": {"a": 1}})
        assert status == 200
        epoch = body["result"]["epoch"]
        assert body["result"]["offset"] == 1
        assert (await client.push())["data"] == {"a": 1}
        status, body = await api(
            running, "broadcast", {"channels": ["chat:room", "feed:x"], "data": 2}
        )
        assert [p["offset"] for p in body["result"]["positions"]] == [2, 1]
        status, body = await api(
            running, "history", {"channel": "chat:room", "since": {"offset": 1, "epoch": epoch}}
        )
        assert [p["data"] for p in body["result"]["publications"]] == [2]
        status, body = await api(running, "history", {"channel": "chat:room", "reverse": True})
        assert [p["offset"] for p in body["result"]["publications"]] == [2, 1]
        status, body = await api(
            running, "history", {"channel": "chat:room", "since": {"offset": 1, "epoch": "x"}}
        )
        assert (status, body["error"]["code"]) == (400, ErrorCode.UNRECOVERABLE_POSITION)
        status, body = await api(running, "presence", {"channel": "chat:room"})
        assert [c["user"] for c in body["result"]["clients"].values()] == ["ann"]
        status, body = await api(running, "presence_stats", {"channel": "chat:room"})
        assert body["result"] == {"num_clients": 1, "num_users": 1}
        status, body = await api(running, "send", {"user": "ann", "data": "psst"})
        assert body["result"] == {"delivered": 1}
        assert (await client.push("message"))["data"] == "psst"
        status, body = await api(running, "disconnect", {"user": "ann", "code": 4000})
        assert body["result"] == {"disconnected": 1}
        assert await client.closed() == DisconnectCode.RECONNECT


async def test_api_key() -> None:
    async with run_hub(api_key=API_KEY) as running:
        body = {"channel": "chat:room", "data": 1}
        assert (await api(running, "publish", body, key=None))[0] == 401
        assert (await api(running, "publish", body, key="wrong"))[0] == 401
        header = {"Authorization": f"apikey {API_KEY}"}
        assert (await api(running, "publish", body, key=None, headers=header))[0] == 200
    async with run_hub() as running:  # no key configured: the API is off
        status, answer = await api(running, "publish", body)
        assert (status, answer["error"]["code"]) == (403, ErrorCode.PERMISSION_DENIED)


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        ("publish", None, 400),  # no body: {} lacks channel and data
        ("publish", {"channel": "chat:a"}, 400),
        ("publish", {"channel": "chat:a", "data": 1, "key": 5}, 400),
        ("publish", {"channel": "", "data": 1}, 400),
        ("publish", {"channel": "nope:a", "data": 1}, 400),  # unknown namespace: 102
        ("broadcast", {"channels": "chat:a", "data": 1}, 400),
        ("broadcast", {"channels": ["chat:a"]}, 400),
        ("history", {"channel": "chat:a", "limit": -1}, 400),
        ("history", {"channel": "chat:a", "limit": True}, 400),
        ("history", {"channel": "chat:a", "since": 3}, 400),
        ("history", {"channel": "chat:a", "since": {"offset": 1}}, 400),
        ("history", {"channel": "chat:a", "since": {"offset": True, "epoch": "e"}}, 400),
        ("history", {"channel": "chat:a", "since": {"offset": -1, "epoch": "e"}}, 400),
        ("history", {"channel": "chat:a", "since": {"offset": 0, "epoch": ""}}, 400),  # 112
        ("disconnect", {"user": "ann", "code": True}, 400),
        ("disconnect", {"user": "ann", "code": 1000}, 400),
        ("disconnect", {"user": "ann", "reason": "x" * 200}, 400),
        ("send", {"user": "ann"}, 400),
        ("presence", {"channel": 7}, 400),
        ("teleport", {}, 404),
    ],
)
async def test_bad_requests(method: str, body: Any, status: int) -> None:
    async with run_hub(api_key=API_KEY) as running:
        assert (await api(running, method, body))[0] == status


@pytest.mark.parametrize("raw_body", [b"not json", b"[1, 2]", b"\xff\xfe"])
async def test_body_must_be_a_json_object(raw_body: bytes) -> None:
    async with run_hub(api_key=API_KEY) as running:
        status, body = await api(running, "publish", raw_body=raw_body)
        assert (status, body["error"]["code"]) == (400, ErrorCode.BAD_REQUEST)


async def test_internal_error_is_500(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_hub(api_key=API_KEY) as running:

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("engine down")

        monkeypatch.setattr(running.hub, "publish", broken)
        status, body = await api(running, "publish", {"channel": "chat:a", "data": 1})
        assert (status, body["error"]) == (500, {"code": 100, "message": "internal error"})


async def test_history_of_client_publications() -> None:
    """Data published by clients (kept in wire encoding inside the hub) comes back as JSON."""
    async with run_hub(api_key=API_KEY) as running, raw(running.url, token("ann")) as client:
        assert "result" in await client.call("publish", channel="chat:room", data={"t": "hi"})
        _, body = await api(running, "history", {"channel": "chat:room"})
        [publication] = body["result"]["publications"]
        assert publication["data"] == {"t": "hi"}
        assert publication["info"]["user"] == "ann"


class DownBroker(MemoryBroker):
    """An engine whose publishing is unavailable (as Redis down)."""

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        raise HubError(ErrorCode.INTERNAL, "engine unavailable", temporary=True)


async def test_engine_unavailable_is_503() -> None:
    async with run_hub(api_key=API_KEY, broker=DownBroker()) as running:
        status, body = await api(running, "publish", {"channel": "chat:a", "data": 1})
        assert (status, body["error"]["code"]) == (503, ErrorCode.INTERNAL)


async def test_data_one_encoding_cant_carry_is_400() -> None:
    async with run_hub(api_key=API_KEY) as running:
        body = {"channel": "chat:a", "data": {"n": 2**70}}
        status, answer = await api(running, "publish", body)
        assert (status, answer["error"]["code"]) == (400, ErrorCode.BAD_REQUEST)
        status, answer = await api(running, "send", {"user": "ann", "data": 2**70})
        assert (status, answer["error"]["code"]) == (400, ErrorCode.BAD_REQUEST)


async def test_disconnect_one_connection_by_client_id_even_anonymous() -> None:
    hub_options = options(allow_anonymous=True)
    async with (
        run_hub(hub_options, api_key=API_KEY) as running,
        raw(running.url) as first,
        raw(running.url) as second,
    ):
        ids = []
        for client in (first, second):
            reply = await client.connect()
            ids.append(reply["result"]["client"])
        status, body = await api(running, "disconnect", {"user": ""})
        assert status == 400
        status, body = await api(running, "disconnect", {"client": ids[1], "code": 4001})
        assert body["result"] == {"disconnected": 1}
        assert await second.closed() == 4001
        async with asyncio.timeout(5):
            while len(running.hub.sessions()) > 1:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
        assert [s.client for s in running.hub.sessions()] == [ids[0]]
        status, body = await api(running, "disconnect", {"client": ids[0], "user": 3})
        assert status == 400
        status, body = await api(running, "disconnect", {"client": ids[0], "user": "bob"})
        assert body["result"] == {"disconnected": 0}  # that connection isn't bob's
