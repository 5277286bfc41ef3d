"""Instructions and system calls per connection of one broadcast, free of timing noise.

``python -m bench.broadcast_cost [--connections 1000] [--rounds 20] [--lib wsend,floor,hub]``

Runs a server process under ``valgrind --tool=callgrind`` twice, once broadcasting ``rounds``
times to ``connections`` clients and once not at all; the difference of their instruction
counts, divided by rounds times connections, is what one broadcast costs per connection: the
Python and library layers *and* the kernel's entry (valgrind counts user space only, so the
system call itself shows as its libc wrapper). Then ``strace -c`` counts the system calls of
the same broadcasts. Libraries:

- ``wsend``: :func:`wsend.broadcast` over the connections;
- ``floor``: ``os.write`` of a prebuilt frame to each socket (the scenario 4 floor row);
- ``hub``: a hub publication to a channel every connection subscribed to (the clients speak
  the hub's protocol), delivered by the node.

The clients (picows, one process, not traced) only hold the connections open. Numbers are
deterministic to about 0.1 %: this is the development signal for the broadcast and fan-out
paths on a noisy machine; ``bench/run`` and ``bench.hub_fanout`` give the times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from .common import HOST, new_loop, raise_nofile

MESSAGE = b"x" * 64


async def crowd(port: int, n: int, path: str, hub: bool) -> None:
    """The client side: ``n`` picows connections (hub: connected and subscribed), held open."""
    from picows import WSListener, WSMsgType, ws_connect

    class Member(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            if hub:
                transport.send(WSMsgType.TEXT, b'{"id":1,"method":"connect"}')
                transport.send(WSMsgType.TEXT, b'{"id":2,"method":"subscribe","channel":"c"}')

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()

    semaphore = asyncio.Semaphore(50)
    kept = []

    async def one() -> None:
        async with semaphore:
            transport, _ = await ws_connect(Member, f"ws://{HOST}:{port}{path}")
            kept.append(transport)

    await asyncio.gather(*(one() for _ in range(n)))
    sys.stdout.write("open\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF


async def serve(lib: str, n: int, rounds: int) -> None:
    import wsend

    conns: list[Any] = []
    hub: Any = None
    if lib == "hub":
        from wsend.hub.node import Hub
        from wsend.hub.options import HubOptions, NamespaceOptions

        hub = Hub(HubOptions(allow_anonymous=True, namespaces={"": NamespaceOptions()}))
        server = await wsend.serve(hub.handler, HOST, 0, **hub.serve_kwargs())
        await hub.start()
    else:

        async def handler(ws: Any) -> None:
            conns.append(ws)
            await ws.wait_closed()

        server = await wsend.serve(handler, HOST, 0, compression=None, ping_interval=None)
    cmd = [sys.executable, "-m", "bench.broadcast_cost", "--clients", str(server.port)]
    cmd += ["--connections", str(n), "--lib", lib]
    pipe = asyncio.subprocess.PIPE
    clients = await asyncio.create_subprocess_exec(*cmd, stdin=pipe, stdout=pipe)
    assert clients.stdout is not None
    assert clients.stdin is not None
    await clients.stdout.readline()
    for _ in range(2400):  # two minutes at most
        if (len(hub._channels.get("c", ())) if hub else len(conns)) >= n:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    frame = b"\x82" + bytes([len(MESSAGE)]) + MESSAGE
    fds = [ws.transport.get_extra_info("socket").fileno() for ws in conns]
    if lib == "ab":
        await alternate(conns, fds, frame, rounds)
        rounds = 0
    for _ in range(rounds):
        if lib == "wsend":
            wsend.broadcast(conns, MESSAGE)
        elif lib == "floor":
            for fd in fds:
                os.write(fd, frame)
        else:
            await hub.publish("c", "x" * 40)
        await asyncio.sleep(0.01)
    clients.stdin.close()
    await clients.wait()
    os._exit(0)


async def alternate(conns: list[Any], fds: list[int], frame: bytes, rounds: int) -> None:
    """Time the floor and wsend.broadcast in turns on the same connections (CPU time of this
    thread, system calls included); print the medians per connection as JSON."""
    import statistics
    import time

    import wsend

    def floor() -> None:
        for fd in fds:
            os.write(fd, frame)

    def bare() -> None:
        wsend.broadcast(conns, MESSAGE)

    times: dict[str, list[float]] = {"floor": [], "wsend": []}
    for _ in range(rounds):
        for name, fn in (("floor", floor), ("wsend", bare)):
            t0 = time.thread_time_ns()
            fn()
            times[name].append((time.thread_time_ns() - t0) / len(conns) / 1000)
            await asyncio.sleep(0.2)  # the clients read everything meanwhile
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({**medians, "ratio": medians["wsend"] / medians["floor"]}), flush=True)


def callgrind(lib: str, n: int, rounds: int, loop: str) -> int:
    """Total instructions of a server process that broadcasts ``rounds`` times."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, "-m", "bench.broadcast_cost", "--serve", lib]
        cmd += ["--connections", str(n), "--rounds", str(rounds), "--loop", loop]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match is None:
            raise RuntimeError(proc.stderr[-2000:])
        return int(match[1])


def syscalls(lib: str, n: int, rounds: int, loop: str) -> dict[str, int]:
    """System calls of the server (strace -c), by name."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        cmd = ["strace", "-c", "-o", out.name, sys.executable, "-m", "bench.broadcast_cost"]
        cmd += ["--serve", lib, "--connections", str(n), "--rounds", str(rounds), "--loop", loop]
        subprocess.run(cmd, capture_output=True, check=True)
        counts = {}
        for line in out.read().splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[-1].isidentifier() and fields[3].isdigit():
                counts[fields[-1]] = int(fields[3])
        return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--lib", default="floor,wsend,hub")
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument(
        "--time",
        action="store_true",
        help="instead: time the floor and wsend.broadcast in turns, in one server process",
    )
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    raise_nofile()
    if args.clients is not None:
        path = "/ws" if args.lib == "hub" else "/"
        new_loop(args.loop).run_until_complete(
            crowd(args.clients, args.connections, path, args.lib == "hub")
        )
        return
    if args.time:
        serve_ab = serve("ab", args.connections, args.rounds)
        new_loop(args.loop).run_until_complete(serve_ab)
        return
    if args.serve is not None:
        new_loop(args.loop).run_until_complete(serve(args.serve, args.connections, args.rounds))
        return
    for tool in ("valgrind", "strace"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    n, rounds = args.connections, args.rounds
    print(f"{n} connections, {rounds} broadcasts, {args.loop}; per connection per broadcast:")
    for lib in args.lib.split(","):
        base = callgrind(lib, n, 0, args.loop)
        full = callgrind(lib, n, rounds, args.loop)
        calls = syscalls(lib, n, rounds, args.loop)
        idle = syscalls(lib, n, 0, args.loop)
        writes = sum(calls.get(k, 0) - idle.get(k, 0) for k in ("write", "sendto", "writev"))
        print(
            f"  {lib:6} {(full - base) / (rounds * n):8.0f} instructions, "
            f"{writes / (rounds * n):.2f} write calls",
            flush=True,
        )


if __name__ == "__main__":
    main()
