"""``wsend bench URL``: open N connections to an echo server and measure round trips.

Without ``--rate``, each connection keeps one message in flight: send, wait for the echo,
repeat (closed loop: the numbers show the best the pair can do). With ``--rate``, each
connection sends on a fixed schedule whatever the replies do, and latency is measured from
the scheduled send time, so that a stalled server shows up in the percentiles instead of
slowing the load down (coordinated omission, as wrk2 avoids it).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import shutil
import sys
import time
from collections import deque
from pathlib import Path

import click

from .. import connect
from ..asyncio.client import ClientConnection
from ..exceptions import ConnectionClosed, WebSocketError
from .bench_report import BenchResult, check_plotting, plot_latencies, progress_line
from .display import describe_close
from .errors import EXIT_CODES_HELP, CliError, ExitCode, check_url, open_error
from .options import SIZE, ClientSettings, client_options, on_stop_signals

__all__ = ["command", "make_payload", "run"]

EPILOG = f"""\b
Examples:
  wsend echo -q --port 8765 &
  wsend bench ws://127.0.0.1:8765                      # 10 connections, 10 s, 64 B
  wsend bench ws://127.0.0.1:8765 -c 100 -s 1k -d 30 --rate 50
  wsend bench ws://127.0.0.1:8765 --json --plot latency.png

The target must echo every message (wsend echo does). Latency is the round trip of a
message, in ms; MB/s counts the payload one way (1 MB = 10^6 bytes). A progress bar is
shown on stderr when it is a terminal; Ctrl-C stops early and still prints the summary.

