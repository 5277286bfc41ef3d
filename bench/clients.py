"""Client worker: ``python -m bench.clients --lib LIB --loop LOOP``.

Prints ``{"ready": true}``, then runs JSON commands read from stdin, one per line, answering
each with one JSON line:

- ``{"cmd": "echo", "uri", "size", "inflight", "warmup", "duration", "server_pid"}``: open a
  connection, keep ``inflight`` binary messages of ``size`` random bytes in flight (sending
  the next one as each echo arrives) for ``warmup`` seconds, then measure for ``duration``
  seconds. Answers ``rate`` (echoed messages per second), ``server_cpu_ns`` (CPU time of
  the server process during the measured window, read from /proc) and ``client_cpu_ns``
  (the same for this client process).
- ``{"cmd": "handshakes", "uri", "concurrency", "warmup", "duration"}`` (picows only): open a
  connection, complete the opening and closing handshakes, repeat; answers ``rate``.
- ``{"cmd": "open", "uri", "n", "compression"}`` (picows only): open ``n`` more idle
  connections and keep them (offering permessage-deflate if ``compression``).
- ``{"cmd": "wait_messages", "count", "timeout"}``: wait until every kept connection has
  received ``count`` messages in total; answers the ``time.perf_counter()`` when the last one
  arrived.
- ``{"cmd": "close_all"}``: drop the kept connections.

Only the picows, raw and wsend-callbacks clients support ``inflight > 1``: they are
callback-driven, so they can keep a pipeline full without adding a task per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .common import Framer, client_ssl_context, cpu_ns, emit, new_loop, pin, raise_nofile


class Meter:
    """Counts echoes; a timer task marks the measured window and then stops the client."""

    def __init__(self) -> None:
        self.n = 0
        self.stop = False


async def measure(meter: Meter, warmup: float, duration: float, server_pid: int) -> dict[str, Any]:
    await asyncio.sleep(warmup)
    me = os.getpid()
    n0, c0, m0, t0 = meter.n, cpu_ns(server_pid), cpu_ns(me), time.perf_counter()
    await asyncio.sleep(duration)
    n1, c1, m1, t1 = meter.n, cpu_ns(server_pid), cpu_ns(me), time.perf_counter()
    meter.stop = True
    count = n1 - n0
    return {
        "rate": count / (t1 - t0),
        "count": count,
        "elapsed": t1 - t0,
        "server_cpu_ns": (c1 - c0) if server_pid else None,
        "client_cpu_ns": m1 - m0,
    }


def check(echo: bytes | bytearray | memoryview, payload: bytes) -> None:
    if bytes(echo) != payload:
        raise AssertionError(f"echo mismatch: {len(echo)} bytes back for {len(payload)}")


def ssl_for(uri: str) -> Any:
    return client_ssl_context() if uri.startswith(("wss:", "tls:")) else None


async def pingpong(
    send: Callable[[bytes], Awaitable[Any]],
    recv: Callable[[], Awaitable[Any]],
    payload: bytes,
    cmd: dict[str, Any],
) -> dict[str, Any]:
    """One message in flight over a coroutine API: send, await the echo, repeat."""
    await send(payload)
    check(await recv(), payload)
    meter = Meter()
    timer = asyncio.ensure_future(
        measure(meter, cmd["warmup"], cmd["duration"], cmd.get("server_pid", 0))
    )
    while not meter.stop:
        await send(payload)
        await recv()
        meter.n += 1
    return await timer


# ---------------------------------------------------------------- coroutine clients


def connect_wsend(uri: str, write_limit: int | None = None) -> Any:
    import wsend

    kwargs: dict[str, Any] = {"ssl": ssl_for(uri)} if uri.startswith("wss:") else {}
    if write_limit is not None:
        kwargs["write_limit"] = write_limit
    return wsend.connect(uri, compression=None, ping_interval=None, max_message_size=None, **kwargs)


async def echo_wsend(cmd: dict[str, Any], payload: bytes) -> dict[str, Any]:
    async with connect_wsend(cmd["uri"]) as ws:
        return await pingpong(ws.send, ws.recv, payload, cmd)


async def echo_websockets(cmd: dict[str, Any], payload: bytes) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    uri = cmd["uri"]
    kwargs: dict[str, Any] = {"ssl": ssl_for(uri)} if uri.startswith("wss:") else {}
    async with connect(
        uri, compression=None, max_size=None, max_queue=None, ping_interval=None, **kwargs
    ) as ws:
        return await pingpong(ws.send, ws.recv, payload, cmd)


async def echo_aiohttp(cmd: dict[str, Any], payload: bytes) -> dict[str, Any]:
    import aiohttp

    uri = cmd["uri"]
    ssl = ssl_for(uri) or True
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(uri, compress=0, heartbeat=None, max_msg_size=0, ssl=ssl) as ws,
    ):

        async def recv() -> bytes:
            return (await ws.receive()).data  # type: ignore[no-any-return]

        return await pingpong(ws.send_bytes, recv, payload, cmd)


# ---------------------------------------------------------------- callback clients


class Pipeline:
    """Keeps ``inflight`` messages in flight from callbacks; shared by picows and raw."""

    def __init__(self, payload: bytes, inflight: int) -> None:
        self.payload = payload
        self.inflight = inflight
        self.meter = Meter()
        self.outstanding = 0
        self.checked = False
        self.drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        self.outstanding = self.inflight
        for _ in range(self.inflight):
            self.send(self.payload)

    def send(self, payload: bytes) -> None:
        raise NotImplementedError

    def echoed(self, echo: Any) -> None:
        if not self.checked:
            check(echo, self.payload)
            self.checked = True
        self.meter.n += 1
        if self.meter.stop:
            self.outstanding -= 1
            if self.outstanding == 0 and not self.drained.done():
                self.drained.set_result(None)
        else:
            self.send(self.payload)

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.start()
        result = await measure(self.meter, cmd["warmup"], cmd["duration"], cmd.get("server_pid", 0))
        await asyncio.wait_for(self.drained, 30)
        return result


async def echo_picows(cmd: dict[str, Any], payload: bytes) -> dict[str, Any]:
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    data_types = (WSMsgType.BINARY, WSMsgType.CONTINUATION)

    class Client(WSListener, Pipeline):  # type: ignore[misc]
        def __init__(self) -> None:
            Pipeline.__init__(self, payload, cmd["inflight"])
            self.parts: list[bytes] = []

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def send(self, payload: bytes) -> None:
            self.transport.send(WSMsgType.BINARY, payload)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            msg_type = frame.msg_type
            if msg_type in data_types:
                if not frame.fin:  # a fragmented echo: reassemble (only to check it)
                    self.parts.append(frame.get_payload_as_bytes())
                elif self.parts:
                    self.parts.append(frame.get_payload_as_bytes())
                    self.echoed(b"".join(self.parts))
                    self.parts.clear()
                else:
                    self.echoed(frame.get_payload_as_memoryview())
            elif msg_type == WSMsgType.CLOSE:
                transport.disconnect()

    uri = cmd["uri"]
    transport, client = await ws_connect(Client, uri, ssl_context=ssl_for(uri))
    try:
        return await client.run(cmd)
    finally:
        transport.send_close(WSCloseCode.OK)
        await asyncio.wait_for(transport.wait_disconnected(), 10)


async def echo_wsend_callbacks(cmd: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """wsend's callback API: ``on_message`` receives, ``send_nowait()`` answers.

    ``cmd["write_limit"]``, when given, is the connection's ``write_limit``: a large one lets
    the client buffer what it sends, as picows does, instead of pausing its reading while its
    writes are blocked (with 64 MiB in flight, a server that also waits for its writes to
    drain would otherwise stall with it).
    """
    async with connect_wsend(cmd["uri"], cmd.get("write_limit")) as ws:

        class Client(Pipeline):
            def send(self, payload: bytes) -> None:
                ws.send_nowait(payload)

        client = Client(payload, cmd["inflight"])
        ws.on_message = client.echoed
        return await client.run(cmd)


class RawClient(asyncio.Protocol, Pipeline):
    """Length-prefixed messages over plain asyncio: the ceiling's client (counts, no checks)."""

    def __init__(self, payload: bytes, inflight: int) -> None:
        Pipeline.__init__(self, payload, inflight)
        self.checked = True
        self.framed = len(payload).to_bytes(4, "big") + payload
        self.framer = Framer()
        self.paused = False
        self.backlog = 0
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, payload: bytes) -> None:
        if self.paused:
            self.backlog += 1  # hold messages while the transport's buffer is full
        else:
            self.transport.write(self.framed)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        while self.backlog and not self.paused:
            self.backlog -= 1
            self.transport.write(self.framed)

    def data_received(self, data: bytes) -> None:
        for _ in range(self.framer.feed(data)):
            self.echoed(None)


