"""What ``wsend bench`` measures and how it reports it: a text summary, JSON, a histogram."""

from __future__ import annotations

import math
import statistics
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchResult", "check_plotting", "percentile", "plot_latencies", "progress_line"]

# How many distinct error messages the summary lists.
MAX_ERROR_SAMPLES = 5


def percentile(ordered: array[float] | list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values (``fraction`` in 0..1); 0.0 when empty."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class BenchResult:
    """Measurements of a benchmark run.

    Attributes:
        url, connections, size, binary, rate: the run's settings (``rate`` per connection,
            ``None`` for one message in flight per connection).
        elapsed: seconds from the first send to the end of the run.
        latencies: round trips of the messages echoed back, in seconds.
        errors: failed connections, dropped connections and wrong echoes.
        error_samples: the first distinct error messages.
    """

    url: str
    connections: int
    size: int
    binary: bool
    rate: float | None = None
    elapsed: float = 0.0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        """Count an error, keeping its message if it is new."""
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES and message not in self.error_samples:
            self.error_samples.append(message)

    @property
    def messages(self) -> int:
        """Messages sent and echoed back."""
        return len(self.latencies)

    def as_dict(self) -> dict[str, Any]:
        """The numbers of the summary, for ``--json`` (times in ms, MB = 10**6 bytes)."""
        ordered = sorted(self.latencies)
        elapsed = self.elapsed or float("inf")
        ms = [round(percentile(ordered, f) * 1000, 3) for f in (0.5, 0.9, 0.99, 1.0)]
        return {
            "url": self.url,
            "connections": self.connections,
            "size": self.size,
            "type": "binary" if self.binary else "text",
            "rate_per_connection": self.rate,
            "duration_s": round(self.elapsed, 3),
            "messages": self.messages,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "throughput": {
                "msgs_per_s": round(self.messages / elapsed, 1),
                "mb_per_s": round(self.messages * self.size / elapsed / 1e6, 3),
            },
            "latency_ms": {
                "min": round(ordered[0] * 1000, 3) if ordered else 0.0,
                "mean": round(sum(ordered) / len(ordered) * 1000, 3) if ordered else 0.0,
                "p50": ms[0],
                "p90": ms[1],
                "p99": ms[2],
                "max": ms[3],
            },
        }

    def summary(self) -> str:
        """A few aligned lines for people."""
        d = self.as_dict()
        lat, thr = d["latency_ms"], d["throughput"]
        pace = f", {self.rate:g} msg/s each" if self.rate else ""
        lines = [
            f"target      {self.url}",
            f"load        {self.connections} connections, {self.size} B {d['type']} messages"
            f"{pace}, {d['duration_s']:.2f} s",
            f"messages    {self.messages:,} echoed, {self.errors} errors",
            f"throughput  {thr['msgs_per_s']:,.0f} msg/s, {thr['mb_per_s']:.2f} MB/s",
            f"latency     p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms, "
            f"p99 {lat['p99']:.3f} ms, max {lat['max']:.3f} ms",
        ]
        lines += [f"error       {sample}" for sample in self.error_samples]
        return "\n".join(lines)


def progress_line(
    result: BenchResult,
    elapsed: float,
    duration: float,
    rate: float,
    recent: list[float],
    width: int = 80,
) -> str:
    """The live progress line of a run, fitted to ``width`` columns: a bar, the time, the
    messages so far, the current ``rate`` (messages per second) and the median of the
    ``recent`` round trips (seconds)."""
    done = min(1.0, elapsed / duration) if duration > 0 else 1.0
    p50 = f"p50 {statistics.median(recent) * 1000:.2f} ms" if recent else "p50 -"
    errors = f"{result.errors} error{'' if result.errors == 1 else 's'}"
    stats = (
        f" {done:4.0%}  {elapsed:4.1f}/{duration:g} s  {result.messages:,} msgs"
        f"  {rate:,.0f} msg/s  {p50}  {errors}"
    )
    bar_width = max(10, min(40, width - len(stats) - 3))
    filled = round(bar_width * done)
    return f"[{'#' * filled}{'-' * (bar_width - filled)}]{stats}"[: max(20, width - 1)]


def check_plotting() -> None:
    """Make sure matplotlib can be imported.

    Raises:
        ImportError: matplotlib is missing (``pip install 'wsend[plot]'``).
    """
    import matplotlib

    matplotlib.use("Agg")


def plot_latencies(result: BenchResult, path: Path) -> None:
    """Write a histogram of the latencies, with the p50/p90/p99 marked, to a PNG file.

    Raises:
        OSError: the file could not be written.
    """
    from matplotlib.figure import Figure

    values = [x * 1000 for x in result.latencies]
    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    axes = figure.subplots()
    axes.hist(values or [0.0], bins=min(100, max(10, len(values) // 20)), color="#4c72b0")
    lat = result.as_dict()["latency_ms"]
    for name, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
        axes.axvline(lat[name], color="#c44e52", linestyle=style, label=f"{name} {lat[name]} ms")
    axes.set_xlabel("round-trip latency (ms)")
    axes.set_ylabel("messages")
    axes.set_title(
        f"{result.url}: {result.connections} connections, {result.size} B, "
        f"{result.messages:,} messages"
    )
    axes.legend()
    figure.savefig(path, format="png")