{EXIT_CODES_HELP}
(Exit code 1 here: the run finished but some messages or connections failed.)
"""

# Seconds allowed, after the duration, for the replies still in flight.
DRAIN_TIMEOUT = 2.0
# Seconds allowed to close the connections at the end.
CLOSE_TIMEOUT = 2.0


def make_payload(size: int, binary: bool) -> str | bytes:
    """Random bytes, or random ASCII letters and digits for text, of ``size`` bytes."""
    data = os.urandom(size)
    if binary:
        return data
    return base64.b64encode(data)[:size].decode().replace("+", "x").replace("/", "y")


async def run(
    url: str,
    settings: ClientSettings,
    result: BenchResult,
    *,
    duration: float,
    progress: bool = False,
) -> BenchResult:
    """Run the benchmark described by ``result`` for ``duration`` seconds; fill ``result``.

    Raises:
        CliError: no connection could be opened (exit code 3 or 4).
    """
    payload = make_payload(result.size, result.binary)
    conns = await _open_all(url, settings, result)
    stop = asyncio.Event()
    undo = on_stop_signals(stop.set)
    start = time.perf_counter()
    workers = [asyncio.create_task(_worker(ws, payload, result, stop)) for ws in conns]
    ticker = asyncio.create_task(_progress(result, duration, stop)) if progress else None
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except TimeoutError:
        pass
    finally:
        stop.set()
        undo()
    await asyncio.wait(workers, timeout=DRAIN_TIMEOUT + 1)
    result.elapsed = time.perf_counter() - start
    for task in [*workers, *([ticker] if ticker else [])]:
        task.cancel()
    await asyncio.gather(*workers, *([ticker] if ticker else []), return_exceptions=True)
    await asyncio.wait([asyncio.create_task(ws.close()) for ws in conns], timeout=CLOSE_TIMEOUT)
    return result


async def _open_all(
    url: str, settings: ClientSettings, result: BenchResult
) -> list[ClientConnection]:
    kwargs = settings.connect_kwargs(url)
    outcomes = await asyncio.gather(
        *(connect(url, **kwargs) for _ in range(result.connections)), return_exceptions=True
    )
    conns = [ws for ws in outcomes if isinstance(ws, ClientConnection)]
    failures = [exc for exc in outcomes if isinstance(exc, BaseException)]
    for exc in failures:
        if not isinstance(exc, OSError | WebSocketError):
            raise exc
        result.error(open_error(url, exc).format_message())
    if not conns:
        raise open_error(url, failures[0])
    return conns


async def _worker(
    ws: ClientConnection, payload: str | bytes, result: BenchResult, stop: asyncio.Event
) -> None:
    try:
        if result.rate:
            await _paced(ws, payload, result, stop, 1 / result.rate)
        else:
            await _one_in_flight(ws, payload, result, stop)
    except ConnectionClosed as exc:
        result.error(f"connection closed: {describe_close(exc.code, exc.reason)}")


async def _one_in_flight(
    ws: ClientConnection, payload: str | bytes, result: BenchResult, stop: asyncio.Event
) -> None:
    clock = time.perf_counter
    while not stop.is_set():
        sent_at = clock()
        await ws.send(payload)
        reply = await ws.recv()
        _record(result, reply == payload, clock() - sent_at)


async def _paced(
    ws: ClientConnection,
    payload: str | bytes,
    result: BenchResult,
    stop: asyncio.Event,
    interval: float,
) -> None:
    scheduled: deque[float] = deque()
    drained = asyncio.Event()
    reader = asyncio.create_task(_read_echoes(ws, payload, result, scheduled, drained))
    try:
        next_at = time.perf_counter()
        while not stop.is_set() and not reader.done():
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            scheduled.append(next_at)
            await ws.send(payload)
            next_at += interval
        await _drain(reader, scheduled, drained, result)
    finally:
        reader.cancel()
    (outcome,) = await asyncio.gather(reader, return_exceptions=True)
    if isinstance(outcome, ConnectionClosed):
        raise outcome


async def _drain(
    reader: asyncio.Task[None],
    scheduled: deque[float],
    drained: asyncio.Event,
    result: BenchResult,
) -> None:
    """Wait up to :data:`DRAIN_TIMEOUT` for the replies still in flight."""
    if not scheduled:
        return
    drained.clear()
    waiter = asyncio.create_task(drained.wait())
    await asyncio.wait({reader, waiter}, timeout=DRAIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if scheduled and not reader.done():
        result.error(f"{len(scheduled)} replies still missing at the end")


async def _read_echoes(
    ws: ClientConnection,
    payload: str | bytes,
    result: BenchResult,
    scheduled: deque[float],
    drained: asyncio.Event,
) -> None:
    while True:
        reply = await ws.recv()
        if not scheduled:
            result.error("received a message that wasn't sent")
            continue
        _record(result, reply == payload, time.perf_counter() - scheduled.popleft())
        if not scheduled:
            drained.set()


def _record(result: BenchResult, same: bool, latency: float) -> None:
    if same:
        result.latencies.append(latency)
    else:
        result.error("an echo differed from the message sent")


async def _progress(result: BenchResult, duration: float, stop: asyncio.Event) -> None:
    """Redraw the progress line on stderr five times a second; erase it at the end (the
    summary follows)."""
    start = time.perf_counter()
    marks: deque[tuple[float, int]] = deque()  # (time, messages so far), for the last second
    try:
        while not stop.is_set():
            now = time.perf_counter()
            marks.append((now, result.messages))
            while now - marks[0][0] > 1.0:
                marks.popleft()
            since, count = marks[0]
            rate = (result.messages - count) / (now - since) if now > since else 0.0
            recent = list(result.latencies[count:])
            width = shutil.get_terminal_size().columns
            line = progress_line(result, now - start, duration, rate, recent, width)
            sys.stderr.write(f"\r\x1b[K{line}")
            sys.stderr.flush()
            await asyncio.sleep(0.2)
    finally:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


@click.command("bench", epilog=EPILOG)
@click.argument("url")
@click.option(
    "-c",
    "--connections",
    type=click.IntRange(1, 10000),
    default=10,
    show_default=True,
    help="Connections opened at once.",
)
@click.option(
    "-s",
    "--size",
    **SIZE,
    default="64",
    show_default=True,
    help="Message size in bytes (64, 1k, 1M...).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="MSGS_PER_SEC",
    help="Messages per second per connection [default: as fast as possible, one in flight].",
)
@click.option(
    "-d",
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to run.",
)
@click.option(
    "--binary/--text",
    default=True,
    show_default=True,
    help="Send binary messages or text messages.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Write a latency histogram (needs matplotlib: pip install 'wsend[plot]').",
)
@client_options(compress=False)
@click.pass_context
def command(
    ctx: click.Context,
    url: str,
    connections: int,
    size: int,
    rate: float | None,
    duration: float,
    binary: bool,
    as_json: bool,
    plot: Path | None,
    client: ClientSettings,
) -> None:
    """Measure throughput and latency against an echo server."""
    check_url(url)
    if plot is not None:
        try:
            check_plotting()
        except ImportError as exc:
            message = "--plot needs matplotlib: pip install 'wsend[plot]'"
            raise CliError(message, ExitCode.USAGE) from exc
    if client.max_size is None and size > 1 << 19:
        # Room for the echo, and for compressed frames of random data, a bit larger.
        client = dataclasses.replace(client, max_size=2 * size)
    result = BenchResult(url, connections, size, binary, rate)
    progress = sys.stderr.isatty()
    asyncio.run(run(url, client, result, duration=duration, progress=progress))
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.summary())
    if plot is not None:
        try:
            plot_latencies(result, plot)
        except OSError as exc:
            raise CliError(f"cannot write {plot}: {exc.strerror or exc}") from exc
        click.echo(f"latency histogram written to {plot}", err=True)
    ctx.exit(ExitCode.FAILURE if result.errors else ExitCode.OK)