async def echo_raw(cmd: dict[str, Any], payload: bytes) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host, port = cmd["uri"].split("://")[1].rsplit(":", 1)
    transport, client = await loop.create_connection(
        lambda: RawClient(payload, cmd["inflight"]), host, int(port), ssl=ssl_for(cmd["uri"])
    )
    try:
        return await client.run(cmd)
    finally:
        transport.close()
        await asyncio.wait_for(client.lost, 10)


ECHO: dict[str, Callable[[dict[str, Any], bytes], Awaitable[dict[str, Any]]]] = {
    "wsend": echo_wsend,
    "wsend-callbacks": echo_wsend_callbacks,
    "picows": echo_picows,
    "aiohttp": echo_aiohttp,
    "websockets": echo_websockets,
    "raw": echo_raw,
}
PIPELINING = {"picows", "raw", "wsend-callbacks"}


# ---------------------------------------------------------------- many connections (picows)


class Crowd:
    """Idle connections kept open between commands; counts the messages they receive."""

    def __init__(self) -> None:
        self.transports: list[Any] = []
        self.received = 0
        self.last_arrival = 0.0
        self.target = 0
        self.reached: asyncio.Future[None] | None = None

    def arrived(self) -> None:
        self.received += 1
        if self.received >= self.target and self.reached and not self.reached.done():
            self.last_arrival = time.perf_counter()
            self.reached.set_result(None)


