"""``python -m bench``: run the benchmark scenarios and write bench/results/latest.md.

``bench/run`` first installs the contenders (``pip install -e '.[bench]'``), then runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from . import harness, report

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
ALL_SCENARIOS = "1,2,3,4,5,6,7"
SCENARIOS = """scenarios:
  1  echo, one message in flight: servers under the picows client, clients against the
     picows server
  2  pipelined echo, 64 messages in flight: messages/s and server CPU per message
  3  the ceiling: length-prefixed echo over raw asyncio TCP (added to the tables of 1, 2, 7)
  4  broadcast of one message to 1,000 and 10,000 clients: time until all have it
  5  memory per idle connection, with and without permessage-deflate
  6  handshakes per second
  7  scenarios 1 and 2 over wss:// (self-signed certificate, clients don't verify)
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark wsend side by side with picows, aiohttp and websockets.",
        epilog=SCENARIOS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenarios", default=ALL_SCENARIOS, help="comma-separated (default: all)")
    parser.add_argument(
        "--sizes",
        default="64,256,8k,100k,1m",
        help="message sizes, with k/m suffixes for KiB/MiB (default: %(default)s)",
    )
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument(
        "--libs",
        default=",".join(harness.LIBS),
        help="contenders (default: %(default)s); picows always serves as the fixed counterpart",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5; quick 1)")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds measured per repetition (default 0.3; quick 0.5)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of warm-up before each measurement (default 0.15; quick 0.1)",
    )
    parser.add_argument(
        "--connections",
        default=None,
        help="client counts for scenarios 4 and 5 (default 1000,10000; "
        "quick 100,1000); scenario 5 uses the largest",
    )
    parser.add_argument("--cores", default="0,1", help="server core, client core (default 0,1)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 1 repetition of 0.5 s, fewer connections"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--verbose", action="store_true", help="print every measurement")
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="run the workers with glibc's default allocator settings (by default, every "
        "worker keeps freed memory for reuse: MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild the report and plots from OUT/latest.json",
    )
    return parser.parse_args(argv)


def options(args: argparse.Namespace) -> harness.Options:
    quick = args.quick
    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(libs) - set(harness.LIBS)
    if unknown:
        raise SystemExit(f"unknown contenders: {', '.join(sorted(unknown))}")
    if harness.REFERENCE not in libs:
        libs.append(harness.REFERENCE)  # the reference is needed for every ratio
    cores = tuple(int(c) for c in args.cores.split(","))
    if len(cores) != 2:
        raise SystemExit("--cores takes two numbers: server core, client core")
    connections = args.connections or ("100,1000" if quick else "1000,10000")
    return harness.Options(
        scenarios={int(s) for s in args.scenarios.split(",") if s.strip()},
        sizes=harness.parse_sizes(args.sizes),
        loops=["asyncio", "uvloop"] if args.loop == "both" else [args.loop],
        libs=[lib for lib in harness.LIBS if lib in libs],
        reps=args.reps or (1 if quick else 5),
        duration=args.duration or (0.5 if quick else 0.3),
        warmup=args.warmup if args.warmup is not None else (0.1 if quick else 0.15),
        connections=sorted(harness.parse_ints(connections)),
        cores=(cores[0], cores[1]),
        quick=quick,
        verbose=args.verbose,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        data = json.loads((args.out / "latest.json").read_text())
        print(report.write(args.out, data, None))
        return 0
    opts = options(args)
    if args.default_allocator:
        harness.ALLOCATOR_ENV.clear()
    if "uvloop" in opts.loops:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise SystemExit("uvloop is not installed: pip install -e '.[bench]'") from None
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    info = report.machine(
        {
            "scenarios": sorted(opts.scenarios),
            "sizes": opts.sizes,
            "loops": opts.loops,
            "libs": opts.libs,
            "reps": opts.reps,
            "duration": opts.duration,
            "warmup": opts.warmup,
            "connections": opts.connections,
            "cores": list(opts.cores),
            "quick": opts.quick,
            "allocator": dict(harness.ALLOCATOR_ENV) or "glibc defaults",
            "command": command.strip(),
        }
    )
    started = time.monotonic()
    print(
        f"wsend benchmarks: scenarios {sorted(opts.scenarios)}, loops {opts.loops}, "
        f"{opts.reps} x {opts.duration} s; worker logs in {out / 'workers.log'}",
        flush=True,
    )
    records = harness.run(opts, str(out / "workers.log"))
    info["loadavg_end"] = list(os.getloadavg())
    info["seconds"] = round(time.monotonic() - started, 1)
    data = {"machine": info, "records": records}
    (out / "latest.json").write_text(json.dumps(data, indent=1))
    # Only a full-length run into the default directory may restate the targets in the README.
    readme = HERE / "README.md" if (out.resolve() == DEFAULT_OUT and not opts.quick) else None
    path = report.write(out, data, readme)
    print(f"done in {info['seconds']} s: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
