"""Hub fan-out: one publisher, one channel, many subscribers; the hub, bare broadcast, socketio.

``python -m bench.hub_fanout [--subscribers 1000,10000] [--reps 3] [--window 4] [--quick]``

Three systems do the same job side by side in one run (``bench/fanout_servers.py``):
wsend's hub, a bare wsend server calling :func:`wsend.broadcast`, and python-socketio's
``AsyncServer`` (a room, ``emit``). A publisher sends publications of 100 characters; every
subscriber gets each one. The clients of all systems are the same light picows code
(``bench/fanout_clients.py``), one process per system holding all of its connections.

Two setups:

- **1 node**: each server in one process pinned to core 0, its clients pinned to core 1;
- **2 nodes + Redis**: each system on two processes (pinned to cores 0 and 1) sharing one
  ``redis-server``, subscribers split evenly, the publisher on the first: the hub on its Redis
  engine, python-socketio with ``AsyncRedisManager``, and bare broadcast relayed through a
  Redis pub/sub channel to both workers. Clients and Redis share the two cores with them.

Measured per system and subscriber count: deliveries per second (from the first send to the
last receipt), latency of each delivery (publisher's send to the subscriber's receipt, p50 and
p99), server CPU per delivery (all its processes, from /proc), and, on 1 node, server memory
per subscriber (RSS growth from 100 to N subscribers after ``gc.collect()``; for the hub also
with presence on). Repetitions are interleaved (round-robin over the systems); medians are
reported. Writes ``bench/results/hub_fanout.{md,json}`` and plots.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import cpu_ns, raise_nofile, rss_bytes
from .harness import Worker, WorkerError

HERE = Path(__file__).resolve().parent
SYSTEMS = ("hub", "broadcast", "socketio")
WARM = 100
SETUPS = ("1 node", "2 nodes + Redis")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Redis:
    """A throw-away ``redis-server`` on a free port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="wsend-fanout-redis-")
        self.port = free_port()
        options = ["--save", "", "--appendonly", "no", "--maxclients", "20000"]
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--dir", self.dir, *options],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class System:
    """One contender in one setup: its server processes and its client process."""

    def __init__(
        self, name: str, args: argparse.Namespace, log: Any, redis: str | None, presence: bool
    ) -> None:
        self.name = name
        nodes = 2 if redis else 1
        self.servers: list[Worker] = []
        common = ["--system", name, "--loop", args.loop]
        for i in range(nodes):
            extra = ["--redis", redis] if redis else []
            extra += ["--presence"] if presence else []
            core = str(i if redis else args.cores[0])
            self.servers.append(
                Worker("bench.fanout_servers", [*common, "--core", core, *extra], log, wait=False)
            )
        client_core = [] if redis else ["--core", str(args.cores[1])]
        self.client = Worker("bench.fanout_clients", [*common, *client_core], log, wait=False)

    def ready(self) -> None:
        for worker in [*self.servers, self.client]:
            worker.wait_ready()

    @property
    def ports(self) -> list[int]:
        return [server.info["port"] for server in self.servers]

    def count(self) -> int:
        return sum(server.request({"cmd": "count"})["count"] for server in self.servers)

    def open(self, n: int) -> None:
        target = self.count() + n
        result = self.client.request({"cmd": "open", "ports": self.ports, "n": n}, timeout=900)
        if "error" in result:
            raise WorkerError(f"{self.name}: opening {n} subscribers: {result['error']}")
        deadline = time.monotonic() + 60
        while self.count() < target:
            if time.monotonic() > deadline:
                raise WorkerError(f"{self.name}: fewer than {target} subscribers")
            time.sleep(0.05)

    def rss(self) -> int:
        for server in self.servers:
            server.request({"cmd": "gc"})
        time.sleep(0.3)
        return sum(rss_bytes(server.pid) for server in self.servers)

    def cpu(self) -> int:
        return sum(cpu_ns(server.pid) for server in self.servers)

    def run(self, messages: int, window: int, timeout: float) -> dict[str, Any]:
        cpu0 = self.cpu()
        cmd = {"cmd": "run", "messages": messages, "window": window, "timeout": timeout}
        result = self.client.request(cmd, timeout=timeout + 60)
        result["server_cpu_ns"] = self.cpu() - cpu0
        return result

    def close(self) -> None:
        for worker in [self.client, *self.servers]:
            worker.close()


