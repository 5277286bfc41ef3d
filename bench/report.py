"""Turns benchmark records into medians, ratios, markdown tables, plots and target statuses."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REFERENCE = "picows"
SUBJECT = "wsend"
ASYNCIO_VARIANT = "wsend-asyncio"
CALLBACKS_VARIANT = "wsend-callbacks"
ROW_ORDER = (
    "wsend",
    CALLBACKS_VARIANT,
    ASYNCIO_VARIANT,
    "picows",
    "aiohttp",
    "websockets",
    "raw",
)
ROW_LABEL = {
    "raw": "raw asyncio TCP (ceiling)",
    "floor": "os.write per socket (floor)",
    ASYNCIO_VARIANT: "wsend, asyncio transports",
    CALLBACKS_VARIANT: "wsend, callbacks (on_message)",
}
PACKAGES = ("wsend", "picows", "aiofastnet", "aiohttp", "websockets", "uvloop")
X = "\N{MULTIPLICATION SIGN}"  # as in "1.25x", the ratio sign
TARGETS_BEGIN = "<!-- targets:begin -->"
TARGETS_END = "<!-- targets:end -->"

Records = list[dict[str, Any]]


def size_label(size: int) -> str:
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size >> 10} KiB"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000} kB"
    return f"{size} B"


def machine(opts: dict[str, Any]) -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "revision": revision(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
        "loadavg": list(os.getloadavg()),
        "options": opts,
    }


def revision() -> str:
    """The git commit of the working tree, marked when wsend's sources have local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + (" with uncommitted changes in src/" if dirty else "")


def median(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def group(records: Records, scenario: str, *keys: str) -> dict[tuple[Any, ...], Records]:
    groups: dict[tuple[Any, ...], Records] = defaultdict(list)
    for r in records:
        if r.get("scenario") == scenario and "error" not in r:
            groups[tuple(r.get(k) for k in keys)].append(r)
    return groups


def errors(records: Records) -> list[str]:
    seen = []
    for r in records:
        if "error" in r:
            where = ", ".join(
                f"{k}={r[k]}"
                for k in (
                    "scenario",
                    "loop",
                    "server",
                    "client",
                    "size",
                    "inflight",
                    "tls",
                    "n",
                    "compression",
                )
                if k in r
            )
            line = f"{where}: {r['error']}"
            if line not in seen:
                seen.append(line)
    return seen


# ------------------------------------------------------------------ echo scenarios


def rate(rs: Records) -> float | None:
    return median(r["rate"] for r in rs)


def _cpu_per_message(rs: Records, key: str) -> float | None:
    """Median CPU time per message of the process ``key`` names, in µs (runs that measured it)."""
    return median(
        r[key] / r["count"] / 1000 for r in rs if r.get("count") and r.get(key) is not None
    )


def cpu_per_message(rs: Records) -> float | None:
    """Median server CPU time per echoed message, in microseconds."""
    return _cpu_per_message(rs, "server_cpu_ns")


def client_cpu_per_message(rs: Records) -> float | None:
    """Median client CPU time per round trip, in microseconds."""
    return _cpu_per_message(rs, "client_cpu_ns")


class Table:
    """Medians per (row, column) for one loop, with the ratio arithmetic."""

    def __init__(self, values: dict[tuple[str, Any], float], higher_is_better: bool) -> None:
        self.values = values
        self.higher_is_better = higher_is_better

    def get(self, row: str, col: Any) -> float | None:
        return self.values.get((row, col))

    def ratio(self, row: str, col: Any, ref: str) -> float | None:
        """> 1 means ``row`` does better than ``ref`` (faster, or cheaper)."""
        value, base = self.get(row, col), self.get(ref, col)
        if not value or not base:
            return None
        return value / base if self.higher_is_better else base / value

    def rows(self) -> list[str]:
        present = {row for row, _ in self.values}
        return [row for row in ROW_ORDER if row in present]

    def cols(self) -> list[Any]:
        return sorted({col for _, col in self.values})


def echo_table(
    records: Records,
    loop: str,
    tls: bool,
    inflight: int,
    role: str,
    metric: Callable[[Records], float | None] = rate,
    higher_is_better: bool = True,
) -> Table:
    """role="server": servers under the picows client; role="client": clients vs picows server."""
    values: dict[tuple[str, Any], float] = {}
    groups = group(records, "echo", "loop", "tls", "inflight", "server", "client", "size")
    for (lp, t, k, server, client, size), rs in groups.items():
        if (lp, t, k) != (loop, tls, inflight):
            continue
        if server == "raw" and client == "raw":
            row = "raw"
        elif role == "server" and client == REFERENCE:
            row = server
        elif role == "client" and server == REFERENCE:
            row = client
        else:
            continue
        value = metric(rs)
        if value is not None:
            values[(row, size)] = value
    return Table(values, higher_is_better)


def fmt_number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}{X}"


