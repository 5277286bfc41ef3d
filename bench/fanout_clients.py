"""Fan-out client worker: ``python -m bench.fanout_clients --system SYSTEM``.

One process holds every subscriber connection of one system and its publisher, all on picows
(callbacks, no task per connection), speaking each system's protocol on the wire: the hub's
JSON protocol, Engine.IO 4 / Socket.IO 5 for python-socketio, plain messages for the bare
broadcast. Every system gets the same client code, so the client costs the same for all.

Each publication's data is 100 characters: ``#`` and an 8-digit sequence number, then
padding. A subscriber finds the numbers in what it receives (a hub message may batch several
publications) and looks up when the publisher sent each one: the latency is send to receipt,
on one clock (this process's).

Prints ``{"ready": true}``, then answers JSON commands read from stdin, one per line:

- ``{"cmd": "open", "ports": [...], "n": N}``: open ``N`` more subscribers, spread evenly over
  the servers' ports, and (once) the publisher, on the first port;
- ``{"cmd": "run", "messages": M, "window": W, "timeout": T}``: publish ``M`` publications,
  keeping at most ``W`` not yet received by every subscriber; answers ``deliveries``,
  ``elapsed`` (first send to last receipt), ``p50``/``p99`` latency (s), ``client_cpu_ns``;
- ``{"cmd": "close_all"}``, ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

from .common import HOST, cpu_ns, emit, new_loop, pin, raise_nofile

SYSTEMS = ("hub", "broadcast", "socketio")
PAYLOAD_SIZE = 100
_perf_counter = time.perf_counter


def payload(seq: int) -> str:
    head = f"#{seq:08d}|"
    return head + "x" * (PAYLOAD_SIZE - len(head))


class Tally:
    """Publications in flight: when each was sent, how many subscribers still wait for it."""

    def __init__(self) -> None:
        self.subscribers = 0
        self.sent_at: list[float] = []
        self.waiting: list[int] = []
        self.latencies: list[float] = []
        self.next = 0
        self.total = 0
        self.completed = 0
        self.messages = 0
        self.publish: Any = None  # the publisher's send(seq)
        self.done: asyncio.Future[None] | None = None
        self.last = 0.0

    def start(self, messages: int, window: int, publish: Any) -> None:
        base = len(self.sent_at)
        self.sent_at += [0.0] * messages
        self.waiting += [self.subscribers] * messages
        self.latencies = []
        self.next = base
        self.total = base + messages
        self.completed = 0
        self.messages = messages
        self.publish = publish
        self.done = asyncio.get_running_loop().create_future()
        for _ in range(min(window, messages)):
            self.send_next()

    def send_next(self) -> None:
        seq = self.next
        self.next += 1
        self.sent_at[seq] = _perf_counter()
        self.publish(seq)

    def received(self, data: bytes) -> None:
        """A subscriber received ``data``: count every publication in it."""
        now = _perf_counter()
        i = data.find(b"#")
        while i >= 0:
            seq = int(data[i + 1 : i + 9])
            self.latencies.append(now - self.sent_at[seq])
            left = self.waiting[seq] - 1
            self.waiting[seq] = left
            if not left:
                self.last = now
                self.completed += 1
                if self.next < self.total:
                    self.send_next()
                elif self.completed == self.messages and self.done is not None:
                    self.done.set_result(None)
            i = data.find(b"#", i + 9)


TALLY = Tally()


def listener(system: str, publisher: bool) -> Any:
    """A picows listener class for one connection of ``system``."""
    from picows import WSListener, WSMsgType

    text = WSMsgType.TEXT
    received = TALLY.received

    class Member(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.transport: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport
            if system == "hub":
                transport.send(text, b'{"id":1,"method":"connect"}')
                if not publisher:
                    transport.send(text, b'{"id":2,"method":"subscribe","channel":"bench"}')
            elif system == "broadcast" and not self.ready.done():
                self.ready.set_result(None)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
                return
            data = frame.get_payload_as_bytes()
            if system == "socketio" and data[:2] != b"42":
                self.engineio(transport, data)
                return
            # The hub's replies to connect and subscribe (id 2), perhaps in one batch.
            if system == "hub" and not self.ready.done() and (publisher or b'"id":2' in data):
                self.ready.set_result(None)
            if not publisher:
                received(data)

        def engineio(self, transport: Any, data: bytes) -> None:
            if data[:1] == b"0":  # Engine.IO open: connect to the Socket.IO namespace "/"
                transport.send(text, b"40")
            elif data[:2] == b"40":  # connected: join the room (an acknowledged event)
                if publisher:
                    self.ready.set_result(None)
                else:
                    transport.send(text, b'421["join","bench"]')
            elif data[:2] == b"43" and not self.ready.done():  # the join's acknowledgement
                self.ready.set_result(None)
            elif data[:1] == b"2":  # Engine.IO ping
                transport.send(text, b"3")

    return Member


def path(system: str, publisher: bool) -> str:
    if system == "hub":
        return "/ws"
    if system == "socketio":
        return "/socket.io/?EIO=4&transport=websocket"
    return "/pub" if publisher else "/sub"


def publish_function(system: str, transport: Any) -> Any:
    from picows import WSMsgType

    text = WSMsgType.TEXT
    send = transport.send
    if system == "hub":
        head = b'{"id":%d,"method":"publish","channel":"bench","data":"%s"}'
        return lambda seq: send(text, head % (seq + 10, payload(seq).encode()))
    if system == "socketio":
        return lambda seq: send(text, b'42["pub","%s"]' % payload(seq).encode())
    return lambda seq: send(text, payload(seq).encode())


class Crowd:
    def __init__(self, system: str) -> None:
        self.system = system
        self.transports: list[Any] = []
        self.publisher: Any = None
        self.publish: Any = None

    async def connect(self, port: int, publisher: bool) -> Any:
        from picows import ws_connect

        uri = f"ws://{HOST}:{port}{path(self.system, publisher)}"
        transport, member = await ws_connect(
            listener(self.system, publisher), uri, read_buffer_init_size=1024
        )
        await asyncio.wait_for(member.ready, 60)
        return transport

    async def open(self, cmd: dict[str, Any]) -> dict[str, Any]:
        ports, n = cmd["ports"], cmd["n"]
        t0 = time.perf_counter()
        if self.publisher is None:
            self.publisher = await self.connect(ports[0], True)
            self.publish = publish_function(self.system, self.publisher)
        semaphore = asyncio.Semaphore(100)
        start = len(self.transports)

        async def one(i: int) -> None:
            async with semaphore:
                self.transports.append(await self.connect(ports[i % len(ports)], False))

        await asyncio.gather(*(one(start + i) for i in range(n)))
        TALLY.subscribers = len(self.transports)
        return {"open": len(self.transports), "seconds": time.perf_counter() - t0}

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        messages, window = cmd["messages"], cmd["window"]
        me = os.getpid()
        c0 = cpu_ns(me)
        TALLY.start(messages, window, self.publish)
        t0 = TALLY.sent_at[TALLY.total - messages]
        assert TALLY.done is not None
        with contextlib.suppress(TimeoutError):  # reported: fewer deliveries than expected
            await asyncio.wait_for(TALLY.done, cmd.get("timeout", 120))
        c1 = cpu_ns(me)
        latencies = sorted(TALLY.latencies)
        count = len(latencies)
        return {
            "deliveries": count,
            "expected": messages * TALLY.subscribers,
            "elapsed": TALLY.last - t0,
            "p50": statistics.median(latencies) if latencies else None,
            "p99": latencies[max(0, int(count * 0.99) - 1)] if latencies else None,
            "client_cpu_ns": c1 - c0,
        }

    async def close_all(self, cmd: dict[str, Any]) -> dict[str, Any]:
        for transport in [*self.transports, *([self.publisher] if self.publisher else [])]:
            transport.disconnect()
        closed = len(self.transports)
        self.transports.clear()
        self.publisher = self.publish = None
        TALLY.__init__()  # type: ignore[misc]
        await asyncio.sleep(0.1)
        return {"closed": closed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", required=True, choices=SYSTEMS)
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--core", type=int, default=None)
    args = parser.parse_args(argv)

    pin(args.core)
    raise_nofile()
    loop = new_loop(args.loop)
    crowd = Crowd(args.system)
    commands = {"open": crowd.open, "run": crowd.run, "close_all": crowd.close_all}
    emit({"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        try:
            result = loop.run_until_complete(commands[cmd["cmd"]](cmd))
        except Exception as exc:  # report, keep serving the next command
            result = {"error": f"{type(exc).__name__}: {exc}"}
        emit(result)
    os._exit(0)


if __name__ == "__main__":
    main()
