"""Runs the scenarios: starts server and client worker processes, interleaves contenders."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import IO, Any

from .common import cpu_ns, make_certificate, raise_nofile, rss_bytes, uri_for

LIBS = ("wsend", "picows", "aiohttp", "websockets")
# wsend on asyncio's own transports (wsend uses aiofastnet's when installed): added to the
# pipelined echo (2) and idle memory (5) scenarios to show what the transport changes.
ASYNCIO_VARIANT = "wsend-asyncio"
CALLBACKS_VARIANT = "wsend-callbacks"
REFERENCE = "picows"
PIPELINE_DEPTH = 64
HANDSHAKE_CONCURRENCY = 8
BROADCAST_SIZE = 64
# "floor": wsend's connections written to with one os.write each, the system-call floor.
BROADCAST_LIBS = ("wsend", "websockets", "picows", "aiohttp", "floor")
IDLE_WARM_CONNECTIONS = 100


class WorkerError(RuntimeError):
    pass


#: The C allocator's settings of every worker process, whatever its library: freed memory is
#: kept for reuse instead of being returned to the kernel and faulted in again with the next
#: large message (see wsend.allocator). Empty with --default-allocator.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(16 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}


def worker_env() -> dict[str, str]:
    return {**os.environ, **ALLOCATOR_ENV}


class Worker:
    """A server or client worker process, spoken to with JSON lines over its stdin/stdout."""

    def __init__(
        self, module: str, args: list[str], log: IO[str], timeout: float = 60, wait: bool = True
    ) -> None:
        cmd = [sys.executable, "-m", module, *args]
        self.name = " ".join(args)
        self.proc = subprocess.Popen(
            cmd,
            env=worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.info: dict[str, Any] = {}
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for the worker's first line (servers: port and pid)."""
        if not self.info:
            self.info = self.read(timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            code = self.proc.poll()
            raise WorkerError(f"{self.name}: no answer (exit code {code}); see workers.log")
        result: dict[str, Any] = json.loads(line)
        return result

    def request(self, cmd: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        self.send(cmd)
        return self.read(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class Cell:
    """One measured combination; scenarios share cells (picows vs picows serves 1a and 1b)."""

    server: str
    client: str
    size: int
    inflight: int
    tls: bool


@dataclass
class Options:
    scenarios: set[int]
    sizes: list[int]
    loops: list[str]
    libs: list[str]
    reps: int
    duration: float
    warmup: float
    connections: list[int]
    cores: tuple[int, int]
    quick: bool
    verbose: bool


def echo_cells(opts: Options) -> list[Cell]:
    libs, ref, cells = opts.libs, REFERENCE, []
    tls_modes = [False] + ([True] if 7 in opts.scenarios else [])
    for tls in tls_modes:
        for size in opts.sizes:
            # wsend's callback API is measured beside its coroutine API (not over TLS).
            variants = [CALLBACKS_VARIANT] if "wsend" in libs and not tls else []
            if 1 in opts.scenarios or tls:
                cells += [Cell(s, ref, size, 1, tls) for s in [*libs, *variants]]
                cells += [Cell(ref, c, size, 1, tls) for c in [*libs, *variants]]
            if 2 in opts.scenarios or tls:
                cells += [Cell(s, ref, size, PIPELINE_DEPTH, tls) for s in [*libs, *variants]]
                if "wsend" in libs and not tls:
                    cells.append(Cell(ASYNCIO_VARIANT, ref, size, PIPELINE_DEPTH, tls))
            if 3 in opts.scenarios:
                cells += [Cell("raw", "raw", size, 1, tls), Cell("raw", "raw", size, 64, tls)]
    return list(dict.fromkeys(cells))


class Run:
    """One invocation: owns the worker processes and collects records."""

    def __init__(self, opts: Options, log: IO[str], certdir: str) -> None:
        self.opts = opts
        self.log = log
        self.certdir = certdir
        self.records: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        print(text, flush=True)

    def server(
        self, lib: str, loop: str, tls: bool = False, compression: bool = False, wait: bool = True
    ) -> Worker:
        args = ["--lib", lib, "--loop", loop, "--core", str(self.opts.cores[0])]
        if tls:
            args += ["--tls", self.certdir]
        if compression:
            args.append("--compression")
        return Worker("bench.servers", args, self.log, wait=wait)

    def client(self, lib: str, loop: str, wait: bool = True) -> Worker:
        args = ["--lib", lib, "--loop", loop, "--core", str(self.opts.cores[1])]
        return Worker("bench.clients", args, self.log, wait=wait)

    def record(self, **fields: Any) -> None:
        self.records.append(fields)
        if self.opts.verbose:
            self.say(f"    {fields}")

    # ------------------------------------------------------------ scenarios 1, 2, 3, 7

    def echo(self, loop: str) -> None:
        cells = echo_cells(self.opts)
        if not cells:
            return
        servers: dict[tuple[str, bool], Worker] = {}
        clients: dict[str, Worker] = {}
        try:
            for key in dict.fromkeys((c.server, c.tls) for c in cells):
                servers[key] = self.server(key[0], loop, tls=key[1], wait=False)
            for lib in dict.fromkeys(c.client for c in cells):
                clients[lib] = self.client(lib, loop, wait=False)
            for worker in [*servers.values(), *clients.values()]:
                worker.wait_ready()  # started together: their imports overlap
            for rep in range(self.opts.reps):
                self.say(
                    f"  [{loop}] echo: repetition {rep + 1}/{self.opts.reps}, {len(cells)} cells"
                )
                for cell in cells:  # round-robin: every contender once per repetition
                    self.echo_cell(loop, rep, cell, servers, clients)
        finally:
            for worker in [*servers.values(), *clients.values()]:
                worker.close()

    def echo_cell(
        self,
        loop: str,
        rep: int,
        cell: Cell,
        servers: dict[tuple[str, bool], Worker],
        clients: dict[str, Worker],
    ) -> None:
        server = servers[(cell.server, cell.tls)]
        cmd = {
            "cmd": "echo",
            "uri": uri_for(cell.server, server.info["port"], cell.tls),
            "size": cell.size,
            "inflight": cell.inflight,
            "warmup": self.opts.warmup,
            "duration": self.opts.duration,
            "server_pid": server.pid,
        }
        result = clients[cell.client].request(cmd, timeout=60 + 10 * self.opts.duration)
        self.record(scenario="echo", loop=loop, rep=rep, **asdict(cell), **result)

    # ------------------------------------------------------------ scenario 6

    def handshakes(self, loop: str) -> None:
        libs = self.opts.libs
        servers: dict[str, Worker] = {}
        client = None
        try:
            for lib in libs:
                servers[lib] = self.server(lib, loop, wait=False)
            client = self.client(REFERENCE, loop, wait=False)
            for worker in [*servers.values(), client]:
                worker.wait_ready()
            for rep in range(self.opts.reps):
                self.say(f"  [{loop}] handshakes: repetition {rep + 1}/{self.opts.reps}")
                for lib in libs:
                    server = servers[lib]
                    cmd = {
                        "cmd": "handshakes",
                        "uri": uri_for(lib, server.info["port"], False),
                        "concurrency": HANDSHAKE_CONCURRENCY,
                        "warmup": self.opts.warmup,
                        "duration": self.opts.duration,
                        "server_pid": server.pid,
                    }
                    result = client.request(cmd, timeout=60 + 10 * self.opts.duration)
                    self.record(scenario="handshake", loop=loop, rep=rep, server=lib, **result)
        finally:
            for worker in [*servers.values(), *([client] if client else [])]:
                worker.close()

    # ------------------------------------------------------------ scenarios 4 and 5

    def wait_count(self, server: Worker, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while server.request({"cmd": "count"})["count"] < n:
            if time.monotonic() > deadline:
                raise WorkerError(f"{server.name}: fewer than {n} connections open")
            time.sleep(0.05)

    def crowd(self, client: Worker, server: Worker, lib: str, n: int, compression: bool) -> None:
        cmd = {
            "cmd": "open",
            "uri": uri_for(lib, server.info["port"], False),
            "n": n,
            "compression": compression,
        }
        result = client.request(cmd, timeout=600)
        if "error" in result:
            raise WorkerError(f"opening {n} connections to {lib}: {result['error']}")

    def settled_rss(self, server: Worker) -> int:
        server.request({"cmd": "gc"})
        time.sleep(0.3)
        return rss_bytes(server.pid)

    def broadcast(self, loop: str) -> None:
        # The target compares wsend and websockets; the floor says what any server can reach.
        wanted = {*self.opts.libs, "wsend", "websockets", "floor"}
        libs = [lib for lib in BROADCAST_LIBS if lib in wanted]
        rounds = max(3, self.opts.reps)
        client = self.client(REFERENCE, loop)
        try:
            for n in self.opts.connections:
                for lib in libs:
                    if lib == "floor" and "wsend" in libs:
                        continue  # measured with wsend, on its connections, in turns
                    paired = ["wsend", "floor"] if lib == "wsend" and "floor" in libs else [lib]
                    self.say(f"  [{loop}] broadcast: {' and '.join(paired)}, {n:,} clients")
                    try:
                        self.broadcast_one(loop, client, paired, n, rounds)
                    except WorkerError as exc:
                        for name in paired:
                            self.record(
                                scenario="broadcast", loop=loop, server=name, n=n, error=str(exc)
                            )
                    finally:
                        client.request({"cmd": "close_all"})
        finally:
            client.close()

    def broadcast_one(
        self, loop: str, client: Worker, libs: list[str], n: int, rounds: int
    ) -> None:
        """Measure ``libs`` on one server: one library, or wsend and the floor in turns (the
        floor writes to wsend's connections, so both see the same sockets and moments)."""
        server = self.server(libs[0], loop)
        try:
            base = rss_bytes(server.pid)
            self.crowd(client, server, libs[0], n, False)
            self.wait_count(server, n)
            connected = self.settled_rss(server)
            count = 0
            for rep in range(rounds):
                for lib in libs:
                    count += n
                    client.send({"cmd": "wait_messages", "count": count, "timeout": 60})
                    time.sleep(0.05)  # let the client enter its wait
                    cpu0 = cpu_ns(server.pid)
                    cmd = {"cmd": "broadcast", "size": BROADCAST_SIZE, "floor": lib == "floor"}
                    sent = server.request(cmd)
                    arrived = client.read(90)
                    cpu1 = cpu_ns(server.pid)
                    if "error" in sent or "error" in arrived:
                        raise WorkerError(str(sent.get("error") or arrived.get("error")))
                    self.record(
                        scenario="broadcast",
                        loop=loop,
                        rep=rep,
                        server=lib,
                        n=n,
                        latency=arrived["t_all"] - sent["t0"],
                        send_time=sent["t1"] - sent["t0"],
                        server_cpu_ns=cpu1 - cpu0,
                        rss=rss_bytes(server.pid),
                        rss_connected=connected,
                        rss_base=base,
                    )
        finally:
            server.close()

    def idle(self, loop: str) -> None:
        n = max(self.opts.connections)
        warm = min(IDLE_WARM_CONNECTIONS, n // 10)
        client = self.client(REFERENCE, loop)
        try:
            libs = list(self.opts.libs)
            if "wsend" in libs:
                libs.insert(libs.index("wsend") + 1, ASYNCIO_VARIANT)
            for compression in (False, True):
                for lib in libs:
                    if compression and lib == "picows":
                        continue  # no permessage-deflate in picows
                    label = "with" if compression else "without"
                    self.say(f"  [{loop}] idle: {lib}, {n:,} connections {label} compression")
                    server = self.server(lib, loop, compression=compression)
                    try:
                        self.crowd(client, server, lib, warm, compression)
                        self.wait_count(server, warm)
                        before = self.settled_rss(server)
                        self.crowd(client, server, lib, n - warm, compression)
                        self.wait_count(server, n)
                        after = self.settled_rss(server)
                        self.record(
                            scenario="idle",
                            loop=loop,
                            server=lib,
                            compression=compression,
                            n=n,
                            per_connection=(after - before) / (n - warm),
                            rss_before=before,
                            rss_after=after,
                        )
                    except WorkerError as exc:
                        self.record(
                            scenario="idle",
                            loop=loop,
                            server=lib,
                            compression=compression,
                            n=n,
                            error=str(exc),
                        )
                    finally:
                        client.request({"cmd": "close_all"})
                        server.close()
        finally:
            client.close()


def run(opts: Options, log_path: str) -> list[dict[str, Any]]:
    raise_nofile()
    with open(log_path, "w") as log, tempfile.TemporaryDirectory(prefix="wsend-bench-") as certdir:
        if 7 in opts.scenarios:
            make_certificate(certdir)
        runner = Run(opts, log, certdir)
        steps: list[tuple[int | None, Callable[[str], None]]] = [
            (None, runner.echo),
            (6, runner.handshakes),
            (4, runner.broadcast),
            (5, runner.idle),
        ]
        for loop in opts.loops:
            for scenario, step in steps:
                if scenario is None or scenario in opts.scenarios:
                    step(loop)
        return runner.records


def parse_sizes(text: str) -> list[int]:
    units = {"k": 1024, "m": 1024 * 1024}
    sizes = []
    for item in text.split(","):
        item = item.strip().lower().removesuffix("b").removesuffix("i")
        factor = units.get(item[-1:], 1)
        sizes.append(int(float(item[:-1] if factor > 1 else item) * factor))
    return sizes


def parse_ints(text: str) -> Iterable[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
