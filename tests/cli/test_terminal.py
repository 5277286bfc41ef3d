"""``wsend connect`` and ``wsend bench`` in a real pseudo-terminal, as a person runs them:
the prompt, line editing and history, messages arriving while a line is being typed, the
progress bar."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import struct
import subprocess
import termios
from collections.abc import AsyncIterator

import wsend

from ..conftest import StartServer
from .conftest import COMMAND_TIMEOUT, ENV, WSEND, Background

UP = "\x1b[A"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|[\r\x08]")
CURSOR_POSITION_REQUEST = b"\x1b[6n"
BRACKETED_PASTE_ON = b"\x1b[?2004h"


class Terminal:
    """A command running in a pseudo-terminal of 100 x 30: type into it, read its screen
    output (escape sequences removed)."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = {**ENV, "TERM": "xterm-256color"}
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.raw = b""
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the command exited: EIO
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        if CURSOR_POSITION_REQUEST in data:  # a terminal answers where its cursor is
            os.write(self.master, b"\x1b[1;1R")
        self.raw += data
        self._changed.set()

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def shows(self, pattern: str, timeout: float = 10) -> None:
        """Wait until the output matches ``pattern``."""
        try:
            async with asyncio.timeout(timeout):
                while not re.search(pattern, self.text):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} in {self.text!r}") from None

    async def prompt(self) -> None:
        """Wait for the prompt: keys typed before it would go to the terminal's line editor."""
        await self.shows(r"Ctrl-D to quit")
        async with asyncio.timeout(10):
            while BRACKETED_PASTE_ON not in self.raw:  # prompt_toolkit has the terminal
                self._changed.clear()
                await self._changed.wait()

    async def wait(self) -> int:
        """Wait for the exit; return the exit code."""
        return await asyncio.to_thread(self.proc.wait, COMMAND_TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


@contextlib.asynccontextmanager
async def terminal(*args: str) -> AsyncIterator[Terminal]:
    term = Terminal([*WSEND, *args])
    try:
        yield term
    finally:
        term.close()


async def test_connect_in_a_terminal(start_server: StartServer) -> None:
    """Messages arrive while a line is half typed; the line is sent whole; history works."""
    received: list[str] = []
    typing = asyncio.Event()

    async def chatty(ws: wsend.ServerConnection) -> None:
        async def talk() -> None:
            await typing.wait()
            for n in range(1, 4):
                await ws.send(f"news {n}")
                await asyncio.sleep(0.05)
            await ws.send(b"\x00\xff")

        task = asyncio.create_task(talk())
        async for message in ws:
            assert isinstance(message, str)
            received.append(message)
            await ws.send(f"got {message}")
        task.cancel()

    server = await start_server(chatty)
    async with terminal("connect", f"ws://127.0.0.1:{server.port}/", "--no-history") as term:
        await term.prompt()
        term.type("half a li")
        await term.shows(r"half a li")
        typing.set()
        await term.shows(r"< \[binary 2 bytes\] 00ff")  # printed above the prompt...
        term.type("ne\r")  # ...and the line being typed is intact
        await term.shows(r"< got half a line")
        assert received == ["half a line"]
        for n in range(1, 4):
            assert f"< news {n}" in term.text
        term.type(UP + "\r")  # the previous line, from the history
        await term.shows(r"< got half a line[\s\S]*< got half a line")
        assert received == ["half a line", "half a line"]
        term.type("/ping\r")
        await term.shows(r"pong: \d+\.\d+ ms")
        term.type("/close 4000 see you\r")
        await term.shows(r"connection closed: 4000 \(application-defined\)")
        assert await term.wait() == 0


async def test_ctrl_d_quits(start_server: StartServer) -> None:
    server = await start_server()
    async with terminal("connect", f"ws://127.0.0.1:{server.port}/", "--no-history") as term:
        await term.prompt()
        term.type("\x04")
        await term.shows(r"connection closed: 1000 \(NORMAL_CLOSURE\)")
        assert await term.wait() == 0


async def test_bench_progress_bar_is_erased(echo_server: Background) -> None:
    async with terminal("bench", echo_server.url, "-c", "2", "-d", "1.5") as term:
        await term.shows(r"\[#*-*\] +\d+%.* msgs .* msg/s .*p50")  # the live line
        assert await term.wait() == 0
    text = term.raw.decode()
    summary = text[text.index("target") :]
    assert "\x1b[K" in text  # the bar was erased before the summary
    assert "msg/s" in summary
    assert "[#" not in summary
