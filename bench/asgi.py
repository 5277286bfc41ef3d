"""wsend as uvicorn's WebSocket layer against uvicorn's own layers, side by side.

    python -m bench.asgi [--sizes 64,256,8k,100k,1m] [--loop uvloop] [--reps 5]

The same plain ASGI echo application (:func:`bench.asgi_servers.echo_app`) runs on uvicorn
with each WebSocket layer: wsend's (``ws=WSendProtocol``) and uvicorn's ``websockets``,
``websockets-sansio`` and ``wsproto``. Callback-driven client processes drive each server, one
at a time: pipelined echo with 64 messages in flight (a new message for each echo received),
and echo with one message in flight. Two clients by default, in the same run: picows (which
writes each message with its own system call) and wsend's callback client (``on_message`` and
``send_nowait()``, which writes the answers to one read with one system call, and here buffers
what it sends without limit, as picows does). Servers run pinned to one core, the clients to
the other; every repetition visits every cell once (round-robin), so a disturbance spreads
over all layers. Medians over the repetitions.

Writes ``bench/results/asgi.md`` (tables: messages per second, round trips per second, server
CPU time per message, with each layer's ratio to wsend and wsend's ratio to the best uvicorn
layer) and ``bench/results/asgi.json`` (every measurement); with the default output folder and
every size, refreshes the section between the ``asgi`` markers of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import report
from .asgi_servers import LAYERS
from .harness import PIPELINE_DEPTH, Worker

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
SUBJECT = "wsend"
UVICORN_LAYERS = tuple(layer for layer in LAYERS if layer != SUBJECT)
README_BEGIN = "<!-- asgi:begin -->"
README_END = "<!-- asgi:end -->"
X = report.X
ROW_LABEL = {
    "wsend": "wsend (`ws=WSendProtocol`)",
    "websockets": "uvicorn `websockets`",
    "websockets-sansio": "uvicorn `websockets-sansio`",
    "wsproto": "uvicorn `wsproto`",
}

Records = list[dict[str, Any]]

# The wsend client buffers what it sends up to this (picows: without limit), so that a deep
# pipeline of large messages can't stall it and a server that waits for its writes to drain.
CLIENT_WRITE_LIMIT = 1 << 30
CLIENTS = ("picows", "wsend-callbacks")
CLIENT_LABEL = {
    "picows": "picows client (a system call per message sent)",
    "wsend-callbacks": "wsend's callback client (one write for the answers to each read)",
}


def parse_sizes(text: str) -> list[int]:
    units = {"k": 1 << 10, "m": 1 << 20}
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        factor = units.get(item[-1:], 1)
        sizes.append(int(item.rstrip("km")) * factor)
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.asgi", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="64,256,8k,100k,1m", help="default: %(default)s")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--layers", default=",".join(LAYERS), help="default: %(default)s")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=0.3, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, default=0.15, help="seconds before measuring")
    parser.add_argument("--no-single", action="store_true", help="skip one-in-flight echo")
    parser.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help="the clients driving every server, in turn (default: %(default)s)",
    )
    parser.add_argument("--cores", default="0,1", help="server core, client core")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def measure(opts: argparse.Namespace, log: Any) -> Records:
    """Run every cell ``opts.reps`` times, round-robin; return the records."""
    layers = opts.layers.split(",")
    clients = opts.clients.split(",")
    server_core, client_core = opts.cores.split(",")
    servers = {
        layer: Worker(
            "bench.asgi_servers",
            ["--layer", layer, "--loop", opts.loop, "--core", server_core],
            log,
            wait=False,
        )
        for layer in layers
    }
    workers = {
        lib: Worker(
            "bench.clients", ["--lib", lib, "--loop", opts.loop, "--core", client_core], log
        )
        for lib in clients
    }
    records: Records = []
    try:
        for worker in servers.values():
            worker.wait_ready()
        for rep in range(opts.reps):
            print(f"  repetition {rep + 1}/{opts.reps}", flush=True)
            for lib, inflight, size, layer in cells(opts, clients, layers):
                result = client_echo(opts, workers[lib], servers[layer], lib, inflight, size)
                record = {"client": lib, "layer": layer, "size": size, "inflight": inflight}
                record.update(result, rep=rep)
                records.append(record)
                if opts.verbose:
                    print(f"    {record}", flush=True)
    finally:
        for worker in [*servers.values(), *workers.values()]:
            worker.close()
    return records


def cells(
    opts: argparse.Namespace, clients: list[str], layers: list[str]
) -> list[tuple[str, int, int, str]]:
    """Every (client, in flight, size, layer) of one repetition, in order."""
    inflights = [PIPELINE_DEPTH] + ([] if opts.no_single else [1])
    return [
        (lib, inflight, size, layer)
        for lib in clients
        for inflight in inflights
        for size in parse_sizes(opts.sizes)
        for layer in layers
    ]


def client_echo(
    opts: argparse.Namespace, client: Worker, server: Worker, lib: str, inflight: int, size: int
) -> dict[str, Any]:
    """One measurement: ``client`` keeps ``inflight`` messages of ``size`` bytes in flight."""
    cmd = {
        "cmd": "echo",
        "uri": f"ws://127.0.0.1:{server.info['port']}/",
        "size": size,
        "inflight": inflight,
        "warmup": opts.warmup,
        "duration": opts.duration,
        "server_pid": server.pid,
    }
    if lib == "wsend-callbacks":
        cmd["write_limit"] = CLIENT_WRITE_LIMIT
    return client.request(cmd, timeout=60 + 10 * opts.duration)


def medians(records: Records, client: str, inflight: int, key: str) -> dict[tuple[str, int], float]:
    """Median of ``key`` per (layer, size) under ``client``; ``cpu``: server CPU µs/message."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if r.get("client", "picows") != client or r["inflight"] != inflight:
            continue
        if "error" in r or not r.get("count"):
            continue
        if key == "cpu":
            if not r.get("server_cpu_ns"):
                continue
            value = r["server_cpu_ns"] / r["count"] / 1000
        else:
            value = r["rate"]
        groups.setdefault((r["layer"], r["size"]), []).append(value)
    return {k: statistics.median(v) for k, v in groups.items()}