CROWD = Crowd()


def crowd_listener() -> Any:
    from picows import WSListener, WSMsgType

    class Member(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            elif frame.fin:
                CROWD.arrived()

    return Member


async def open_connections(cmd: dict[str, Any]) -> dict[str, Any]:
    from picows import ws_connect

    uri, n = cmd["uri"], cmd["n"]
    headers = None
    if cmd.get("compression"):
        # picows has no permessage-deflate; offering it is enough to make servers allocate
        # their compression state (the connections stay idle, so nothing is compressed).
        headers = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    member = crowd_listener()
    semaphore = asyncio.Semaphore(cmd.get("concurrency", 100))
    t0 = time.perf_counter()

    async def one() -> None:
        async with semaphore:
            transport, _ = await ws_connect(
                member,
                uri,
                ssl_context=ssl_for(uri),
                extra_headers=headers,
                read_buffer_init_size=1024,
            )
            CROWD.transports.append(transport)

    await asyncio.gather(*(one() for _ in range(n)))
    return {"open": len(CROWD.transports), "seconds": time.perf_counter() - t0}


async def wait_messages(cmd: dict[str, Any]) -> dict[str, Any]:
    CROWD.target = cmd["count"]
    CROWD.reached = asyncio.get_running_loop().create_future()
    if CROWD.received >= CROWD.target:
        CROWD.last_arrival = time.perf_counter()
        CROWD.reached.set_result(None)
    await asyncio.wait_for(CROWD.reached, cmd.get("timeout", 60))
    return {"t_all": CROWD.last_arrival, "received": CROWD.received}


async def close_all(cmd: dict[str, Any]) -> dict[str, Any]:
    for transport in CROWD.transports:
        transport.disconnect()
    closed = len(CROWD.transports)
    CROWD.transports.clear()
    CROWD.received = 0
    await asyncio.sleep(0.1)
    return {"closed": closed}


async def handshakes(cmd: dict[str, Any]) -> dict[str, Any]:
    from picows import WSCloseCode, ws_connect

    uri = cmd["uri"]
    member = crowd_listener()
    meter = Meter()

    async def worker() -> None:
        while not meter.stop:
            transport, _ = await ws_connect(member, uri, ssl_context=ssl_for(uri))
            transport.send_close(WSCloseCode.OK)
            await transport.wait_disconnected()
            meter.n += 1

    workers = [asyncio.ensure_future(worker()) for _ in range(cmd.get("concurrency", 8))]
    result = await measure(meter, cmd["warmup"], cmd["duration"], cmd.get("server_pid", 0))
    await asyncio.gather(*workers)
    return result


# ---------------------------------------------------------------- command loop


async def run_command(lib: str, cmd: dict[str, Any], payloads: dict[int, bytes]) -> Any:
    name = cmd["cmd"]
    if name == "echo":
        if cmd["inflight"] > 1 and lib not in PIPELINING:
            raise ValueError(f"the {lib} client does not pipeline")
        size = cmd["size"]
        if size not in payloads:
            payloads[size] = os.urandom(size)
        return await ECHO[lib](cmd, payloads[size])
    commands = {
        "handshakes": handshakes,
        "open": open_connections,
        "wait_messages": wait_messages,
        "close_all": close_all,
    }
    return await commands[name](cmd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", required=True, choices=sorted(ECHO))
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--core", type=int, default=None)
    args = parser.parse_args(argv)

    pin(args.core)
    raise_nofile()
    loop = new_loop(args.loop)
    payloads: dict[int, bytes] = {}
    emit({"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        try:
            result = loop.run_until_complete(run_command(args.lib, cmd, payloads))
        except Exception as exc:  # report, keep serving the next command
            result = {"error": f"{type(exc).__name__}: {exc}"}
        emit(result)
    os._exit(0)


if __name__ == "__main__":
    main()
