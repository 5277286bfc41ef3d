"""Interoperability with other WebSocket implementations, over real sockets.

wsend's client talks to servers built on ``websockets``, ``aiohttp`` and Node's ``ws``; clients
built on the same three libraries talk to wsend's server. Each pairing runs with and without
permessage-deflate and checks, from both sides:

- text (ASCII and not), binary and empty messages, 1 MiB messages and a batch of messages in
  order come back unchanged and with their type;
- permessage-deflate is negotiated exactly when both sides ask for it;
- the close code (and reason) each side sees, whichever side starts the closing handshake;
- ``ping()`` returns the round-trip time against each peer server.

The Node peers are ``node/echo_server.js`` and ``node/client.js``; they need Node.js and the
``ws`` package (``npm ci`` in ``tests/interop/node``, which the ``node`` fixture runs when
``node_modules`` is missing). Without Node.js these tests are skipped, except under CI (the ``CI``
environment variable set), where they fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import random
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import WSMsgType, web
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import serve as websockets_serve

import wsend

pytestmark = pytest.mark.timeout(60)

NODE_DIR = Path(__file__).parent / "node"
MAX_SIZE = 4 * 2**20  # every peer accepts messages up to 4 MiB
DEFLATE = ["permessage-deflate"]

Message = str | bytes

# A text message of 1 MiB once encoded in UTF-8, with multi-byte characters throughout.
LARGE_TEXT = ("ünïcødé ✓ " * (2**20 // 16 + 1)).encode()[: 2**20].decode("utf-8", "ignore")
LARGE_BINARY = random.Random(6455).randbytes(2**20)
MESSAGES: list[Message] = [
    "hello",
    "héllo wörld — ✓ 🎉 日本語",
    b"\x00\x01\x02\xfe\xff",
    "",
    b"",
    LARGE_TEXT,
    LARGE_BINARY,
]
# Sent back to back, then read back: the echoes must come in the same order.
ORDERED: list[Message] = [f"message {i}" if i % 2 else f"{i}".encode() for i in range(10)]

# Our test server closes the connection with CLOSE_CODE when it receives CLOSE_COMMAND.
CLOSE_COMMAND = "please close"
CLOSE_CODE = 4001
CLOSE_REASON = "bye"


@pytest.fixture(params=["deflate", None], ids=["deflate", "no-compression"])
def compression(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


def expected_extensions(compression: str | None) -> list[str]:
    return DEFLATE if compression else []


def extension_names(header: str | None) -> list[str]:
    """Extension names in a Sec-WebSocket-Extensions header, without their parameters."""
    if not header:
        return []
    return [item.split(";")[0].strip() for item in header.split(",")]


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Waits until predicate() is true: a peer records a close a little after it happens."""
    async with asyncio.timeout(timeout):
        # Polling keeps the peers' recording code free of test plumbing.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def close_of(exc: wsend.ConnectionClosed) -> tuple[int, str] | None:
    """The code and reason of the close frame received, as the exception carries it."""
    return None if exc.rcvd is None else (exc.rcvd.code, exc.rcvd.reason)


# --- Node.js ----------------------------------------------------------------------------------


