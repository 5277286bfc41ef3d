"""An interactive session on an open connection: lines in, messages out, ``/`` commands.

A line is sent as a text message, unless it starts with ``/``: then it is a command
(:data:`HELP` lists them; ``//text`` sends ``/text``). Received messages are shown as they
arrive. The session ends when the connection closes, when the input ends, or on ``/quit``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..asyncio.client import ClientConnection
from ..exceptions import ConnectionClosed, UsageError
from ..protocol.frames import CloseCode
from .console import Console
from .display import Display, describe_close, is_ok_close
from .errors import ExitCode

__all__ = ["HELP", "LineSource", "Session"]

HELP = """\
Commands:
  /ping [payload]        send a ping, show the round trip in ms
  /close [code] [reason] close the connection (default 1000)
  /binary <hex>          send a binary message, e.g. /binary 48 65 6c 6c 6f
  /json <value>          check that <value> is JSON, then send it as text
  /help                  show this help
  /quit                  close normally and exit (also Ctrl-D, Ctrl-C)
Any other line is sent as a text message; start it with // to send a leading /."""

# Seconds to wait for a pong before giving up on /ping.
PING_TIMEOUT = 10.0


class LineSource(Protocol):
    """Where the session's input lines come from."""

    async def next_line(self) -> str | None:
        """Return the next line without its end, or ``None`` when the input ends."""


class Session:
    """Runs the exchange between a line source, a console and a connection.

    Args:
        ws: the open connection.
        console: where messages and notices go.
        display: how received messages are rendered.
        keep_open: when the input ends, keep receiving until the server closes instead of
            closing the connection.
    """

    def __init__(
        self,
        ws: ClientConnection,
        console: Console,
        display: Display,
        *,
        keep_open: bool = False,
    ) -> None:
        self.ws = ws
        self.console = console
        self.display = display
        self.keep_open = keep_open
        self.closed_by_us = False
        self._commands: dict[str, Callable[[str], Awaitable[bool]]] = {
            "ping": self._ping,
            "close": self._close,
            "binary": self._binary,
            "json": self._json,
            "help": self._help,
            "quit": self._quit,
            "exit": self._quit,
        }

    async def run(self, source: LineSource) -> int:
        """Run until the connection closes; return the exit code (0, or 5 on an error close)."""
        receiver = asyncio.create_task(self.receive_forever())
        try:
            await self._read_lines(source, receiver)
            if not receiver.done():
                await receiver
            await self.ws.wait_closed()
        finally:
            receiver.cancel()
        return self.finish()

    async def _read_lines(self, source: LineSource, receiver: asyncio.Task[None]) -> None:
        while not receiver.done():
            reading = asyncio.ensure_future(source.next_line())
            await asyncio.wait({reading, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
                return
            line = reading.result()
            if line is None:
                if not self.keep_open:
                    await self.close()
                return
            try:
                if await self.handle(line):
                    return
            except ConnectionClosed:
                return

    async def receive_forever(self) -> None:
        """Show every message received until the connection closes."""
        try:
            while True:
                message = await self.ws.recv()
                await self._show(message)
        except ConnectionClosed:
            return

    async def _show(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.console.received(self.display.text(message))
        elif self.display.save_dir is not None:
            try:
                line = await asyncio.to_thread(self.display.save, message)
            except OSError as exc:
                self.console.error(f"cannot save a binary message: {exc}")
                line = self.display.binary(message)
            self.console.received(line)
        else:
            self.console.received(self.display.binary(message))

    async def handle(self, line: str) -> bool:
        """Send a line or run the command in it; return ``True`` if the session should end.

        Raises:
            ConnectionClosed: the connection closed meanwhile.
        """
        if line.startswith("/") and not line.startswith("//"):
            name, _, arg = line[1:].partition(" ")
            command = self._commands.get(name.lower())
            if command is None:
                self.console.error(f"unknown command /{name}; /help lists the commands")
                return False
            return await command(arg.strip())
        text = line[1:] if line.startswith("//") else line
        await self.ws.send(text)
        self.console.sent(text)
        return False

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start and finish the closing handshake from our side.

        Raises:
            ValueError: the code may not be sent or the reason is too long.
        """
        self.closed_by_us = True
        try:
            await self.ws.close(code, reason)
        except ValueError:
            self.closed_by_us = False
            raise

    def finish(self) -> int:
        """Print how the connection closed; return 0, or 5 if it closed with an error."""
        code, reason = self.ws.close_code, self.ws.close_reason
        self.console.info(f"connection closed: {describe_close(code, reason)}")
        if code == CloseCode.ABNORMAL_CLOSURE:
            return ExitCode.CLOSED
        if self.closed_by_us or is_ok_close(code):
            return ExitCode.OK
        return ExitCode.CLOSED

    # -- commands ----------------------------------------------------------------------------

    async def _ping(self, arg: str) -> bool:
        payload = arg.encode() if arg else None
        if payload is not None and len(payload) > 125:
            self.console.error("a ping payload is at most 125 bytes")
            return False
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                rtt = await self.ws.ping(payload)
        except TimeoutError:
            self.console.error(f"no pong within {PING_TIMEOUT:g} s")
        except UsageError as exc:
            self.console.error(str(exc))
        else:
            self.console.info(f"pong: {rtt * 1000:.2f} ms")
        return False

    async def _close(self, arg: str) -> bool:
        try:
            words = shlex.split(arg)
        except ValueError as exc:
            self.console.error(f"/close: {exc}")
            return False
        try:
            code = int(words[0]) if words else CloseCode.NORMAL_CLOSURE
            await self.close(code, " ".join(words[1:]))
        except ValueError as exc:
            self.console.error(f"/close: {exc}")
            return False
        return True

    async def _binary(self, arg: str) -> bool:
        try:
            data = bytes.fromhex(arg)
        except ValueError:
            self.console.error("/binary takes hex digits, e.g. /binary 48656c6c6f")
            return False
        await self.ws.send(data)
        self.console.sent(self.display.binary(data))
        return False

    async def _json(self, arg: str) -> bool:
        try:
            json.loads(arg)
        except ValueError as exc:
            self.console.error(f"invalid JSON, not sent: {exc}")
            return False
        await self.ws.send(arg)
        self.console.sent(arg)
        return False

    async def _help(self, arg: str) -> bool:
        self.console.info(HELP)
        return False

    async def _quit(self, arg: str) -> bool:
        await self.close()
        return True
