"""``wsend echo``: a WebSocket echo server for trying clients and running benchmarks."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import click

from .. import serve
from ..asyncio.server import ServerConnection
from ..exceptions import ConnectionClosed
from .display import describe_close
from .errors import CliError, ExitCode
from .options import SIZE, on_stop_signals

__all__ = ["command", "run"]

EPILOG = """\b
Examples:
  wsend echo                         # ws://127.0.0.1:8765
  wsend echo --port 0                # any free port (printed at start)
  wsend echo --host 0.0.0.0 --certfile cert.pem --keyfile key.pem
  wsend echo -q & wsend bench ws://127.0.0.1:8765 -c 8 -d 5

Logs to stderr: one line when listening (with the URL), one per connection opened and
closed (unless -q). Ctrl-C or SIGTERM closes the connections (1001) and exits with 0.

\b
Exit codes:
  0  stopped by Ctrl-C or SIGTERM
  1  could not start (address in use, bad certificate)
  2  usage error
"""

# Seconds given to connections to finish their closing handshake at shutdown.
SHUTDOWN_TIMEOUT = 5.0


def log(message: str) -> None:
    """Write a timestamped line to stderr."""
    click.echo(f"{time.strftime('%H:%M:%S')} {message}", err=True)


class EchoHandler:
    """Sends every message back as it came (text as text, binary as binary).

    Args:
        quiet: don't log connections.
    """

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet

    async def __call__(self, ws: ServerConnection) -> None:
        peer = _peer(ws.remote_address)
        path = ws.request.target if ws.request is not None else "/"
        if not self.quiet:
            log(f"open  {peer} {path}")
        count = 0
        try:
            async for message in ws:
                await ws.send(message)
                count += 1
        except ConnectionClosed:
            pass
        finally:
            if not self.quiet:
                await ws.wait_closed()
                closed = describe_close(ws.close_code, ws.close_reason)
                log(f"close {peer} {closed}, {count} message{'' if count == 1 else 's'} echoed")


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


async def run(
    host: str,
    port: int,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    compress: bool = True,
    max_size: int = 1 << 20,
    quiet: bool = False,
) -> int:
    """Serve until SIGINT or SIGTERM; return 0.

    Raises:
        CliError: the server could not start (exit code 1).
    """
    try:
        server = await serve(
            EchoHandler(quiet=quiet),
            host,
            port,
            certfile=certfile,
            keyfile=keyfile,
            compression="deflate" if compress else None,
            max_message_size=max_size or None,
        )
    except ssl.SSLError as exc:
        raise CliError(f"cannot load the certificate: {exc}") from exc
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    scheme = "wss" if certfile else "ws"
    shown = f"[{host}]" if ":" in host else host
    log(f"echo server listening on {scheme}://{shown}:{server.port}/ (Ctrl-C to stop)")
    stop = asyncio.Event()
    undo = on_stop_signals(stop.set)
    try:
        await stop.wait()
    finally:
        undo()
    log("shutting down")
    await server.shutdown(timeout=SHUTDOWN_TIMEOUT)
    return ExitCode.OK


@click.command("echo", epilog=EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--certfile",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate chain: serve wss://.",
)
@click.option(
    "--keyfile",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM private key, if not in --certfile.",
)
@click.option(
    "--compress/--no-compress",
    default=True,
    show_default=True,
    help="Accept permessage-deflate.",
)
@click.option(
    "--max-size",
    **SIZE,
    default="1M",
    show_default=True,
    help="Largest message accepted; 0 for no limit.",
)
@click.option("-q", "--quiet", is_flag=True, help="Don't log connections.")
@click.pass_context
def command(
    ctx: click.Context,
    host: str,
    port: int,
    certfile: str | None,
    keyfile: str | None,
    compress: bool,
    max_size: int,
    quiet: bool,
) -> None:
    """Run a WebSocket echo server: every message is sent back."""
    if keyfile and not certfile:
        raise CliError("--keyfile needs --certfile", ExitCode.USAGE)
    options: dict[str, Any] = {"certfile": certfile, "keyfile": keyfile, "compress": compress}
    ctx.exit(asyncio.run(run(host, port, max_size=max_size, quiet=quiet, **options)))
