"""Helpers of the end-to-end tests: a real :class:`~wsend.hub.node.Hub` served on loopback.

:func:`run_hub` starts a hub with :func:`wsend.serve` on a free port; :class:`RawClient` speaks
the hub protocol by hand over a plain ``wsend`` connection (JSON frames), so tests see the
exact replies and close codes; :func:`http` calls the HTTP API and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import wsend
from wsend.exceptions import ConnectionClosed
from wsend.hub.auth import make_token
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions, JwtOptions, NamespaceOptions

SECRET = "end-to-end-secret-" * 3
AUDIENCE = "wsend-tests"
ISSUER = "https://auth.example"
API_KEY = "api-key-for-tests"

#: The namespaces most end-to-end tests use.
NAMESPACES = {
    "": NamespaceOptions(),
    "chat": NamespaceOptions(
        subscribe="authenticated",
        publish=True,
        presence=True,
        join_leave=True,
        history_size=100,
        history_ttl=60,
        recovery=True,
    ),
    "feed": NamespaceOptions(history_size=100, history_ttl=60, recovery=True),
    "secret": NamespaceOptions(subscribe="token", publish=True),
    "notes": NamespaceOptions(subscribe="authenticated", publish=True),
    "dm": NamespaceOptions(subscribe="authenticated", publish=True),
    "vip": NamespaceOptions(subscribe="callback"),
}


def options(**overrides: Any) -> HubOptions:
    """The test hub's options: :data:`NAMESPACES`, HS256 tokens with audience and issuer."""
    values: dict[str, Any] = {
        "namespaces": NAMESPACES,
        "jwt": JwtOptions(secret=SECRET, audience=AUDIENCE, issuer=ISSUER, leeway=0),
    }
    values.update(overrides)
    return HubOptions(**values)


def token(user: str, key: str = SECRET, **claims: Any) -> str:
    """A connection (or, with ``channel=...``, channel) token accepted by :func:`options`."""
    claims.setdefault("aud", AUDIENCE)
    claims.setdefault("iss", ISSUER)
    return make_token(key, user, **claims)


@dataclass
class Running:
    """A hub being served: the node and its server."""

    hub: Hub
    server: wsend.Server

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/ws"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@contextlib.asynccontextmanager
async def run_hub(
    hub_options: HubOptions | None = None,
    *,
    serve_options: dict[str, Any] | None = None,
    **hub_kwargs: Any,
) -> AsyncIterator[Running]:
    """Serve a new hub on a free loopback port for the duration of the block.

    ``serve_options`` go to :func:`wsend.serve` after the hub's own (e.g. ``close_timeout``).
    """
    hub = Hub(hub_options or options(), **hub_kwargs)
    kwargs = {**hub.serve_kwargs(), **(serve_options or {})}
    async with wsend.serve(hub.handler, "127.0.0.1", 0, **kwargs) as server:
        try:
            yield Running(hub, server)
        finally:
            await hub.close()


class RawClient:
    """The hub protocol by hand: JSON commands out, replies and pushes in, in order."""

    def __init__(self, ws: wsend.ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self._next = 0

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> RawClient:
        ws = await wsend.connect(url, subprotocols=["wsend.v1.json"], **kwargs)
        return cls(ws)

    async def send(self, *frames: Any) -> None:
        """Send frames in one message (a batch when several)."""
        await self.ws.send(json.dumps(frames[0] if len(frames) == 1 else list(frames)))

    async def frames(self) -> list[dict[str, Any]]:
        """The frames of the next message."""
        async with asyncio.timeout(5):
            message = await self.ws.recv()
        decoded = json.loads(message)
        return decoded if isinstance(decoded, list) else [decoded]

    async def call(self, method: str, **fields: Any) -> dict[str, Any]:
        """Send one command; return its reply (pushes received meanwhile go to ``pushes``)."""
        self._next += 1
        await self.send({"id": self._next, "method": method, **fields})
        return await self.reply(self._next)

    async def reply(self, id: int) -> dict[str, Any]:
        while True:
            frames = await self.frames()
            for index, frame in enumerate(frames):
                if frame.get("id") == id:
                    self.pushes.extend(frames[index + 1 :])
                    return frame
                self.pushes.append(frame)

    async def push(self, kind: str = "pub") -> dict[str, Any]:
        """The next push of ``kind`` (earlier ones of other kinds are kept in ``pushes``)."""
        while True:
            for index, frame in enumerate(self.pushes):
                if frame.get("push") == kind:
                    return self.pushes.pop(index)
            self.pushes.extend(await self.frames())

    async def connect(self, token: str | None = None) -> dict[str, Any]:
        return await self.call("connect", **({"token": token} if token is not None else {}))

    async def closed(self) -> int:
        """Read until the hub closes; return the close code it sent."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.ws.recv()
        code = self.ws.close_code
        assert code is not None
        return code

    async def close(self) -> None:
        await self.ws.close()


@contextlib.asynccontextmanager
async def raw(url: str, token_: str | None = None, **kwargs: Any) -> AsyncIterator[RawClient]:
    """A :class:`RawClient`, connected with ``token_`` unless it is ``None``."""
    client = await RawClient.open(url, **kwargs)
    try:
        if token_ is not None:
            reply = await client.connect(token_)
            assert "result" in reply, reply
        yield client
    finally:
        await client.close()


def error_code(reply: dict[str, Any]) -> int | None:
    """The error code of a reply, ``None`` when it succeeded."""
    error = reply.get("error")
    return None if error is None else int(error["code"])


async def http(
    url: str,
    body: Any = None,
    *,
    key: str | None = API_KEY,
    method: str = "POST",
    raw_body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """An HTTP request (``urllib`` in a thread); returns the status and the decoded body."""
    data = raw_body if raw_body is not None else None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        all_headers["X-API-Key"] = key
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)

    def call() -> tuple[int, bytes, str]:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), response.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    status, payload, ctype = await asyncio.to_thread(call)
    return status, json.loads(payload) if "json" in ctype else payload.decode()


async def wait_until(predicate: Callable[[], object], timeout: float = 10) -> None:
    """Poll ``predicate`` until true: for state that has no event to wait on."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