def node_unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; the Node.js interoperability tests must run under CI")
    pytest.skip(f"{reason}; install Node.js to run the interoperability tests with Node's ws")


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with tests/interop/node/node_modules installed."""
    node = shutil.which("node")
    if node is None:
        node_unavailable("node is not installed")
    assert node is not None
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            node_unavailable("npm is not installed")
        assert npm is not None
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}")
    return node


def to_json_line(message: Message) -> str:
    if isinstance(message, str):
        return json.dumps({"text": message})
    return json.dumps({"binary_b64": base64.b64encode(message).decode()})


def from_json(obj: dict[str, Any]) -> Message:
    if "text" in obj:
        return obj["text"]  # type: ignore[no-any-return]
    return base64.b64decode(obj["binary_b64"])


# --- peer servers -----------------------------------------------------------------------------


@dataclasses.dataclass
class PeerServer:
    """A server built on another library, and what it observed."""

    url: str  # echoes every message
    close_url: str  # echoes one message, then closes with CLOSE_CODE and CLOSE_REASON
    opens: list[list[str]] = dataclasses.field(default_factory=list)  # negotiated extensions
    closes: list[tuple[int, str | None]] = dataclasses.field(default_factory=list)


@contextlib.asynccontextmanager
async def websockets_server(compression: str | None) -> AsyncIterator[PeerServer]:
    async def handler(ws: websockets.ServerConnection) -> None:
        assert ws.response is not None
        peer.opens.append(extension_names(ws.response.headers.get("Sec-WebSocket-Extensions")))
        try:
            if ws.request is not None and ws.request.path == "/close":
                await ws.send(await ws.recv())
                await ws.close(CLOSE_CODE, CLOSE_REASON)
            else:
                async for message in ws:
                    await ws.send(message)
        except websockets.ConnectionClosed:
            pass
        peer.closes.append((ws.close_code or 1006, ws.close_reason))

    async with websockets_serve(
        handler, "127.0.0.1", 0, compression=compression, max_size=MAX_SIZE
    ) as server:
        port = server.sockets[0].getsockname()[1]
        peer = PeerServer(f"ws://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/close")
        yield peer


@contextlib.asynccontextmanager
async def aiohttp_server(compression: str | None) -> AsyncIterator[PeerServer]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compression is not None, max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        peer.opens.append(DEFLATE if ws.compress else [])
        echoes_left = 1 if request.path == "/close" else None
        close: tuple[int, str | None] = (1006, None)
        while echoes_left != 0:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            else:
                if msg.type is WSMsgType.CLOSE:
                    close = (msg.data, msg.extra)
                break
            if echoes_left is not None:
                echoes_left -= 1
        if echoes_left == 0:
            await ws.close(code=CLOSE_CODE, message=CLOSE_REASON.encode())
            close = (ws.close_code or 1006, None)
        peer.closes.append(close)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    app.router.add_get("/close", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        peer = PeerServer(f"ws://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/close")
        yield peer
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def node_server(node: str, compression: str | None) -> AsyncIterator[PeerServer]:
    flag = "--deflate" if compression else "--no-deflate"
    proc = await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / "echo_server.js"), "0", flag, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    reader: asyncio.Task[None] | None = None
    try:
        line = await asyncio.wait_for(stdout.readline(), 10)
        assert line.startswith(b"listening "), line
        port = int(line.split()[1])
        peer = PeerServer(
            f"ws://127.0.0.1:{port}/",
            f"ws://127.0.0.1:{port}/close?close_after=1&code={CLOSE_CODE}&reason={CLOSE_REASON}",
        )

        async def read_events() -> None:
            async for raw in stdout:
                event = json.loads(raw)
                if event["event"] == "open":
                    peer.opens.append(event["extensions"])
                elif event["event"] == "close":
                    peer.closes.append((event["code"], event["reason"]))

        reader = asyncio.create_task(read_events())
        yield peer
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
        if reader is not None:
            await reader


@pytest.fixture(params=["websockets", "aiohttp", "node"])
async def peer_server(
    request: pytest.FixtureRequest, compression: str | None
) -> AsyncIterator[PeerServer]:
    if request.param == "websockets":
        server = websockets_server(compression)
    elif request.param == "aiohttp":
        server = aiohttp_server(compression)
    else:
        server = node_server(request.getfixturevalue("node"), compression)
    async with server as peer:
        yield peer


# --- our client against their servers ---------------------------------------------------------


async def test_client_echo(peer_server: PeerServer, compression: str | None) -> None:
    async with wsend.connect(
        peer_server.url, compression=compression, max_message_size=MAX_SIZE
    ) as ws:
        assert ws.extensions == expected_extensions(compression)
        for message in MESSAGES:
            await ws.send(message)
            echo = await ws.recv()
            assert type(echo) is type(message)
            assert echo == message
        for message in ORDERED:
            await ws.send(message)
        assert [await ws.recv() for _ in ORDERED] == ORDERED
        await ws.close()
        with pytest.raises(wsend.ConnectionClosedOK) as caught:
            await ws.recv()
    assert close_of(caught.value) == (1000, "")
    assert peer_server.opens == [expected_extensions(compression)]
    await eventually(lambda: peer_server.closes)
    assert peer_server.closes[0][0] == 1000


async def test_client_server_closes(peer_server: PeerServer, compression: str | None) -> None:
    async with wsend.connect(peer_server.close_url, compression=compression) as ws:
        await ws.send("last one")
        assert await ws.recv() == "last one"
        with pytest.raises(wsend.ConnectionClosedError) as caught:
            await ws.recv()
    assert close_of(caught.value) == (CLOSE_CODE, CLOSE_REASON)
    await eventually(lambda: peer_server.closes)
    assert peer_server.closes[0][0] == CLOSE_CODE


async def test_client_iteration_ends_on_normal_close(peer_server: PeerServer) -> None:
    async with wsend.connect(peer_server.url) as ws:
        await ws.send("one")
        received = []
        async for message in ws:
            received.append(message)
            await ws.close()
    assert received == ["one"]


async def test_client_ping(peer_server: PeerServer) -> None:
    async with wsend.connect(peer_server.url) as ws:
        for _ in range(3):
            rtt = await ws.ping()
            assert isinstance(rtt, float)
            assert 0 <= rtt < 5
        await ws.send("still open")
        assert await ws.recv() == "still open"


# --- their clients against our server ---------------------------------------------------------


@dataclasses.dataclass
class OurServer:
    url: str
    opens: list[list[str]] = dataclasses.field(default_factory=list)
    closed: list[wsend.ConnectionClosed] = dataclasses.field(default_factory=list)


@pytest.fixture(params=["coroutines", "callbacks"])
async def our_server(
    request: pytest.FixtureRequest, compression: str | None
) -> AsyncIterator[OurServer]:
    """wsend's server: echoes every message; closes with CLOSE_CODE on CLOSE_COMMAND.

    It receives with ``recv()``, or with an ``on_message`` callback answering with
    ``send_nowait()``.
    """

    async def handler(ws: Any) -> None:
        ours.opens.append(list(ws.extensions))
        try:
            while True:
                message = await ws.recv()
                if message == CLOSE_COMMAND:
                    await ws.close(CLOSE_CODE, CLOSE_REASON)
                else:
                    await ws.send(message)
        except wsend.ConnectionClosed as exc:
            ours.closed.append(exc)

    async def callbacks_handler(ws: Any) -> None:
        ours.opens.append(list(ws.extensions))
        closing: list[asyncio.Task[None]] = []

        def on_message(message: Message) -> None:
            if message == CLOSE_COMMAND:
                closing.append(asyncio.ensure_future(ws.close(CLOSE_CODE, CLOSE_REASON)))
            else:
                ws.send_nowait(message)

        ws.on_message = on_message
        await ws.wait_closed()
        await asyncio.gather(*closing)
        ws.on_message = None
        try:
            await ws.recv()  # how the connection ended, as a recv() loop would learn it
        except wsend.ConnectionClosed as exc:
            ours.closed.append(exc)

    async with wsend.serve(
        handler if request.param == "coroutines" else callbacks_handler,
        "127.0.0.1",
        0,
        compression=compression,
        max_message_size=MAX_SIZE,
    ) as server:
        ours = OurServer(f"ws://127.0.0.1:{server.port}/")
        yield ours


@dataclasses.dataclass
class PeerRun:
    """What a client built on another library saw."""

    extensions: list[str]
    received: list[Message]
    close: tuple[int | None, str | None]


async def websockets_client(
    url: str, compression: str | None, messages: list[Message], server_closes: bool
) -> PeerRun:
    received: list[Message] = []
    async with websockets_connect(url, compression=compression, max_size=MAX_SIZE) as ws:
        extensions = extension_names(ws.response.headers.get("Sec-WebSocket-Extensions"))
        latency = await (await ws.ping())
        assert 0 <= latency < 5
        for message in messages:
            await ws.send(message)
            received.append(await ws.recv())
        for message in ORDERED:
            await ws.send(message)
        received += [await ws.recv() for _ in ORDERED]
        if server_closes:
            await ws.send(CLOSE_COMMAND)
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        else:
            await ws.close()
    return PeerRun(extensions, received, (ws.close_code, ws.close_reason))


async def aiohttp_client(
    url: str, compression: str | None, messages: list[Message], server_closes: bool
) -> PeerRun:
    received: list[Message] = []

    async def send(ws: aiohttp.ClientWebSocketResponse, message: Message) -> None:
        if isinstance(message, str):
            await ws.send_str(message)
        else:
            await ws.send_bytes(message)

    async def recv(ws: aiohttp.ClientWebSocketResponse) -> Message:
        msg = await ws.receive()
        assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
        return msg.data  # type: ignore[no-any-return]

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, compress=15 if compression else 0, max_msg_size=MAX_SIZE) as ws,
    ):
        extensions = DEFLATE if ws.compress else []
        for message in messages:
            await send(ws, message)
            received.append(await recv(ws))
        for message in ORDERED:
            await send(ws, message)
        received += [await recv(ws) for _ in ORDERED]
        reason = None
        if server_closes:
            await ws.send_str(CLOSE_COMMAND)
            msg = await ws.receive()
            assert msg.type is WSMsgType.CLOSE, msg
            reason = msg.extra
        else:
            await ws.close()
    return PeerRun(extensions, received, (ws.close_code, reason))


async def node_client(
    node: str, url: str, compression: str | None, messages: list[Message], server_closes: bool
) -> PeerRun:
    to_send = [*messages, *ORDERED]
    if server_closes:
        to_send.append(CLOSE_COMMAND)
    flag = "--deflate" if compression else "--no-deflate"
    proc = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / "client.js"),
        url,
        flag,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    lines = "".join(to_json_line(message) + "\n" for message in to_send)
    stdout, _ = await asyncio.wait_for(proc.communicate(lines.encode()), 30)
    assert proc.returncode == 0, stdout[-2000:]
    events = [json.loads(line) for line in stdout.decode().splitlines()]
    opened, *echoes, closed = events
    assert "open" in opened, opened
    assert "close" in closed, closed
    return PeerRun(
        opened["open"]["extensions"],
        [from_json(echo) for echo in echoes],
        (closed["close"], closed["reason"]),
    )


@pytest.fixture(params=["websockets", "aiohttp", "node"])
def peer_client(request: pytest.FixtureRequest) -> Callable[..., Any]:
    if request.param == "websockets":
        return websockets_client
    if request.param == "aiohttp":
        return aiohttp_client
    node = request.getfixturevalue("node")

    async def run(*args: Any) -> PeerRun:
        return await node_client(node, *args)

    return run


async def test_server_echo(
    our_server: OurServer, peer_client: Callable[..., Any], compression: str | None
) -> None:
    run: PeerRun = await peer_client(our_server.url, compression, MESSAGES, False)
    assert run.extensions == expected_extensions(compression)
    assert [type(message) for message in run.received] == [
        type(message) for message in [*MESSAGES, *ORDERED]
    ]
    assert run.received == [*MESSAGES, *ORDERED]
    assert run.close[0] == 1000
    assert our_server.opens == [expected_extensions(compression)]
    await eventually(lambda: our_server.closed)
    assert isinstance(our_server.closed[0], wsend.ConnectionClosedOK)
    assert close_of(our_server.closed[0]) == (1000, "")


async def test_server_closes(
    our_server: OurServer, peer_client: Callable[..., Any], compression: str | None
) -> None:
    run: PeerRun = await peer_client(our_server.url, compression, ["before closing"], True)
    assert run.received == ["before closing", *ORDERED]
    assert run.close[0] == CLOSE_CODE
    assert run.close[1] in (CLOSE_REASON, None)  # aiohttp's client does not keep the reason
    await eventually(lambda: our_server.closed)
    closed = our_server.closed[0]
    assert closed.sent is not None
    assert (closed.sent.code, closed.sent.reason) == (CLOSE_CODE, CLOSE_REASON)
    # websockets and ws answer with the code they received, aiohttp with 1000.
    assert closed.rcvd is not None
    assert closed.rcvd.code in (CLOSE_CODE, 1000)
