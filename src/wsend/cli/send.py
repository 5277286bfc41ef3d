"""``wsend send URL [DATA | @FILE | -]``: send one message, optionally wait for replies."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from ..asyncio.client import ClientConnection
from ..exceptions import ConnectionClosed
from .display import Display, describe_close, is_ok_close
from .errors import EXIT_CODES_HELP, CliError, ExitCode, check_url
from .options import ClientSettings, client_options, open_connection

__all__ = ["command", "load_payload", "run"]

EPILOG = f"""\b
Examples:
  wsend send ws://localhost:8765 hello
  wsend send ws://localhost:8765 '{{"op": "subscribe"}}' --json --wait 1
  wsend send ws://localhost:8765 @image.png --binary
  echo hello | wsend send ws://localhost:8765 --wait 1 --timeout 2
  wsend send wss://api.example.com/ws ping --token "$TOKEN" --wait 1

DATA is sent as is; @FILE sends the content of FILE; - (or no DATA when stdin is not a
terminal) sends stdin. Text read from a file or stdin loses one trailing newline. Replies
are printed one per line on stdout.

{EXIT_CODES_HELP}
"""


def load_payload(data: str | None, *, binary: bool, hex_data: bool, as_json: bool) -> str | bytes:
    """Read the message to send from the argument, a file (``@path``) or stdin (``-``).

    Returns:
        ``bytes`` with ``binary``/``hex_data``, else ``str``.

    Raises:
        CliError: no data, an unreadable file, bad hex, text that isn't UTF-8, or JSON that
            doesn't parse (exit code 2).
    """
    raw, from_arg = _read(data)
    if hex_data:
        try:
            return bytes.fromhex(raw.decode("ascii", "replace"))
        except ValueError as exc:
            raise CliError(f"--hex: {exc}", ExitCode.USAGE) from exc
    if binary:
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError("the data isn't UTF-8 text; add --binary", ExitCode.USAGE) from exc
    if not from_arg:
        text = text.removesuffix("\n").removesuffix("\r")
    if as_json:
        try:
            json.loads(text)
        except ValueError as exc:
            raise CliError(f"invalid JSON, nothing sent: {exc}", ExitCode.USAGE) from exc
    return text


def _read(data: str | None) -> tuple[bytes, bool]:
    if data is None:
        if sys.stdin.isatty():
            raise CliError("nothing to send: give DATA, @FILE or - for stdin", ExitCode.USAGE)
        data = "-"
    if data == "-":
        return sys.stdin.buffer.read(), False
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes(), False
        except OSError as exc:
            raise CliError(f"cannot read {data[1:]}: {exc.strerror}", ExitCode.USAGE) from exc
    return data.encode("utf-8", "surrogateescape"), True


async def run(
    url: str,
    settings: ClientSettings,
    payload: str | bytes,
    *,
    wait: int,
    timeout: float,
    display: Display,
) -> int:
    """Send ``payload`` to ``url``, print ``wait`` replies, close; return the exit code.

    Raises:
        CliError: could not connect (3), handshake refused (4), closed with an error or
            before the replies (5), no replies within ``timeout`` (6).
    """
    async with open_connection(url, settings) as ws:
        try:
            await ws.send(payload)
            await _replies(ws, wait, timeout, display)
        except ConnectionClosed as exc:
            raise _closed(ws, exc) from exc
        await ws.close()
        if not is_ok_close(ws.close_code):
            raise _closed(ws, None)
    return ExitCode.OK


async def _replies(ws: ClientConnection, wait: int, timeout: float, display: Display) -> None:
    received = 0
    try:
        async with asyncio.timeout(timeout):
            for received in range(wait):  # noqa: B007 - read in the except clauses
                message = await ws.recv()
                _print(message, display)
    except TimeoutError:
        raise CliError(
            f"timed out after {timeout:g} s waiting for replies ({received} of {wait} received)",
            ExitCode.TIMEOUT,
        ) from None
    except ConnectionClosed as exc:
        raise CliError(
            f"connection closed before the replies ({received} of {wait} received):"
            f" {describe_close(exc.code, exc.reason)}",
            ExitCode.CLOSED,
        ) from exc


def _print(message: str | bytes, display: Display) -> None:
    if isinstance(message, str):
        click.echo(display.text(message))
    elif display.binary_format == "raw":
        sys.stdout.buffer.write(message)
        sys.stdout.buffer.flush()
    else:
        click.echo(display.binary(message))


def _closed(ws: ClientConnection, exc: ConnectionClosed | None) -> CliError:
    code = exc.code if exc is not None else ws.close_code
    reason = exc.reason if exc is not None else ws.close_reason
    return CliError(f"connection closed: {describe_close(code, reason)}", ExitCode.CLOSED)


@click.command("send", epilog=EPILOG)
@click.argument("url")
@click.argument("data", required=False)
@click.option("--binary", is_flag=True, help="Send a binary message (default: text).")
@click.option("--hex", "hex_data", is_flag=True, help="DATA is hex digits; send them as binary.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Check that DATA is JSON before connecting; pretty-print JSON replies.",
)
@click.option(
    "--wait",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Wait for N replies and print them.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Time allowed for the replies.",
)
@click.option(
    "--binary-format",
    type=click.Choice(["hex", "base64", "raw"]),
    default="hex",
    show_default=True,
    help="How to print binary replies (raw writes the bytes as they are).",
)
@client_options()
@click.pass_context
def command(
    ctx: click.Context,
    url: str,
    data: str | None,
    binary: bool,
    hex_data: bool,
    as_json: bool,
    wait: int,
    timeout: float,
    binary_format: str,
    client: ClientSettings,
) -> None:
    """Send one message and, with --wait, print the replies."""
    check_url(url)
    if as_json and (binary or hex_data):
        raise CliError("--json can't be combined with --binary or --hex", ExitCode.USAGE)
    payload = load_payload(data, binary=binary, hex_data=hex_data, as_json=as_json)
    display = Display(binary_format=binary_format, pretty_json=as_json)
    ctx.exit(asyncio.run(run(url, client, payload, wait=wait, timeout=timeout, display=display)))
