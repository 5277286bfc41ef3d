"""Publications per second through Redis from one node: wsend's hub vs python-socketio.

One node process and one ``redis-server`` on loopback. Inside the node, ``publishers``
concurrent tasks publish server-side, each awaiting its publication before the next, until
``messages`` are out; nothing subscribes (the fan-out is measured by ``hub_fanout.py`` and
``redis_fanout.py``): this is the cost of getting a publication into Redis. Rows, each in a
fresh process, repeated ``--reps`` times interleaved (the median is reported):

- **wsend, history**: ``hub.publish`` on a channel with history (one Lua script: offset,
  stream append, ``PUBLISH``);
- **wsend, no history**: ``hub.publish`` on a channel without history (one ``PUBLISH``);
- the same two with automatic pipelining off (``broker.pipeline = None``): each command sent
  alone, as before it existed;
- **python-socketio**: ``AsyncServer.emit(event, data, room=...)`` on ``AsyncRedisManager``
  (one ``PUBLISH`` of the pickled message).

Reported: publications/s and the node's CPU per publication (µs, from ``/proc``).

    python -m bench.redis_publish [--publishers 1,10,100] [--messages 20000] [--reps 3]
    python -m bench.redis_publish --cluster      # the wsend rows on a 3-master Redis Cluster

Needs ``redis-server`` and the bench extra. Writes ``bench/results/redis_publish.md``
(``redis_publish_cluster.md`` with ``--cluster``, on the test suite's cluster of 3 masters and
3 replicas; python-socketio has no cluster row).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import cpu_ns
from .redis_fanout import running_redis

RESULTS = Path(__file__).parent / "results" / "redis_publish.md"
SYSTEMS = (
    "wsend, history",
    "wsend, no history",
    "wsend, history, no pipelining",
    "wsend, no history, no pipelining",
    "python-socketio",
)
DATA = {"text": "x" * 80}
Runs = dict[tuple[str, int], list[dict[str, float]]]  # (system, publishers) -> runs


async def _publish_all(publish: Any, publishers: int, messages: int) -> dict[str, float]:
    left = messages

    async def publisher() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await publish()

    await publish()  # connections made, scripts loaded
    cpu, start = cpu_ns(os.getpid()), time.perf_counter()
    await asyncio.gather(*(publisher() for _ in range(publishers)))
    elapsed = time.perf_counter() - start
    return {"rate": messages / elapsed, "cpu_us": (cpu_ns(os.getpid()) - cpu) / 1e3 / messages}


async def _wsend(system: str, url: str, publishers: int, messages: int) -> dict[str, float]:
    from wsend.hub.node import Hub
    from wsend.hub.options import HubOptions, NamespaceOptions
    from wsend.hub.redis import engine_from_url

    namespaces = {
        "": NamespaceOptions(),
        "h": NamespaceOptions(history_size=100, history_ttl=300.0),
    }
    broker, presence = engine_from_url(url, prefix=f"bench{time.time_ns()}")
    if "no pipelining" in system:
        broker.pipeline = None
    hub = Hub(HubOptions(namespaces=namespaces), broker=broker, presence=presence)
    await hub.start()
    channel = "h:bench" if "no history" not in system else "bench"
    try:
        return await _publish_all(lambda: hub.publish(channel, DATA), publishers, messages)
    finally:
        await hub.close()


async def _socketio(url: str, publishers: int, messages: int) -> dict[str, float]:
    import socketio

    manager = socketio.AsyncRedisManager(url)
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    manager.initialize()  # what the server does when it starts
    try:
        return await _publish_all(lambda: sio.emit("msg", DATA, room="bench"), publishers, messages)
    finally:
        await manager.redis.aclose()


def _child(system: str, url: str, publishers: int, messages: int, out: Any) -> None:
    if system == "python-socketio":
        result = asyncio.run(_socketio(url, publishers, messages))
    else:
        result = asyncio.run(_wsend(system, url, publishers, messages))
    out.put(result)


def measure(system: str, url: str, publishers: int, messages: int) -> dict[str, float]:
    """One run of ``system`` in a fresh process."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    proc = context.Process(target=_child, args=(system, url, publishers, messages, out))
    proc.start()
    try:
        result: dict[str, float] = out.get(timeout=600)
    finally:
        proc.join(30)
    if proc.exitcode != 0:
        raise RuntimeError(f"{system} exited with {proc.exitcode}")
    return result


@contextlib.contextmanager
def running_cluster() -> Iterator[str]:
    """The test suite's Redis Cluster (3 masters, 3 replicas) for the block; its URL."""
    from tests.hub.redis_cluster import Cluster

    with Cluster() as cluster:
        yield cluster.url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", default="1,10,100")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cluster", action="store_true", help="on a Redis Cluster")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = RESULTS.with_stem(RESULTS.stem + "_cluster") if args.cluster else RESULTS
    levels = [int(n) for n in args.publishers.split(",")]
    systems = [s for s in SYSTEMS if s.startswith("wsend")] if args.cluster else list(SYSTEMS)
    runs: Runs = {}
    with running_cluster() if args.cluster else running_redis() as url:
        for _ in range(args.reps):
            for level in levels:
                for system in systems:
                    result = measure(system, url, level, args.messages)
                    runs.setdefault((system, level), []).append(result)
                    print(f"{system}, {level} publishers: {result}", flush=True)
    write(runs, levels, systems, args)


def write(runs: Runs, levels: list[int], systems: list[str], args: Any) -> None:
    def median(system: str, level: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[(system, level)])

    head = " | ".join(f"{n} publishers" for n in levels)
    where = "a Redis Cluster of 3 masters and 3 replicas" if args.cluster else "Redis"
    lines = [
        "# Publications through Redis from one node" + (" (Redis Cluster)" if args.cluster else ""),
        "",
        f"{args.messages} publications of 100 bytes per cell, published server-side by "
        "concurrent tasks of one node process (each awaits its publication), nobody "
        f"subscribed; {where} on loopback. Median of {args.reps} runs. "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {multiprocessing.cpu_count()} CPUs. "
        f"`python -m bench.redis_publish{' --cluster' if args.cluster else ''}` "
        "(bench/redis_publish.py).",
        "",
        "Publications/s (node CPU per publication, µs):",
        "",
        f"| system | {head} |",
        "|---|" + "---|" * len(levels),
    ]
    for system in systems:
        cells = [
            f"{median(system, n, 'rate'):,.0f} ({median(system, n, 'cpu_us'):.1f})" for n in levels
        ]
        lines.append(f"| {system} | {' | '.join(cells)} |")
    lines += [
        "",
        "With history a publication is a Lua script (offset, stream append, `PUBLISH`); without,",
        "a `PUBLISH`, like python-socketio's. The rows without pipelining send every command",
        "alone, as the engine did before automatic pipelining.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
