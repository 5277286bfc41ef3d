"""The hub fan-out report: medians, ratios, markdown and plots (``bench/hub_fanout.py``)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

LABEL = {
    "hub": "wsend hub",
    "broadcast": "wsend.broadcast (bare)",
    "socketio": "python-socketio",
}
X = "\N{MULTIPLICATION SIGN}"


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


Key = tuple[str, int, int, str]  # setup, subscribers, window, system


def summarize(records: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """(setup, n, window, system) -> medians over the repetitions."""
    groups: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "fanout":
            groups[(r["setup"], r["n"], r["window"], r["system"])].append(r)
    rows = {}
    for key, rs in groups.items():
        rows[key] = {
            "rate": _median([r["deliveries"] / r["elapsed"] for r in rs if r["elapsed"]]),
            "p50": _median([r["p50"] * 1000 for r in rs if r["p50"] is not None]),
            "p99": _median([r["p99"] * 1000 for r in rs if r["p99"] is not None]),
            "cpu": _median(
                [r["server_cpu_ns"] / 1000 / r["deliveries"] for r in rs if r["deliveries"]]
            ),
            "client_cpu": _median(
                [r["client_cpu_ns"] / 1000 / r["deliveries"] for r in rs if r["deliveries"]]
            ),
            "delivered": sum(r["deliveries"] for r in rs),
            "expected": sum(r["expected"] for r in rs),
            "reps": len(rs),
            "messages": rs[0]["messages"],
        }
    return rows


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}{X}"


def goals(rows: dict[Key, dict[str, Any]]) -> list[str]:
    lines = [
        "| goal | setup | subscribers | window | measured | status |",
        "|---|---|---|---|---|---|",
    ]
    for (setup, n, window, system), row in sorted(rows.items()):
        if system != "hub" or not row["rate"]:
            continue
        sio = rows.get((setup, n, window, "socketio"), {}).get("rate")
        bare = rows.get((setup, n, window, "broadcast"), {}).get("rate")
        where = f"{setup} | {n:,} | {window}"
        if sio:
            ratio = row["rate"] / sio
            status = "**MET**" if ratio >= 5 else "**MISSED**"
            lines.append(f"| hub ≥ 5{X} python-socketio | {where} | {ratio:.2f}{X} | {status} |")
        if bare:
            ratio = bare / row["rate"]
            status = "**MET**" if ratio <= 1.5 else "**MISSED**"
            lines.append(
                f"| hub within 1.5{X} of bare broadcast | {where} | bare is {ratio:.2f}{X} "
                f"the hub | {status} |"
            )
    return lines


def header(info: dict[str, Any]) -> list[str]:
    options = info["options"]
    load = ", ".join(f"{x:.2f}" for x in info["loadavg"])
    load_end = ", ".join(f"{x:.2f}" for x in info.get("loadavg_end", []))
    return [
        "# Hub fan-out: one publisher, one channel, many subscribers",
        "",
        f"Run of {info['date']} (revision {info['revision']}), {info['cpu']}, "
        f"{info['cores']} cores, {info['python']}, {info['kernel']}; load average {load} at "
        f"start, {load_end} at end; {info.get('seconds', '?')} s. Event loop: "
        f"{options['loop']}. Command: `{options['command'].strip()}`.",
        "",
        "Publications of 100 characters. *Window*: publications in flight (the publisher "
        "sends the next one as soon as one has reached every subscriber); with 1, the "
        "latency is that of one fan-out, with more it includes the wait behind the others. "
        f"Medians over {options['reps']} interleaved repetitions. *Deliveries/s*: "
        f"publications {X} subscribers ÷ (first send → last receipt). *Latency*: publisher's "
        "send → subscriber's receipt, every delivery. *Server CPU*: all server processes' CPU "
        "time per delivery (µs); *client CPU*: the client process's (the same code for every "
        "system).",
        "",
    ]


def table(setup: str, rows: dict[Key, dict[str, Any]]) -> list[str]:
    lines = [
        f"## {setup}",
        "",
        f"| subscribers | window | system | deliveries/s | {X} python-socketio | bare ÷ row | "
        "p50 latency (ms) | p99 latency (ms) | server CPU (µs/delivery) | "
        "client CPU (µs/delivery) | delivered |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (s, n, window, system), row in sorted(rows.items(), key=lambda i: i[0][1:]):
        if s != setup:
            continue
        sio = rows.get((s, n, window, "socketio"), {}).get("rate")
        bare = rows.get((s, n, window, "broadcast"), {}).get("rate")
        lines.append(
            f"| {n:,} | {window} | {LABEL.get(system, system)} | {_fmt(row['rate'])} | "
            f"{_ratio(row['rate'], sio)} | {_ratio(bare, row['rate'])} | "
            f"{_fmt(row['p50'], 1)} | {_fmt(row['p99'], 1)} | {_fmt(row['cpu'], 1)} | "
            f"{_fmt(row['client_cpu'], 1)} | {row['delivered']:,}/{row['expected']:,} |"
        )
    return [*lines, ""]


def memory_table(memory: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Memory per idle subscriber (1 node)",
        "",
        "Server RSS growth per subscriber between 100 and N subscribers, after "
        "`gc.collect()`: a connection subscribed to the channel (hub: a session with one "
        "subscription; bare: a wsend connection in a set; python-socketio: an Engine.IO "
        "socket and a Socket.IO client in the room).",
        "",
        "| system | subscribers | KiB per subscriber | server RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for r in memory:
        lines.append(
            f"| {LABEL.get(r['system'], r['system'])} | {r['n']:,} | "
            f"{r['per_subscriber'] / 1024:.1f} | {r['rss_after'] / 2**20:.0f} |"
        )
    return [*lines, ""]


def write(out: Path, data: dict[str, Any]) -> Path:
    records = data["records"]
    rows = summarize(records)
    lines = header(data["machine"])
    for setup in dict.fromkeys(k[0] for k in sorted(rows, key=lambda k: (k[1], k[0]))):
        lines += table(setup, rows)
    lines += ["## Goals", "", *goals(rows), ""]
    memory = [r for r in records if r["kind"] == "memory"]
    if memory:
        lines += memory_table(memory)
    if plot(out, rows):
        lines += ["![deliveries per second and latency](hub_fanout.png)", ""]
    path = out / "hub_fanout.md"
    path.write_text("\n".join(lines))
    return path


def plot(out: Path, rows: dict[Key, dict[str, Any]]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    setups = list(dict.fromkeys(k[0] for k in rows))
    cases = sorted({(k[1], k[2]) for k in rows})  # (subscribers, window)
    systems = [s for s in LABEL if any(k[3] == s for k in rows)]
    fig, axes = plt.subplots(2, len(setups), figsize=(6.5 * len(setups), 7.5), squeeze=False)
    width = 0.8 / max(1, len(systems))
    for col, setup in enumerate(setups):
        for row_index, (metric, ylabel) in enumerate(
            [("rate", "deliveries/s"), ("p99", "p99 latency (ms, log scale)")]
        ):
            ax = axes[row_index][col]
            for i, system in enumerate(systems):
                values = [rows.get((setup, n, w, system), {}).get(metric) or 0 for n, w in cases]
                xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(cases))]
                ax.bar(xs, values, width, label=LABEL[system])
            labels = [f"{n:,} subs\nwindow {w}" for n, w in cases]
            ax.set_xticks(range(len(cases)), labels)
            ax.set_ylabel(ylabel)
            if metric == "p99":
                ax.set_yscale("log")
            ax.set_title(setup)
            ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend()
    fig.suptitle("Fan-out of 100 B publications: wsend hub, bare broadcast, python-socketio")
    fig.tight_layout()
    fig.savefig(out / "hub_fanout.png", dpi=100)
    plt.close(fig)
    return True
