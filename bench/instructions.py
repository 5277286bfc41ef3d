"""Instructions per message with callgrind: a measure that the machine's load doesn't move.

    python -m bench.instructions                              # wsend server, 64 B, 64 in flight
    python -m bench.instructions --lib picows --size 8k --loop uvloop
    python -m bench.instructions --side client --lib wsend-callbacks --inflight 1

The measured process (a server under pipelined or one-in-flight echo, or a client doing
round trips one at a time) runs under ``valgrind --tool=callgrind``; its peer runs natively
(picows, the reference). Each measurement runs twice, with ``--messages`` N1 and N2 echoes,
and reports ``(Ir(N2) - Ir(N1)) / (N2 - N1)``: the instructions executed in user space per
echoed message, start-up and teardown cancelled out. System calls and the kernel's work are
not counted (``strace -c`` counts those); what this shows is the library's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import emit, new_loop, uri_for
from .harness import PIPELINE_DEPTH, parse_sizes

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- measured processes


async def round_trips(lib: str, uri: str, size: int, count: int, inflight: int) -> None:
    """Echo ``count`` messages with ``inflight`` in flight through a wsend client."""
    import wsend

    payload = os.urandom(size)
    async with wsend.connect(
        uri, compression=None, ping_interval=None, max_message_size=None
    ) as ws:
        if lib == "wsend":
            for _ in range(count):
                await ws.send(payload)
                await ws.recv()
            return
        done = asyncio.get_running_loop().create_future()
        state = {"sent": 0, "received": 0}

        def echoed(message: Any) -> None:
            state["received"] += 1
            if state["sent"] < count:
                state["sent"] += 1
                ws.send_nowait(payload)
            elif state["received"] == count and not done.done():
                done.set_result(None)

        ws.on_message = echoed
        for _ in range(min(inflight, count)):
            state["sent"] += 1
            ws.send_nowait(payload)
        await done


# ---------------------------------------------------------------- native peers


async def picows_client(uri: str, size: int, count: int, inflight: int) -> None:
    """Keep ``inflight`` messages in flight until ``count`` were echoed, then close."""
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    payload = os.urandom(size)
    done = asyncio.get_running_loop().create_future()

    class Client(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.sent = 0
            self.received = 0
            self.transport: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport
            for _ in range(min(inflight, count)):
                self.send()

        def send(self) -> None:
            self.sent += 1
            self.transport.send(WSMsgType.BINARY, payload)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            elif frame.fin:
                self.received += 1
                if self.sent < count:
                    self.send()
                elif self.received == count and not done.done():
                    done.set_result(None)

    transport, _ = await ws_connect(Client, uri)
    await asyncio.wait_for(done, 600)
    transport.send_close(WSCloseCode.OK)
    await asyncio.wait_for(transport.wait_disconnected(), 60)


# ---------------------------------------------------------------- driver


def callgrind(args: list[str], out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "-q",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.instructions",
        *args,
    ]
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def total_ir(out: Path) -> int:
    text = out.read_text()
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if match is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(match.group(1))


def measure_server(opts: argparse.Namespace, count: int, out: Path) -> int:
    proc = callgrind(["_serve", "--lib", opts.lib, "--loop", opts.loop], out)
    assert proc.stdout is not None
    port = json.loads(proc.stdout.readline())["port"]
    loop = new_loop(opts.loop)
    uri = uri_for(opts.lib, port, False)
    loop.run_until_complete(picows_client(uri, opts.size, count, opts.inflight))
    loop.close()
    proc.wait(600)
    return total_ir(out)


def measure_client(opts: argparse.Namespace, count: int, out: Path) -> int:
    from .servers import SERVERS

    loop = new_loop(opts.loop)
    start, _ = SERVERS["picows"]
    server, port = loop.run_until_complete(start(set(), None, False))
    uri = uri_for("picows", port, False)
    args = ["_client", "--lib", opts.lib, "--loop", opts.loop, "--uri", uri]
    args += ["--size", str(opts.size), "--count", str(count), "--inflight", str(opts.inflight)]
    proc = callgrind(args, out)

    loop.run_until_complete(loop.run_in_executor(None, proc.wait))
    server.close()
    loop.close()
    return total_ir(out)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_serve", "_client"):
        return inner(argv)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lib", default="wsend")
    parser.add_argument("--side", default="server", choices=["server", "client"])
    parser.add_argument("--size", default="64")
    parser.add_argument("--inflight", type=int, default=PIPELINE_DEPTH)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--messages", default="2000,6000", help="N1,N2 (default: 2000,6000)")
    parser.add_argument(
        "--top", type=int, default=0, help="also list the C functions that differ most"
    )
    opts = parser.parse_args(argv)
    opts.size = parse_sizes(opts.size)[0]
    n1, n2 = (int(n) for n in opts.messages.split(","))
    measure = measure_server if opts.side == "server" else measure_client
    with tempfile.TemporaryDirectory() as tmp:
        out1, out2 = Path(tmp) / "n1.out", Path(tmp) / "n2.out"
        ir1 = measure(opts, n1, out1)
        ir2 = measure(opts, n2, out2)
        if os.environ.get("BENCH_KEEP"):
            import shutil

            shutil.copy(out2, os.environ["BENCH_KEEP"])
        per = (ir2 - ir1) / (n2 - n1)
        print(
            f"{opts.lib} {opts.side}, {opts.loop}, {opts.size} B, {opts.inflight} in flight: "
            f"{per:,.0f} instructions per message"
        )
        if opts.top:
            before, after = self_costs(out1), self_costs(out2)
            rows = sorted(((after.get(f, 0) - before.get(f, 0)) / (n2 - n1), f) for f in after)
            print("\n| instructions per message (self) | C function |\n|---|---|")
            for cost, name in reversed(rows[-opts.top :]):
                print(f"| {cost:,.0f} | `{name}` |")
    return None


def self_costs(out: Path) -> dict[str, int]:
    """Self instructions per C function, from callgrind_annotate."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if match and "PROGRAM TOTALS" not in line:
            name = re.sub(r"^.*/", "", match.group(2).split(" [")[0])
            costs[name] = costs.get(name, 0) + int(match.group(1).replace(",", ""))
    return costs


def inner(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--lib", required=True)
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--uri")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=1)
    opts = parser.parse_args(argv)
    if opts.mode == "_serve":
        from . import servers

        loop = new_loop(opts.loop)
        conns: set[Any] = set()
        start, _ = servers.SERVERS[opts.lib]
        _server, port = loop.run_until_complete(start(conns, None, False))

        async def wait_one() -> None:
            # Each library's server adds and drops its connections in the set: poll it.
            while not conns:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            while conns:  # noqa: ASYNC110
                await asyncio.sleep(0.005)

        emit({"port": port})
        loop.run_until_complete(wait_one())
    else:
        loop = new_loop(opts.loop)
        if opts.lib == "picows":
            coro = picows_client(opts.uri, opts.size, opts.count, opts.inflight)
        else:
            coro = round_trips(opts.lib, opts.uri, opts.size, opts.count, opts.inflight)
        loop.run_until_complete(coro)
    os._exit(0)


if __name__ == "__main__":
    main()
