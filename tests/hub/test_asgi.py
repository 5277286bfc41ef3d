"""The hub mounted in FastAPI and Starlette applications, served by real uvicorn on loopback.

Clients are the real :class:`~wsend.hub.client.HubClient`, a hand-written JSON client
(:class:`~.e2e.RawClient`, for exact replies and close codes) and ``httpx`` for the HTTP API,
the metrics and the host application's login (its session cookie).
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import httpx
import pytest

from wsend.asgi import WSendProtocol
from wsend.exceptions import InvalidStatus
from wsend.hub.asgi import HubApp, Scope, request_from_scope, route_path
from wsend.hub.auth import ConnectionClaims
from wsend.hub.client import HubClient
from wsend.hub.codes import DisconnectCode, ErrorCode
from wsend.hub.node import Hub
from wsend.hub.options import NamespaceOptions
from wsend.hub.session import Session
from wsend.protocol.http import Request

from .asgi_apps import Served, run_uvicorn, serve_app
from .e2e import API_KEY, NAMESPACES, RawClient, error_code, options, raw, token, wait_until

FAST: dict[str, Any] = {"backoff_min": 0.01, "backoff_max": 0.05}


def new_hub(**overrides: Any) -> Hub:
    """A hub with the end-to-end tests' options (HS256 tokens; no anonymous access)."""
    hub = Hub(options(**overrides), api_key=API_KEY)

    @hub.rpc("whoami")
    def whoami(session: Session, data: Any) -> Any:
        return {"user": session.user, "data": data}

    return hub


async def login(served: Served, user: str) -> str:
    """Log in to the host application; return its session cookie as a ``Cookie`` value."""
    async with httpx.AsyncClient(base_url=served.base) as http:
        response = await http.post("/login", params={"user": user})
        assert response.status_code == 200
        return f"session={response.cookies['session']}"


@pytest.mark.parametrize("kind", ["fastapi", "starlette"])
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_hub_client_commands(kind: str, encoding: Any) -> None:
    async with serve_app(new_hub(), kind) as served:
        joined: list[str] = []
        async with (
            HubClient(served.url, token=token("ann"), encoding=encoding, **FAST) as ann,
            HubClient(served.url, token=token("ben"), encoding=encoding, **FAST) as ben,
        ):
            sub = ann.subscribe("chat:room", on_join=lambda info: joined.append(info.user))
            await sub.ready()
            await ben.subscribe("chat:room").ready()
            await wait_until(lambda: joined == ["ben"])
            await ben.publish("chat:room", {"n": 1})
            assert (await anext(sub)).data == {"n": 1}
            presence = await ann.presence("chat:room")
            assert {entry.user for entry in presence.values()} == {"ann", "ben"}
            history = await ben.history("chat:room")
            assert [p.data for p in history.publications] == [{"n": 1}]
            assert await ann.rpc("whoami", [1]) == {"user": "ann", "data": [1]}
        await wait_until(lambda: not served.hub.sessions())


async def test_recovery_after_reconnect() -> None:
    feed = NamespaceOptions(history_size=100, history_ttl=60, recovery=True)
    async with serve_app(new_hub(namespaces={**NAMESPACES, "feed": feed}), "starlette") as served:
        hub = served.hub
        connects: list[Any] = []
        async with HubClient(
            served.url, token=token("ann"), on_connected=connects.append, **FAST
        ) as client:
            sub = client.subscribe("feed:ticks", max_queue=100)
            await sub.ready()
            await hub.publish("feed:ticks", 0)
            assert (await anext(sub)).data == 0
            hub.disconnect("ann", DisconnectCode.RECONNECT)
            for n in range(1, 6):  # while the client reconnects
                await hub.publish("feed:ticks", n)
            assert [(await anext(sub)).data for _ in range(5)] == [1, 2, 3, 4, 5]
            assert len(connects) == 2
            assert sub.recovered is True


async def test_raw_client_recovers_with_raw_frames() -> None:
    async with serve_app(new_hub()) as served:
        async with raw(served.url, token("ann")) as client:
            position = (await client.call("subscribe", channel="feed:a"))["result"]
            for n in range(3):
                await served.hub.publish("feed:a", n)
            assert [(await client.push())["offset"] for _ in range(3)] == [1, 2, 3]
        await served.hub.publish("feed:a", 3)
        async with raw(served.url, token("ann")) as client:
            again = await client.call(
                "subscribe", channel="feed:a", recover=True, epoch=position["epoch"], offset=2
            )
            assert again["result"]["recovered"] is True
            assert [p["data"] for p in again["result"]["publications"]] == [2, 3]