def table(
    values: dict[tuple[str, int], float],
    layers: list[str],
    sizes: list[int],
    higher_is_better: bool,
    digits: int = 0,
) -> list[str]:
    """Markdown rows: each layer's median and its ratio to wsend, then wsend ÷ the best
    uvicorn layer (above 1: wsend does better)."""
    head = "| Layer | " + " | ".join(report.size_label(s) for s in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    for layer in layers:
        cells = []
        for size in sizes:
            value = values.get((layer, size))
            ours = values.get((SUBJECT, size))
            text = report.fmt_number(value, digits)
            if layer != SUBJECT and value and ours:
                ratio = value / ours if higher_is_better else ours / value
                text += f" ({report.fmt_ratio(ratio)} wsend)"
            cells.append(text)
        lines.append(f"| {ROW_LABEL.get(layer, layer)} | " + " | ".join(cells) + " |")
    ratios = []
    for size in sizes:
        ratio = best_ratio(values, layers, size, higher_is_better)
        ratios.append("-" if ratio is None else f"**{ratio:.2f}{X}**")
    lines.append("| wsend ÷ best uvicorn layer | " + " | ".join(ratios) + " |")
    return lines


def best_ratio(
    values: dict[tuple[str, int], float], layers: list[str], size: int, higher_is_better: bool
) -> float | None:
    """wsend's value over the best uvicorn layer's at ``size`` (above 1: wsend is better)."""
    ours = values.get((SUBJECT, size))
    others = [
        values[(layer, size)] for layer in layers if layer != SUBJECT and (layer, size) in values
    ]
    if not ours or not others:
        return None
    if higher_is_better:
        return ours / max(others)
    return min(others) / ours


def markdown(data: dict[str, Any]) -> list[str]:
    records, meta = data["records"], data["machine"]
    opts = meta["options"]
    load = ", ".join(f"{x:.2f}" for x in meta["loadavg"])
    load_end = ", ".join(f"{x:.2f}" for x in data["loadavg_end"])
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        f"Run of {meta['date']} (revision {meta['revision']}), {meta['cpu']}, {meta['cores']} "
        f"cores, {meta['python']}, loop: {opts['loop']}; {versions}.",
        f"Load average {load} at the start, {load_end} at the end. "
        f"{opts['reps']} repetitions of {opts['duration']} s (after {opts['warmup']} s of "
        f"warm-up) per cell, medians.",
    ]
    for client in opts["clients"].split(","):
        lines += client_tables(records, client, opts)
    failed = [r for r in records if "error" in r]
    if failed:
        lines += ["", "Errors:"]
        lines += [f"- {r['client']}, {r['layer']}, {r['size']} B: {r['error']}" for r in failed]
    return lines


def client_tables(records: Records, client: str, opts: dict[str, Any]) -> list[str]:
    """The tables of one client: pipelined rate and server CPU, one-in-flight rate."""
    layers = opts["layers"].split(",")
    sizes = parse_sizes(opts["sizes"])
    label = CLIENT_LABEL.get(client, f"{client} client")
    lines = [
        "",
        f"**Pipelined echo, {PIPELINE_DEPTH} messages in flight, {label}: messages per second**",
        "",
        *table(medians(records, client, PIPELINE_DEPTH, "rate"), layers, sizes, True),
        "",
        f"**Server CPU time per echoed message, pipelined, {label} (µs; the ratio is wsend's "
        "÷ the layer's: above 1 the layer uses less)**",
        "",
        *table(medians(records, client, PIPELINE_DEPTH, "cpu"), layers, sizes, False, 1),
    ]
    single = medians(records, client, 1, "rate")
    if single:
        lines += [
            "",
            f"**One message in flight, {label}: round trips per second**",
            "",
            *table(single, layers, sizes, True),
        ]
    return lines


def update_readme(readme: Path, lines: list[str]) -> None:
    text = readme.read_text()
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return
    new = "\n".join([README_BEGIN, *lines, README_END])
    readme.write_text(text[:start] + new + text[end + len(README_END) :])


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    opts.out.mkdir(parents=True, exist_ok=True)
    meta = report.machine({k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()})
    meta["versions"] = report_versions()
    started = time.monotonic()
    with open(opts.out / "asgi-workers.log", "w") as log:
        records = measure(opts, log)
    data = {
        "machine": meta,
        "loadavg_end": list(os.getloadavg()),
        "seconds": time.monotonic() - started,
        "records": records,
    }
    (opts.out / "asgi.json").write_text(json.dumps(data, indent=1))
    lines = markdown(data)
    title = "# wsend as uvicorn's WebSocket layer\n\n"
    (opts.out / "asgi.md").write_text(title + "\n".join(lines) + "\n")
    print("\n".join(lines))
    full = parse_sizes(opts.sizes) == parse_sizes("64,256,8k,100k,1m")
    if opts.out.resolve() == DEFAULT_OUT.resolve() and full and not opts.no_single:
        update_readme(HERE / "README.md", lines)


def report_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name in ("wsend", "uvicorn", "websockets", "wsproto", "httptools", "uvloop", "picows"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


if __name__ == "__main__":
    sys.exit(main())
