"""wsend as uvicorn's WebSocket layer against uvicorn's own layers, side by side.

    python -m bench.asgi [--sizes 64,256,8k,100k,1m] [--loop uvloop] [--reps 5]

The same plain ASGI echo application (:func:`bench.asgi_servers.echo_app`) runs on uvicorn
with each WebSocket layer: wsend's (``ws=WSendProtocol``) and uvicorn's ``websockets``,
``websockets-sansio`` and ``wsproto``. One picows client process (callback-driven, the
fastest client here) drives each server: pipelined echo with 64 messages in flight (a new
message for each echo received), and echo with one message in flight. Servers run pinned to
one core, the client to the other; every repetition visits every cell once (round-robin), so
a disturbance spreads over all layers. Medians over the repetitions.

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
    parser.add_argument("--cores", default="0,1", help="server core, client core")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def measure(opts: argparse.Namespace, log: Any) -> Records:
    """Run every cell ``opts.reps`` times, round-robin; return the records."""
    layers = opts.layers.split(",")
    sizes = parse_sizes(opts.sizes)
    server_core, client_core = opts.cores.split(",")
    inflights = [PIPELINE_DEPTH] + ([] if opts.no_single else [1])
    servers = {
        layer: Worker(
            "bench.asgi_servers",
            ["--layer", layer, "--loop", opts.loop, "--core", server_core],
            log,
            wait=False,
        )
        for layer in layers
    }
    client = Worker(
        "bench.clients", ["--lib", "picows", "--loop", opts.loop, "--core", client_core], log
    )
    records: Records = []
    try:
        for worker in servers.values():
            worker.wait_ready()
        for rep in range(opts.reps):
            print(f"  repetition {rep + 1}/{opts.reps}", flush=True)
            for inflight in inflights:
                for size in sizes:
                    for layer in layers:
                        server = servers[layer]
                        cmd = {
                            "cmd": "echo",
                            "uri": f"ws://127.0.0.1:{server.info['port']}/",
                            "size": size,
                            "inflight": inflight,
                            "warmup": opts.warmup,
                            "duration": opts.duration,
                            "server_pid": server.pid,
                        }
                        result = client.request(cmd, timeout=60 + 10 * opts.duration)
                        record = {"layer": layer, "size": size, "inflight": inflight, **result}
                        record["rep"] = rep
                        records.append(record)
                        if opts.verbose:
                            print(f"    {record}", flush=True)
    finally:
        for worker in [*servers.values(), client]:
            worker.close()
    return records


def medians(records: Records, inflight: int, key: str) -> dict[tuple[str, int], float]:
    """Median of ``key`` per (layer, size); ``cpu`` is server CPU µs per message."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if r["inflight"] != inflight or "error" in r or not r.get("count"):
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
    layers = opts["layers"].split(",")
    sizes = parse_sizes(opts["sizes"])
    load = ", ".join(f"{x:.2f}" for x in meta["loadavg"])
    load_end = ", ".join(f"{x:.2f}" for x in data["loadavg_end"])
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        f"Run of {meta['date']} (revision {meta['revision']}), {meta['cpu']}, {meta['cores']} "
        f"cores, {meta['python']}, loop: {opts['loop']}; {versions}.",
        f"Load average {load} at the start, {load_end} at the end. "
        f"{opts['reps']} repetitions of {opts['duration']} s (after {opts['warmup']} s of "
        "warm-up) per cell, medians; picows client.",
        "",
        f"**Pipelined echo, {PIPELINE_DEPTH} messages in flight: messages per second**",
        "",
        *table(medians(records, PIPELINE_DEPTH, "rate"), layers, sizes, True),
        "",
        "**Server CPU time per echoed message, pipelined (µs; the ratio is wsend's ÷ the "
        "layer's: above 1 the layer uses less)**",
        "",
        *table(medians(records, PIPELINE_DEPTH, "cpu"), layers, sizes, False, digits=1),
    ]
    single = medians(records, 1, "rate")
    if single:
        lines += [
            "",
            "**One message in flight: round trips per second**",
            "",
            *table(single, layers, sizes, True),
        ]
    failed = [r for r in records if "error" in r]
    if failed:
        lines += ["", "Errors:", *(f"- {r['layer']} {r['size']} B: {r['error']}" for r in failed)]
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