@pytest.mark.parametrize("kind", ["fastapi", "starlette"])
async def test_auth_from_the_host_applications_cookie_and_header(kind: str) -> None:
    async with serve_app(new_hub(), kind) as served:
        cookie = await login(served, "alice")
        async with raw(served.url, headers={"Cookie": cookie}) as client:
            result = (await client.connect())["result"]  # no token: the cookie says who
            assert result["user"] == "alice"
            [session] = served.hub.sessions("alice")
            assert session.info == {"via": "cookie"}
        headers = {"Authorization": "Bearer bob-token"}
        async with HubClient(served.url, ws_options={"headers": headers}, **FAST) as bob:
            assert bob.info is not None
            assert bob.info.user == "bob"
            assert await bob.rpc("whoami") == {"user": "bob", "data": None}
        # Refused by the hook, or by the hub's own rules (no token, no anonymous access).
        for refused in ({"Authorization": "Bearer wrong"}, {"Cookie": "session=forged"}):
            client = await RawClient.open(served.url, headers=refused)
            assert error_code(await client.connect()) == ErrorCode.UNAUTHORIZED
            assert await client.closed() == DisconnectCode.UNAUTHORIZED
        # The hub's tokens keep working beside the host application's credentials.
        async with raw(served.url, token("carol")) as client:
            assert (await client.call("ping"))["result"] == {}


async def test_api_publish_reaches_subscribers_and_metrics_are_served() -> None:
    async with serve_app(new_hub()) as served, HubClient(served.url, token=token("ann")) as ann:
        sub = ann.subscribe("chat:news")
        await sub.ready()
        async with httpx.AsyncClient(base_url=served.base) as http:
            body = {"channel": "chat:news", "data": {"headline": "ASGI"}}
            reply = await http.post("/api/publish", json=body, headers={"X-API-Key": API_KEY})
            assert reply.status_code == 200
            assert reply.json()["result"]["offset"] == 1
            assert (await anext(sub)).data == {"headline": "ASGI"}
            presence = await http.post(
                "/api/presence", json={"channel": "chat:news"}, headers={"X-API-Key": API_KEY}
            )
            assert [c["user"] for c in presence.json()["result"]["clients"].values()] == ["ann"]
            wrong = await http.post("/api/publish", json=body, headers={"X-API-Key": "nope"})
            assert wrong.status_code == 401
            assert (await http.post("/api/nope", headers={"X-API-Key": API_KEY})).status_code == 404
            assert (await http.get("/api/publish")).status_code == 405
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
            assert "wsend_hub_connections 1.0" in metrics.text
            assert 'wsend_hub_api_requests_total{method="publish",status="200"}' in metrics.text
            assert (await http.get("/ws/")).status_code == 426  # plain HTTP at the endpoint


async def test_only_routed_paths_reach_the_hub() -> None:
    async with serve_app(new_hub(), "starlette") as served:
        with pytest.raises(InvalidStatus, match="403"):
            await RawClient.open(served.url + "/other")  # no such route in the host app


QUEUE_BOUND = 32 * 1024
PAYLOAD = "x" * 8000


async def test_slow_consumer_is_disconnected_with_4002() -> None:
    slow_ns = NamespaceOptions(history_size=100, history_ttl=60, queue_max_bytes=QUEUE_BOUND)
    hub = new_hub(namespaces={**NAMESPACES, "ticks": slow_ns})
    async with serve_app(hub) as served:
        slow = await RawClient.open(served.url, max_queue=1, ping_interval=None, compression=None)
        await slow.connect(token("slow"))
        await slow.call("subscribe", channel="ticks:all")
        [session] = hub.sessions("slow")
        peak = sent = 0
        async with asyncio.timeout(30):
            while not session.closed:
                await hub.publish("ticks:all", {"n": sent, "pad": PAYLOAD})
                sent += 1
                await asyncio.sleep(0.0005)
                peak = max(peak, session.queue.size_bytes)
        assert session.close_code == DisconnectCode.SLOW_CONSUMER
        assert peak <= QUEUE_BOUND
        assert await slow.closed() == DisconnectCode.SLOW_CONSUMER
        await wait_until(lambda: not hub.sessions())
        assert 'wsend_hub_disconnects_total{code="4002"} 1.0' in hub.metrics.render().decode()


async def test_server_shutdown_ends_sessions_and_stops_the_node() -> None:
    hub = new_hub()
    async with serve_app(hub) as served:
        client = await RawClient.open(served.url)
        await client.connect(token("ann"))
        await client.call("subscribe", channel="chat:room")
        assert hub._started
        served.server.should_exit = True
        code = await client.closed()
    assert code == 1012  # uvicorn closes connections before the lifespan ends (reconnect)
    assert not hub.sessions()
    assert not hub._started  # the lifespan stopped the node
    assert await hub.presence_of("chat:room") == {}


async def never_reading_client(served: Served) -> tuple[RawClient, Session]:
    """A subscribed client that stops reading for good, and its session."""
    slow = await RawClient.open(served.url, max_queue=1, ping_interval=None, compression=None)
    await slow.connect(token("slow"))
    await slow.call("subscribe", channel="ticks:all")
    [session] = served.hub.sessions("slow")
    return slow, session


