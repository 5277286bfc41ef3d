"""Profile one server under pipelined echo with cProfile; print the top functions by self time.

    python -m bench.profile                       # wsend, 64 B, 64 in flight, 5 s, asyncio
    python -m bench.profile --lib picows --size 8k --loop uvloop --top 25
    python -m bench.profile --asgi wsend --loop uvloop   # uvicorn with wsend's ASGI layer

The server runs in its own process pinned to core 0 with the profiler enabled (which slows it
down: compare the shape, not the absolute rate); a picows client on core 1 keeps the pipeline
full. The full statistics are saved (``--save``) for ``python -m pstats`` or snakeviz.
"""

from __future__ import annotations

import argparse
import io
import pstats
import re
import tempfile
from pathlib import Path

from .common import uri_for
from .harness import PIPELINE_DEPTH, Worker, parse_sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lib", default="wsend")
    parser.add_argument(
        "--asgi",
        metavar="LAYER",
        default=None,
        help="profile uvicorn serving the ASGI echo app with this WebSocket layer instead "
        "(wsend, websockets, websockets-sansio, wsproto; see bench/asgi.py)",
    )
    parser.add_argument("--size", default="64")
    parser.add_argument("--inflight", type=int, default=PIPELINE_DEPTH)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default: tottime)")
    parser.add_argument("--save", type=Path, default=None, help="where to keep the .prof file")
    args = parser.parse_args(argv)

    size = parse_sizes(args.size)[0]
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "log", "w") as log:
        prof = args.save or Path(tmp) / "server.prof"
        common = ["--loop", args.loop, "--core", "0", "--profile", str(prof)]
        if args.asgi:
            server = Worker("bench.asgi_servers", ["--layer", args.asgi, *common], log)
            args.lib = f"uvicorn + {args.asgi}"
        else:
            server = Worker("bench.servers", ["--lib", args.lib, *common], log)
        client = Worker(
            "bench.clients", ["--lib", "picows", "--loop", args.loop, "--core", "1"], log
        )
        try:
            result = client.request(
                {
                    "cmd": "echo",
                    "uri": uri_for("wsend", server.info["port"], False),
                    "size": size,
                    "inflight": args.inflight,
                    "warmup": 0.2,
                    "duration": args.seconds,
                    "server_pid": server.pid,
                }
            )
        finally:
            client.close()
            server.close()  # the server writes the profile as it stops
        if "error" in result:
            raise SystemExit(result["error"])
        print(
            f"{args.lib} server, {args.loop} loop, {size} B, {args.inflight} in flight, "
            f"under cProfile: {result['rate']:,.0f} messages/s, "
            f"{result['server_cpu_ns'] / result['count'] / 1000:.1f} µs CPU per message"
        )
        print_top(pstats.Stats(str(prof), stream=io.StringIO()), args.sort, args.top)


def short(filename: str) -> str:
    """``.../src/wsend/protocol/frames.py`` -> ``wsend/protocol/frames.py``, and so on."""
    if "/bench/" in filename:
        return "bench/" + filename.rsplit("/bench/", 1)[1]
    for marker in ("/site-packages/", "/src/"):
        if marker in filename:
            return filename.rsplit(marker, 1)[1]
    return re.sub(r"^.*/lib/python3\.\d+/", "", filename)


def print_top(stats: pstats.Stats, sort: str, top: int) -> None:
    """A markdown table of the top functions; waiting in epoll/select is idle time, not work."""
    column = {"ncalls": 1, "tottime": 2, "cumtime": 3}.get(sort, 2)
    rows = []
    total = 0.0
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in entries:
        if name.startswith(("<method 'poll'", "<method 'select'", "<method 'control'")):
            continue  # the event loop waiting for I/O
        total += tottime
        where = f"{short(filename)}:{line}({name})" if line else name
        rows.append((where, ncalls, tottime, cumtime))
    rows.sort(key=lambda row: row[column], reverse=True)
    print(f"Busy time (excluding waiting for I/O): {total:.3f} s\n")
    print("| function | calls | self s | self % of busy | µs per call (self) | cumulative s |")
    print("|---|---|---|---|---|---|")
    for where, ncalls, tottime, cumtime in rows[:top]:
        print(
            f"| `{where}` | {ncalls:,} | {tottime:.3f} | {100 * tottime / total:.1f} | "
            f"{1e6 * tottime / max(ncalls, 1):.2f} | {cumtime:.3f} |"
        )


if __name__ == "__main__":
    main()