def messages_for(n: int, args: argparse.Namespace) -> int:
    return args.messages or max(5, args.deliveries // n)


def measure_setup(
    setup: str, n: int, args: argparse.Namespace, log: Any, records: list[dict[str, Any]]
) -> None:
    redis = Redis() if setup != SETUPS[0] else None
    systems: list[System] = []
    try:
        for name in args.systems:
            systems.append(System(name, args, log, redis.url if redis else None, False))
        for system in systems:
            system.ready()
        for system in systems:
            print(f"  [{setup}] {system.name}: opening {n:,} subscribers", flush=True)
            if redis is None:
                system.open(min(WARM, n // 10))
                before = system.rss()
                system.open(n - min(WARM, n // 10))
                after = system.rss()
                records.append(
                    {
                        "kind": "memory",
                        "system": system.name,
                        "n": n,
                        "per_subscriber": (after - before) / (n - min(WARM, n // 10)),
                        "rss_after": after,
                    }
                )
            else:
                system.open(n)
            system.run(2, 1, 60)  # warm-up: every subscriber gets both, checked
        messages = messages_for(n, args)
        for rep in range(args.reps):
            for window in args.windows:
                for system in systems:
                    result = system.run(messages, window, args.timeout)
                    record = {"kind": "fanout", "setup": setup, "system": system.name, "n": n}
                    record.update(rep=rep, window=window, messages=messages)
                    records.append({**record, **result})
                    rate = result["deliveries"] / result["elapsed"] if result["elapsed"] else 0
                    print(
                        f"  [{setup}] {n:,} subscribers, rep {rep + 1}/{args.reps}, window "
                        f"{window}: {system.name} {rate:,.0f} deliveries/s",
                        flush=True,
                    )
    finally:
        for system in systems:
            system.close()
        if redis is not None:
            redis.close()


def measure_presence_memory(
    n: int, args: argparse.Namespace, log: Any, records: list[dict[str, Any]]
) -> None:
    system = System("hub", args, log, None, True)
    try:
        system.ready()
        warm = min(WARM, n // 10)
        system.open(warm)
        before = system.rss()
        system.open(n - warm)
        after = system.rss()
        records.append(
            {
                "kind": "memory",
                "system": "hub, presence on",
                "n": n,
                "per_subscriber": (after - before) / (n - warm),
                "rss_after": after,
            }
        )
    finally:
        system.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hub_fanout", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--subscribers", default=None, help="default 1000,10000 (quick: 100,1000)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--setups", default="1,2", help="1: one node, 2: two nodes on Redis")
    parser.add_argument("--reps", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument(
        "--windows", default="1,4", help="publications in flight, one run each (default 1,4)"
    )
    parser.add_argument("--messages", type=int, default=0, help="per run (default: see below)")
    parser.add_argument(
        "--deliveries", type=int, default=100_000, help="per run: messages = this / subscribers"
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--cores", default="0,1")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-presence", action="store_true", help="skip the presence memory")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    args.windows = [int(w) for w in args.windows.split(",") if w]
    args.cores = [int(c) for c in args.cores.split(",")]
    counts = args.subscribers or ("100,1000" if args.quick else "1000,10000")
    args.subscribers = [int(x) for x in counts.split(",")]
    args.reps = args.reps or (1 if args.quick else 3)
    if args.quick:
        args.deliveries = min(args.deliveries, 20_000)
    return args


def main(argv: list[str] | None = None) -> int:
    from . import fanout_report, report

    args = parse_args(argv)
    out: Path = args.out
    if args.report_only:
        data = json.loads((out / "hub_fanout.json").read_text())
        print(fanout_report.write(out, data))
        return 0
    raise_nofile()
    out.mkdir(parents=True, exist_ok=True)
    info = report.machine(
        {
            "subscribers": args.subscribers,
            "systems": args.systems,
            "setups": args.setups,
            "reps": args.reps,
            "windows": args.windows,
            "deliveries": args.deliveries,
            "loop": args.loop,
            "command": "python -m bench.hub_fanout " + " ".join(argv or sys.argv[1:]),
        }
    )
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    with open(out / "fanout_workers.log", "w") as log:
        for n in args.subscribers:
            for index in args.setups.split(","):
                measure_setup(SETUPS[int(index) - 1], n, args, log, records)
        if not args.no_presence and "hub" in args.systems:
            print(f"  hub, presence on: memory at {max(args.subscribers):,}", flush=True)
            measure_presence_memory(max(args.subscribers), args, log, records)
    info["loadavg_end"] = list(os.getloadavg())
    info["seconds"] = round(time.monotonic() - started, 1)
    data = {"machine": info, "records": records}
    (out / "hub_fanout.json").write_text(json.dumps(data, indent=1))
    print(fanout_report.write(out, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