@pytest.mark.parametrize(
    "layer", ["websockets-sansio", "wsproto", pytest.param(WSendProtocol, id="wsend")]
)
async def test_uvicorn_websocket_layers(layer: Any) -> None:
    """Each of uvicorn's WebSocket layers runs the hub, wsend's own included; the session of
    a client that never reads again ends after the close timeout (ASGI can't abort a
    connection: the server's keepalive drops it)."""
    slow_ns = NamespaceOptions(queue_max_bytes=QUEUE_BOUND)
    hub = new_hub(namespaces={**NAMESPACES, "ticks": slow_ns})
    quick = {"close_timeout": 0.2}
    async with serve_app(hub, hub_app_options=quick, ws=layer) as served:
        async with HubClient(served.url, token=token("ann"), encoding="msgpack") as ann:
            sub = ann.subscribe("chat:room")
            await sub.ready()
            await ann.publish("chat:room", b"\x00binary")
            assert (await anext(sub)).data == b"\x00binary"
        slow, session = await never_reading_client(served)
        sent = 0
        async with asyncio.timeout(30):
            while not session.closed:
                await hub.publish("ticks:all", {"n": sent, "pad": PAYLOAD})
                sent += 1
                await asyncio.sleep(0.0005)
        assert session.close_code == DisconnectCode.SLOW_CONSUMER
        await wait_until(lambda: not hub.sessions(), timeout=20)
        slow.ws.abort()


async def test_hypercorn_serves_the_hub() -> None:
    """Another ASGI server: hypercorn serving the FastAPI application."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from .asgi_apps import fastapi_app

    hub = new_hub()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn closes it
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    task = asyncio.create_task(serve(fastapi_app(hub), config, shutdown_trigger=stop.wait))
    url = f"ws://127.0.0.1:{sock.getsockname()[1]}/ws/"
    try:
        async with asyncio.timeout(10):
            while not hub._started:  # noqa: ASYNC110 - the lifespan starts the node
                await asyncio.sleep(0.01)
        async with HubClient(url, token=token("ann")) as ann:
            sub = ann.subscribe("chat:room")
            await sub.ready()
            await hub.publish("chat:room", "hello")
            assert (await anext(sub)).data == "hello"
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
        sock.close()
    assert not hub._started


async def test_hub_app_at_the_top_answers_lifespan_and_async_hooks() -> None:
    hub = new_hub()
    calls: list[str] = []

    async def authenticate(request: Request, scope: Scope) -> ConnectionClaims | None:
        calls.append(request.path)
        user = request.query.get("user", [""])[0]
        if user == "boom":
            raise RuntimeError("the hook has a bug")
        return ConnectionClaims(user=user) if user else None

    async with run_uvicorn(HubApp(hub, authenticate=authenticate)) as (port, _):
        assert hub._started  # before any connection: the lifespan started it
        base = f"ws://127.0.0.1:{port}"
        async with raw(f"{base}/?user=dora") as client:
            assert (await client.connect())["result"]["user"] == "dora"
        async with raw(f"{base}/?user=boom") as client:
            reply = await client.connect()  # a failing hook refuses, temporarily
            assert error_code(reply) == ErrorCode.INTERNAL
            assert reply["error"]["temporary"] is True
        async with raw(f"{base}/", token("erin")) as client:
            assert (await client.call("ping"))["result"] == {}
    assert calls == ["/", "/", "/"]
    assert not hub._started


async def test_http_apps_routed_and_their_edges() -> None:
    async with serve_app(new_hub(), "starlette") as served:
        key = {"X-API-Key": API_KEY}
        async with httpx.AsyncClient(base_url=served.base) as http:
            body = {"channel": "chat:x", "data": 1}
            routed = await http.post("/hub-api/publish", json=body, headers=key)
            assert routed.json() == {
                "result": {"offset": 1, "epoch": routed.json()["result"]["epoch"]}
            }
            too_big = await http.post("/api/publish", content=b"x" * (2 << 20), headers=key)
            assert too_big.status_code == 413
            head = await http.head("/metrics")
            assert (head.status_code, head.content) == (200, b"")
            assert int(head.headers["content-length"]) > 0
            assert (await http.post("/metrics")).status_code == 405
        with pytest.raises(InvalidStatus, match="403"):
            await RawClient.open(f"ws://127.0.0.1:{served.port}/api/publish")


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/ws/", "/ws", "/"),  # Starlette's Mount: the whole path, and the mount's root_path
        ("/ws", "/ws", ""),
        ("/", "/ws", "/"),  # servers that strip root_path from path
        ("/wsx", "/ws", "/wsx"),  # not under the mount point
        ("/a/b", "", "/a/b"),
    ],
)
def test_route_path(path: str, root_path: str, expected: str) -> None:
    assert route_path({"path": path, "root_path": root_path}) == expected


def test_request_from_scope() -> None:
    scope = {
        "type": "websocket",
        "path": "/hub/caf\u00e9 room",
        "root_path": "/hub",
        "query_string": b"token=t&x=1",
        "headers": [(b"cookie", b"session=abc; theme=dark"), (b"authorization", b"Bearer x")],
    }
    request = request_from_scope(scope)
    assert request.path == "/caf%C3%A9%20room"
    assert request.query == {"token": ["t"], "x": ["1"]}
    assert request.cookies == {"session": "abc", "theme": "dark"}
    assert request.headers["Authorization"] == "Bearer x"