def markdown_table(table: Table, col_label: Callable[[Any], str], digits: int = 0) -> list[str]:
    cols = table.cols()
    head = "| | " + " | ".join(col_label(c) for c in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for row in table.rows():
        cells = []
        for col in cols:
            value = table.get(row, col)
            if value is None:
                cells.append("—")
                continue
            cells.append(
                f"{fmt_number(value, digits)} ({fmt_ratio(table.ratio(row, col, REFERENCE))}"
                f" · {fmt_ratio(table.ratio(row, col, SUBJECT))})"
            )
        lines.append(f"| {ROW_LABEL.get(row, row)} | " + " | ".join(cells) + " |")
    return lines


ECHO_SECTIONS = [
    # (title, tls, inflight, role, metric, higher is better, digits, unit, plot name)
    (
        "1a. Echo, one message in flight: servers (picows client)",
        False,
        1,
        "server",
        rate,
        True,
        0,
        "round trips/s",
        "echo1_servers",
    ),
    (
        "1b. Echo, one message in flight: clients (picows server)",
        False,
        1,
        "client",
        rate,
        True,
        0,
        "round trips/s",
        "echo1_clients",
    ),
    (
        "1b. Echo, one message in flight: client CPU per round trip",
        False,
        1,
        "client",
        client_cpu_per_message,
        False,
        1,
        "µs of client CPU per round trip",
        "echo1_clients_cpu",
    ),
    (
        "2. Pipelined echo, 64 in flight: server throughput (picows client)",
        False,
        64,
        "server",
        rate,
        True,
        0,
        "messages/s",
        "pipelined",
    ),
    (
        "2. Pipelined echo, 64 in flight: server CPU per message",
        False,
        64,
        "server",
        cpu_per_message,
        False,
        2,
        "µs of server CPU per message",
        "pipelined_cpu",
    ),
    (
        "7a. wss:// echo, one message in flight: servers (picows client)",
        True,
        1,
        "server",
        rate,
        True,
        0,
        "round trips/s",
        "tls_echo1_servers",
    ),
    (
        "7b. wss:// echo, one message in flight: clients (picows server)",
        True,
        1,
        "client",
        rate,
        True,
        0,
        "round trips/s",
        "tls_echo1_clients",
    ),
    (
        "7c. wss:// pipelined echo, 64 in flight: server throughput",
        True,
        64,
        "server",
        rate,
        True,
        0,
        "messages/s",
        "tls_pipelined",
    ),
    (
        "7c. wss:// pipelined echo: server CPU per message",
        True,
        64,
        "server",
        cpu_per_message,
        False,
        2,
        "µs of server CPU per message",
        "tls_pipelined_cpu",
    ),
]


# ------------------------------------------------------------------ other scenarios


def handshake_table(records: Records) -> Table:
    values = {
        (server, loop): rate(rs)
        for (loop, server), rs in group(records, "handshake", "loop", "server").items()
    }
    return Table({k: v for k, v in values.items() if v is not None}, True)


def broadcast_rows(records: Records) -> list[dict[str, Any]]:
    rows = []
    for (loop, n, server), rs in sorted(group(records, "broadcast", "loop", "n", "server").items()):
        rows.append(
            {
                "loop": loop,
                "n": n,
                "server": server,
                "latency": median(r["latency"] for r in rs),
                "send_time": median(r["send_time"] for r in rs),
                "cpu": median(r["server_cpu_ns"] for r in rs),
                "rss": median(r["rss_connected"] for r in rs),
            }
        )
    by_key = {(r["loop"], r["n"], r["server"]): r for r in rows}
    for r in rows:
        ws = by_key.get((r["loop"], r["n"], "websockets"))
        r["vs_websockets"] = ws["latency"] / r["latency"] if ws and r["latency"] else None
        floor = by_key.get((r["loop"], r["n"], "floor"))
        r["vs_floor"] = r["latency"] / floor["latency"] if floor and floor["latency"] else None
        r["cpu_vs_floor"] = r["cpu"] / floor["cpu"] if floor and floor["cpu"] else None
    return rows


def idle_rows(records: Records) -> dict[tuple[str, str, bool], float]:
    return {
        (loop, server, compression): median(r["per_connection"] for r in rs)
        for (loop, server, compression), rs in group(
            records, "idle", "loop", "server", "compression"
        ).items()
    }


# ------------------------------------------------------------------ targets


def targets(records: Records, loops: list[str]) -> list[tuple[str, str, str]]:
    """(target, status, evidence) for each target of the performance issue."""
    out = []

    def all_sizes(tables: dict[str, Table], row: str, minimum: float) -> tuple[str, str]:
        worst: tuple[float, str] | None = None
        tables = {lp: t for lp, t in tables.items() if {row, REFERENCE} <= set(t.rows())}
        for loop, table in tables.items():
            for size in table.cols():
                r = table.ratio(row, size, REFERENCE)
                if r is None:
                    return "NOT MEASURED", f"no {row} or picows result at {size_label(size)}"
                if worst is None or r < worst[0]:
                    worst = (r, f"{loop}, {size_label(size)}")
        if worst is None:
            return "NOT MEASURED", "run scenarios 1 and 2 with wsend and picows"
        status = "MET" if worst[0] >= minimum else "MISSED"
        return status, f"lowest {worst[0]:.2f}{X} picows ({worst[1]})"

    # Each of these is checked for both of wsend's APIs: coroutines (await recv/send) and
    # callbacks (on_message/send_nowait, the style of picows' own API).
    apis = ((SUBJECT, "coroutines"), (CALLBACKS_VARIANT, "callbacks"))
    tput = {lp: echo_table(records, lp, False, 64, "server") for lp in loops}
    tput = {lp: t for lp, t in tput.items() if t.values}
    for row, api in apis:
        status, ev = all_sizes(tput, row, 1.0)
        if status != "NOT MEASURED" and set(tput) != {"asyncio", "uvloop"}:
            ev += "; only " + ", ".join(tput) + " measured"
            status = status if status == "MISSED" else "MET (partly measured)"
        target = f"Pipelined echo server throughput ≥ 1.0{X} picows at every size, both loops"
        out.append((f"{target} ({api})", status, ev))

    clients = {lp: echo_table(records, lp, False, 1, "client") for lp in loops}
    clients = {lp: t for lp, t in clients.items() if t.values}
    for row, api in apis:
        out.append(
            (
                f"One-in-flight client round trips ≥ 1.0{X} picows' client ({api})",
                *all_sizes(clients, row, 1.0),
            )
        )

    cpu = {lp: echo_table(records, lp, False, 64, "server", cpu_per_message, False) for lp in loops}
    cpu = {lp: t for lp, t in cpu.items() if t.values}
    for row, api in apis:
        status, ev = all_sizes(cpu, row, 1.0)
        out.append(
            (
                f"Server CPU per echoed message ≤ picows' ({api})",
                status,
                ev.replace(f"{X} picows", f"{X} picows' efficiency"),
            )
        )

    idle = idle_rows(records)
    for compression, limit, text in (
        (False, 8 * 1024, "Memory per idle connection without compression ≤ 8 KiB"),
        (True, 64 * 1024, "Memory per idle connection with compression < 64 KiB"),
    ):
        # One row per transport: aiofastnet's (wsend's default when installed) costs more
        # memory per connection than asyncio's, and the trade-off should show.
        for server, transport in ((SUBJECT, "aiofastnet"), (ASYNCIO_VARIANT, "asyncio")):
            row = f"{text}, {transport} transports"
            values = {lp: v for (lp, s, c), v in idle.items() if s == server and c == compression}
            if not values:
                out.append((row, "NOT MEASURED", "run scenario 5"))
                continue
            worst_loop = max(values, key=lambda lp: values[lp])
            worst = values[worst_loop]
            ok = worst <= limit if not compression else worst < limit
            out.append(
                (
                    row,
                    "MET" if ok else "MISSED",
                    f"{worst / 1024:.1f} KiB per connection ({worst_loop})",
                )
            )

    rows = [r for r in broadcast_rows(records) if r["server"] == SUBJECT and r["n"] == 10_000]
    goal = f"Broadcast to 10,000 clients within 1.15{X} of the os.write floor (same run)"
    if not rows or not all(r["vs_floor"] for r in rows):
        out.append((goal, "NOT MEASURED", "run scenario 4 with 10,000 connections"))
    else:
        worst_row = max(rows, key=lambda r: r["vs_floor"])
        ratio = worst_row["vs_floor"]
        out.append(
            (
                goal,
                "MET" if ratio <= 1.15 else "MISSED",
                f"{fmt_ratio(ratio)} the floor's time ({worst_row['loop']}; server CPU "
                f"{fmt_ratio(worst_row['cpu_vs_floor'])})",
            )
        )
    return out


def targets_markdown(rows: list[tuple[str, str, str]], date: str) -> list[str]:
    lines = [
        f"Status from the run of {date} (`bench/results/latest.md`):",
        "",
        "| Target | Status | Measured |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | **{s}** | {e} |" for t, s, e in rows]
    return lines


def update_readme(readme: Path, rows: list[tuple[str, str, str]], date: str) -> None:
    if not readme.exists():
        return
    text = readme.read_text()
    if TARGETS_BEGIN not in text or TARGETS_END not in text:
        return
    block = "\n".join([TARGETS_BEGIN, *targets_markdown(rows, date), TARGETS_END])
    pattern = re.escape(TARGETS_BEGIN) + ".*?" + re.escape(TARGETS_END)
    readme.write_text(re.sub(pattern, lambda _: block, text, flags=re.S))


# ------------------------------------------------------------------ plots


def plot_ratios(path: Path, title: str, tables: dict[str, Table]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = {lp: t for lp, t in tables.items() if t.values}
    if not tables:
        return False
    fig, axes = plt.subplots(
        1, len(tables), figsize=(max(9.0, 6.5 * len(tables)), 4.2), squeeze=False
    )
    for ax, (loop, table) in zip(axes[0], tables.items(), strict=True):
        rows, cols = table.rows(), table.cols()
        width = 0.8 / max(1, len(rows))
        for i, row in enumerate(rows):
            ys = [table.ratio(row, c, REFERENCE) or 0 for c in cols]
            xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(cols))]
            ax.bar(xs, ys, width, label=ROW_LABEL.get(row, row))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(cols)), [size_label(c) for c in cols])
        ax.set_ylabel(f"{X} picows (higher is better)")
        ax.set_title(f"{loop} loop")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_bars(path: Path, title: str, ylabel: str, series: dict[str, dict[str, float]]) -> bool:
    """series: {group label: {contender: value}} as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        return False
    groups = list(series)
    names = [n for n in ROW_ORDER if any(n in s for s in series.values())]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 3), 4))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, [series[g].get(name, 0) for g in groups], width, label=name)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ------------------------------------------------------------------ the report


def write(out: Path, data: dict[str, Any], readme: Path | None) -> Path:
    records: Records = data["records"]
    info = data["machine"]
    opts = info["options"]
    loops: list[str] = opts["loops"]
    lines = ["# wsend benchmark results", ""]
    lines += [
        f"- Date: {info['date']}",
        f"- CPU: {info['cpu']}, {info['cores']} cores; server pinned to core {opts['cores'][0]}, "
        f"clients to core {opts['cores'][1]}",
        f"- OS: {info['kernel']}; {info['python']}",
        f"- wsend revision: {info.get('revision', 'unknown')}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        f"- Event loops: {', '.join(loops)}",
        f"- Repetitions: {opts['reps']} {X} {opts['duration']} s measured after {opts['warmup']} s "
        f"of warm-up, contenders interleaved; medians shown"
        + (
            " (**quick mode: one repetition, numbers are only a smoke test**)"
            if opts["quick"]
            else ""
        ),
        f"- Load average at start / end: {info['loadavg'][0]:.2f} / "
        f"{info.get('loadavg_end', info['loadavg'])[0]:.2f}",
        f"- Command: `{opts['command']}`",
        "- C allocator of every worker: "
        + (
            ", ".join(f"`{k}={v}`" for k, v in opts["allocator"].items())
            if isinstance(opts.get("allocator"), dict)
            else "glibc's defaults"
        ),
        "",
        f"Cells read `median ({X} picows · {X} wsend)`. A ratio above 1 means the row does better "
        "than the reference: faster, or less CPU per message. See `bench/README.md`.",
        "",
    ]
    date = info["date"]
    target_rows = targets(records, loops)
    lines += ["## Targets", "", *targets_markdown(target_rows, date)[2:], ""]

    plots = []
    for title, tls, inflight, role, metric, hib, digits, unit, name in ECHO_SECTIONS:
        tables = {lp: echo_table(records, lp, tls, inflight, role, metric, hib) for lp in loops}
        if not any(t.values for t in tables.values()):
            continue
        lines += [f"## {title}", "", f"Unit: {unit}.", ""]
        for loop, table in tables.items():
            if table.values:
                lines += [f"**{loop} loop**", "", *markdown_table(table, size_label, digits), ""]
        png = out / f"{name}.png"
        if plot_ratios(png, f"{title}: ratio to picows ({unit})", tables):
            plots.append(png.name)
            lines += [f"![{title}]({png.name})", ""]

    hs = handshake_table(records)
    if hs.values:
        lines += [
            "## 6. Handshakes per second (open, handshake, close; 8 at a time, picows client)",
            "",
            *markdown_table(hs, lambda loop: f"{loop} loop"),
            "",
        ]
        series = {
            f"{lp} loop": {s: v for (s, l2), v in hs.values.items() if l2 == lp} for lp in loops
        }
        if plot_bars(
            out / "handshakes.png",
            "Handshakes per second",
            "handshakes/s",
            {k: v for k, v in series.items() if v},
        ):
            lines += ["![handshakes](handshakes.png)", ""]

    bc = broadcast_rows(records)
    if bc:
        lines += [
            "## 4. Broadcast: one 64-byte message to every connected client",
            "",
            "Time from the start of the broadcast until the last client has the message "
            f"(clients: one picows process); `{X} websockets` is websockets' time divided by "
            "the row's (above 1 = faster). wsend uses `wsend.broadcast`, websockets "
            "`websockets.broadcast`; picows and aiohttp loop over their connections. The floor "
            "row writes a prebuilt frame to each socket with `os.write` and nothing else: the "
            "system calls alone, which bound every library; it uses wsend's server and "
            "connections, in turns with `wsend.broadcast` (one round each per repetition). "
            f"`{X} floor`: the row's time (and server CPU) divided by the floor's (1.00 = the "
            "floor).",
            "",
            f"| loop | clients | server | time to all (ms) | {X} websockets | {X} floor "
            f"(time) | {X} floor (CPU) | broadcast call (ms) | server CPU (ms) | server RSS "
            "with clients (MiB) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in bc:
            lines.append(
                f"| {r['loop']} | {r['n']:,} | {ROW_LABEL.get(r['server'], r['server'])} | "
                f"{r['latency'] * 1000:,.1f} | "
                f"{fmt_ratio(r['vs_websockets'])} | {fmt_ratio(r['vs_floor'])} | "
                f"{fmt_ratio(r['cpu_vs_floor'])} | {r['send_time'] * 1000:,.1f} | "
                f"{(r['cpu'] or 0) / 1e6:,.1f} | {r['rss'] / 2**20:,.1f} |"
            )
        lines.append("")
        series = {f"{r['loop']}, {r['n']:,}": {} for r in bc}
        for r in bc:
            series[f"{r['loop']}, {r['n']:,}"][r["server"]] = r["latency"] * 1000
        if plot_bars(
            out / "broadcast.png",
            "Broadcast: time until every client has it",
            "ms (lower is better)",
            series,
        ):
            lines += ["![broadcast](broadcast.png)", ""]

    idle = idle_rows(records)
    if idle:
        n = max(r["n"] for r in records if r.get("scenario") == "idle" and "n" in r)
        lines += [
            f"## 5. Memory per idle connection (server RSS growth per connection, "
            f"{n:,} connections)",
            "",
            "| loop | server | without compression (KiB) | permessage-deflate negotiated (KiB) |",
            "|---|---|---|---|",
        ]
        for loop in loops:
            for server in ROW_ORDER:
                a, b = idle.get((loop, server, False)), idle.get((loop, server, True))
                if a is None and b is None:
                    continue
                fa = "—" if a is None else f"{a / 1024:,.1f}"
                fb = "n/a" if server == "picows" else ("—" if b is None else f"{b / 1024:,.1f}")
                lines.append(f"| {loop} | {ROW_LABEL.get(server, server)} | {fa} | {fb} |")
        lines.append("")
        series = {}
        for (loop, server, comp), v in idle.items():
            label = f"{loop}, {'deflate' if comp else 'no compression'}"
            series.setdefault(label, {})[server] = v / 1024
        if plot_bars(
            out / "idle_memory.png",
            "Memory per idle connection",
            "KiB (lower is better)",
            dict(sorted(series.items())),
        ):
            lines += ["![idle memory](idle_memory.png)", ""]

    problems = errors(records)
    if problems:
        lines += ["## Errors", "", *[f"- {p}" for p in problems], ""]

    path = out / "latest.md"
    path.write_text("\n".join(lines))
    if readme is not None:
        update_readme(readme, target_rows, date)
    return path
