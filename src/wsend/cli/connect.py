"""``wsend connect URL``: an interactive session, or lines from stdin when it isn't a TTY."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .console import Console, PromptConsole, StreamConsole
from .display import BINARY_FORMATS, Display
from .errors import EXIT_CODES_HELP, check_url
from .options import ClientSettings, client_options, on_stop_signals, open_connection
from .session import HELP, Session

if TYPE_CHECKING:
    from prompt_toolkit.history import History
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output

__all__ = ["PromptLines", "StdinLines", "command", "default_history_path", "run"]

EPILOG = f"""\b
Examples:
  wsend connect ws://localhost:8765
  wsend connect wss://example.com/chat -H 'Cookie: session=abc' --subprotocol chat.v1
  wsend connect ws://localhost:8765 --json --token "$TOKEN"
  printf 'hello\\n/ping\\n' | wsend connect ws://localhost:8765

\b
{HELP}

Received messages are printed with '< ', sent ones with '> '. When stdin is not a terminal,
each line read is sent (commands work too); received messages go to stdout, the rest to
stderr; the connection is closed when the input ends (unless --keep-open).

{EXIT_CODES_HELP}
(0 also when we closed with a code of our own; 5 when the server closed with an error code
or the connection dropped without a closing handshake.)
"""


def default_history_path() -> Path:
    """``$XDG_STATE_HOME/wsend/history``, by default ``~/.local/state/wsend/history``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "wsend" / "history"


class StdinLines:
    """Lines of stdin, read by a daemon thread so that a blocked read never holds up exit.

    The thread reads the file descriptor with ``os.read``: a daemon thread blocked inside
    ``sys.stdin.buffer`` would hold its lock while the interpreter shuts down, which aborts it.
    """

    def __init__(self, fd: int = 0) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._fd = fd
        threading.Thread(target=self._read, name="wsend-stdin", daemon=True).start()

    def _read(self) -> None:
        pending = b""
        while chunk := _read_chunk(self._fd):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._put(line)
        if pending:
            self._put(pending)
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    def _put(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").removesuffix("\r")
        self._loop.call_soon_threadsafe(self._queue.put_nowait, text)

    async def next_line(self) -> str | None:
        """Return the next line, ``None`` at the end of stdin."""
        return await self._queue.get()


class PromptLines:
    """Lines typed at a prompt_toolkit prompt, with line editing and history.

    Args:
        history: a prompt_toolkit history (a file history persists across sessions).
        input, output: for tests, a pipe input and a dummy output.
    """

    def __init__(
        self, history: History, input: Input | None = None, output: Output | None = None
    ) -> None:
        from prompt_toolkit import PromptSession

        self.prompt: PromptSession[str] = PromptSession(history=history, input=input, output=output)

    async def next_line(self) -> str | None:
        """Return the line typed, or ``None`` on Ctrl-D or Ctrl-C."""
        try:
            return await self.prompt.prompt_async("> ")
        except (EOFError, KeyboardInterrupt):
            return None


def _read_chunk(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def make_history(path: Path | None) -> History:
    """A file history at ``path``, or an in-memory one if ``path`` is None or unusable."""
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        except OSError:
            return InMemoryHistory()
        return FileHistory(str(path))
    return InMemoryHistory()


async def run(
    url: str,
    settings: ClientSettings,
    display: Display,
    *,
    interactive: bool,
    history: Path | None = None,
    keep_open: bool = False,
    console: Console | None = None,
) -> int:
    """Open ``url`` and run a session on it; return the exit code.

    Args:
        interactive: read from a prompt (else from stdin, line by line).
        history: the prompt's history file (interactive only; ``None`` keeps it in memory).
        console: where to write; by default a prompt console if interactive, else streams.

    Raises:
        CliError: the connection could not be opened.
    """
    if console is None:
        console = PromptConsole() if interactive else StreamConsole()
    async with open_connection(url, settings) as ws:
        session = Session(ws, console, display, keep_open=keep_open)
        if interactive:
            console.info(_connected(url, ws.protocol, ws.extensions, interactive))
            return await _interactive(session, history)
        closing: list[asyncio.Task[None]] = []
        undo = on_stop_signals(lambda: closing.append(asyncio.create_task(session.close())))
        try:
            console.info(_connected(url, ws.protocol, ws.extensions, interactive))
            return await session.run(StdinLines())
        finally:
            undo()


async def _interactive(session: Session, history: Path | None) -> int:
    from prompt_toolkit.patch_stdout import patch_stdout

    with patch_stdout(raw=True):
        return await session.run(PromptLines(make_history(history)))


def _connected(url: str, protocol: str | None, extensions: list[str], interactive: bool) -> str:
    details = [f"subprotocol {protocol}"] if protocol else []
    details += extensions
    text = f"connected to {url}" + (f" ({', '.join(details)})" if details else "")
    if interactive:
        text += "; /help for commands, Ctrl-D to quit"
    return text


@click.command("connect", epilog=EPILOG)
@click.argument("url")
@click.option(
    "--json", "pretty_json", is_flag=True, help="Pretty-print received messages that are JSON."
)
@click.option(
    "--binary-format",
    type=click.Choice(BINARY_FORMATS),
    default="hex",
    show_default=True,
    help="How to show received binary messages.",
)
@click.option(
    "--save-binary",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Save received binary messages to DIR/message-NNNN.bin instead of showing them.",
)
@click.option(
    "--keep-open", is_flag=True, help="When stdin ends, keep receiving until the server closes."
)
@click.option(
    "--history",
    "history_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Prompt history file [default: ~/.local/state/wsend/history].",
)
@click.option("--no-history", is_flag=True, help="Don't save the prompt history.")
@client_options()
@click.pass_context
def command(
    ctx: click.Context,
    url: str,
    pretty_json: bool,
    binary_format: str,
    save_binary: Path | None,
    keep_open: bool,
    history_file: Path | None,
    no_history: bool,
    client: ClientSettings,
) -> None:
    """Open a WebSocket connection and exchange messages with the server."""
    check_url(url)
    display = Display(binary_format=binary_format, pretty_json=pretty_json, save_dir=save_binary)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    history = None if no_history else (history_file or default_history_path())
    options: dict[str, Any] = {"interactive": interactive, "history": history}
    ctx.exit(asyncio.run(run(url, client, display, keep_open=keep_open, **options)))
