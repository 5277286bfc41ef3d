"""Threads, side by side: ``wsend.sync`` against ``websockets.sync``.

    python -m bench.sync                         # 64 B, 8 KiB, 100 KiB; 5 times 0.5 s each
    python -m bench.sync --sizes 64,1m --reps 3 --duration 1 --out bench/results/sync.md

Each library serves in a process of its own pinned to core 0 (its threading server echoing
every message); this process is the client, pinned to core 1, with the same library. Two
workloads, interleaved over the repetitions so that a disturbance hits both libraries:

- **one in flight**: ``send()`` then ``recv()``, repeated: round trips per second;
- **pipelined**: a sender thread keeps 64 messages in flight (a new one as each echo arrives)
  while the main thread receives: messages per second, and the CPU time both processes spent
  per message (client and server, from /proc).

Same settings on both sides: no compression, no keepalive pings, no message size limit. Medians
are reported, with wsend's ratio to websockets (above 1: wsend is faster, or spends less CPU).
A connection that makes no progress for 30 s (both ends blocked writing, neither reading) is
aborted, and its cell shows **stalled**.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .common import CLIENT_CORE, HOST, SERVER_CORE, cpu_ns, pin

LIBS = ("wsend", "websockets")
X = "\N{MULTIPLICATION SIGN}"  # as in "1.25x", the ratio sign
INFLIGHT = 64
# A cell whose connection makes no progress for this long is aborted and shown as stalled.
STALL_AFTER = 30.0


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20}
    text = text.strip().lower()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


# -- servers (in their own process) ---------------------------------------------------------------


def serve(lib: str) -> None:
    """Run the echo server of ``lib`` on a free port; print the port, serve until killed."""
    pin(SERVER_CORE)
    if lib == "wsend":
        import wsend.sync

        def handler(ws: Any) -> None:
            for message in ws:
                ws.send(message)

        server = wsend.sync.serve(
            handler,
            HOST,
            0,
            compression=None,
            ping_interval=None,
            max_message_size=None,
            backlog=128,
        )
        print(server.port, flush=True)
        server.serve_forever()
    else:
        from websockets.sync.server import serve as ws_serve

        def ws_handler(ws: Any) -> None:
            for message in ws:
                ws.send(message)

        with ws_serve(
            ws_handler, HOST, 0, compression=None, ping_interval=None, max_size=None
        ) as server:
            print(server.socket.getsockname()[1], flush=True)
            server.serve_forever()


# -- clients (in this process) ---------------------------------------------------------------------


def connect(lib: str, port: int) -> Any:
    uri = f"ws://{HOST}:{port}/"
    if lib == "wsend":
        import wsend.sync

        return wsend.sync.connect(
            uri, compression=None, ping_interval=None, max_message_size=None
        ).open()
    from websockets.sync.client import connect as ws_connect

    return ws_connect(uri, compression=None, ping_interval=None, max_size=None)


def one_in_flight(ws: Any, payload: bytes, warmup: float, duration: float) -> dict[str, float]:
    ws.send(payload)
    assert ws.recv() == payload
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        ws.send(payload)
        ws.recv()
    count = 0
    start = time.perf_counter()
    end = start + duration
    while time.perf_counter() < end:
        ws.send(payload)
        ws.recv()
        count += 1
    return {"rate": count / (time.perf_counter() - start)}


def pipelined(
    ws: Any, payload: bytes, warmup: float, duration: float, server_pid: int
) -> dict[str, float]:
    window = threading.Semaphore(INFLIGHT)
    stop = threading.Event()
    sent = 0

    def send_loop() -> None:
        nonlocal sent
        with contextlib.suppress(Exception):  # the watchdog aborted a stalled connection
            while not stop.is_set():
                if window.acquire(timeout=0.1):
                    ws.send(payload)
                    sent += 1

    sender = threading.Thread(target=send_loop)
    sender.start()
    received = 0
    marks: list[tuple[int, float, int, int]] = []
    phase_end = time.perf_counter() + warmup
    for phase in (warmup, duration):
        phase_end = time.perf_counter() + phase
        while time.perf_counter() < phase_end:
            ws.recv()
            window.release()
            received += 1
        marks.append((received, time.perf_counter(), cpu_ns(os.getpid()), cpu_ns(server_pid)))
    stop.set()
    sender.join()
    for _ in range(sent - received):  # the echoes in flight, before closing
        ws.recv()
    (n0, t0, c0, s0), (n1, t1, c1, s1) = marks
    count = n1 - n0
    return {
        "rate": count / (t1 - t0),
        "client_us": (c1 - c0) / count / 1000,
        "server_us": (s1 - s0) / count / 1000,
    }


def abort(lib: str, ws: Any) -> None:
    """End a stalled connection: its blocked calls in every thread fail at once."""
    if lib == "wsend":
        ws.abort()
    else:
        with contextlib.suppress(OSError):
            ws.socket.shutdown(socket.SHUT_RDWR)


def measure(
    lib: str, port: int, server_pid: int, size: int, kind: str, warmup: float, duration: float
) -> dict[str, float]:
    """One cell. A connection that makes no progress for ``STALL_AFTER`` seconds (both peers
    blocked writing, neither reading) is aborted and the cell recorded as stalled."""
    payload = os.urandom(size)
    ws = connect(lib, port)
    fired = threading.Event()

    def stalled() -> None:
        fired.set()
        abort(lib, ws)

    watchdog = threading.Timer(max(STALL_AFTER, 10 * (warmup + duration)), stalled)
    watchdog.start()
    try:
        if kind == "one":
            return one_in_flight(ws, payload, warmup, duration)
        return pipelined(ws, payload, warmup, duration, server_pid)
    except Exception:
        if not fired.is_set():
            raise
        return {"stalled": 1.0}
    finally:
        watchdog.cancel()
        with contextlib.suppress(Exception):
            ws.close()


# -- the run ---------------------------------------------------------------------------------------


def start_server(lib: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sync", "--serve", lib],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def run(sizes: list[int], reps: int, warmup: float, duration: float) -> dict[Any, list[Any]]:
    pin(CLIENT_CORE)
    servers = {lib: start_server(lib) for lib in LIBS}
    results: dict[Any, list[Any]] = {}
    try:
        for _ in range(reps):
            for size in sizes:
                for kind in ("one", "pipelined"):
                    for lib in LIBS:
                        proc, port = servers[lib]
                        result = measure(lib, port, proc.pid, size, kind, warmup, duration)
                        results.setdefault((kind, size, lib), []).append(result)
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
    return results


def median(results: dict[Any, list[Any]], key: Any, field: str) -> float | None:
    """The median of a cell, or None if any of its repetitions stalled."""
    if any("stalled" in r for r in results[key]):
        return None
    return statistics.median(r[field] for r in results[key])


def label(size: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def report(results: dict[Any, list[Any]], sizes: list[int], meta: str) -> str:
    lines = [
        "# Threads: wsend.sync and websockets.sync",
        "",
        meta,
        "",
        f"Each cell: median ({X} websockets: wsend ÷ websockets for rates, websockets ÷ wsend "
        "for CPU; above 1, wsend does better).",
        "",
    ]
    tables: list[tuple[str, str, str, Callable[[float, float], float]]] = [
        ("One message in flight: round trips/s", "one", "rate", lambda w, o: w / o),
        (f"Pipelined, {INFLIGHT} in flight: messages/s", "pipelined", "rate", lambda w, o: w / o),
        ("Pipelined: client CPU µs per message", "pipelined", "client_us", lambda w, o: o / w),
        ("Pipelined: server CPU µs per message", "pipelined", "server_us", lambda w, o: o / w),
    ]
    for title, kind, field, ratio in tables:
        lines += [f"## {title}", "", "| library | " + " | ".join(map(label, sizes)) + " |"]
        lines.append("|---|" + "---|" * len(sizes))
        for lib in LIBS:
            cells = []
            for size in sizes:
                value = median(results, (kind, size, lib), field)
                mine = median(results, (kind, size, "wsend"), field)
                theirs = median(results, (kind, size, "websockets"), field)
                if value is None:
                    cells.append("**stalled**")
                    continue
                cell = f"{value:,.0f}" if field == "rate" else f"{value:.1f}"
                if lib == "wsend" and mine is not None and theirs is not None:
                    cell += f" ({ratio(mine, theirs):.2f}{X})"
                cells.append(cell)
            lines.append(f"| {lib}.sync | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=LIBS, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="64,8k,100k")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=0.2)
    parser.add_argument("--duration", type=float, default=0.5)
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    results = run(sizes, args.reps, args.warmup, args.duration)
    import websockets

    load = os.getloadavg()
    meta = (
        f"{time.strftime('%Y-%m-%d %H:%M')} · Python {sys.version.split()[0]} · websockets "
        f"{websockets.__version__} · {args.reps} {X} {args.duration} s per cell · load "
        f"{load[0]:.2f}"
    )
    text = report(results, sizes, meta)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
