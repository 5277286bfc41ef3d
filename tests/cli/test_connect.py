"""``wsend connect``: sessions driven line by line through stdin (not a TTY), and the
interactive prompt run in-process on a pipe input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import wsend
from wsend.cli import connect
from wsend.cli.display import Display
from wsend.cli.options import ClientSettings

from ..conftest import StartServer
from .conftest import COMMAND_TIMEOUT, ENV, WSEND, Background, Result, arun_wsend


class Driver:
    """A running ``wsend connect``: write lines to it, wait for what it prints."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._collect(proc.stdout, self.out)),
            asyncio.create_task(self._collect(proc.stderr, self.err)),
        ]

    @staticmethod
    async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
        async for raw in stream:
            lines.append(raw.decode().rstrip("\n"))

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, lines: list[str], pattern: str) -> str:
        """Wait for a line of ``self.out`` or ``self.err`` matching ``pattern``."""
        async with asyncio.timeout(10):
            while True:
                for line in lines:
                    if re.search(pattern, line):
                        return line
                await asyncio.sleep(0.02)

    async def finish(self) -> Result:
        """Close stdin, wait for the exit; return the exit code and the whole output."""
        assert self.proc.stdin is not None
        if not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        async with asyncio.timeout(COMMAND_TIMEOUT):
            code = await self.proc.wait()
            await asyncio.gather(*self._readers)
        return Result(code, "\n".join(self.out), "\n".join(self.err))


@contextlib.asynccontextmanager
async def wsend_connect(*args: str) -> AsyncIterator[Driver]:
    proc = await asyncio.create_subprocess_exec(
        *WSEND,
        "connect",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    try:
        yield Driver(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_session_with_ping_binary_json_and_close(echo_server: Background) -> None:
    async with wsend_connect(echo_server.url) as session:
        await session.expect(session.err, r"^connected to ws://127\.0\.0\.1:\d+/")
        await session.send("hello")
        await session.expect(session.out, r"^< hello$")
        await session.send("/ping")
        await session.expect(session.err, r"^pong: \d+\.\d\d ms$")
        await session.send("/binary 00ff")
        await session.expect(session.out, r"^< \[binary 2 bytes\] 00ff$")
        await session.send('/json {"a": 1}')
        await session.expect(session.out, r'^< \{"a": 1\}$')
        await session.send("/json {nope")
        await session.expect(session.err, r"^error: invalid JSON, not sent")
        await session.send("//slash")
        await session.expect(session.out, r"^< /slash$")
        await session.send("/close 4001 done here")
        result = await session.finish()
    assert result.code == 0
    assert "connection closed: 4001 (application-defined)" in result.err
    assert "> hello" in result.err


async def test_sigint_closes_normally(echo_server: Background) -> None:
    async with wsend_connect(echo_server.url) as session:
        await session.expect(session.err, r"^connected to ")
        session.proc.send_signal(signal.SIGINT)
        result = await session.finish()
    assert result.code == 0
    assert "connection closed: 1000 (NORMAL_CLOSURE)" in result.err


async def test_end_of_input_closes_normally(echo_server: Background) -> None:
    result = await arun_wsend("connect", echo_server.url, input=b"")
    assert result.code == 0
    assert "connection closed: 1000 (NORMAL_CLOSURE)" in result.err


async def test_against_websockets_server(websockets_server: Background) -> None:
    async with wsend_connect(websockets_server.url, "--json") as session:
        await session.send('{"k": [1]}')
        await session.expect(session.out, r"^  \}$")
        await session.send("/quit")
        result = await session.finish()
    assert result.code == 0
    assert result.out == '< {\n    "k": [\n      1\n    ]\n  }'


async def test_server_error_close_exits_5(start_server: StartServer) -> None:
    async def kick(ws: wsend.ServerConnection) -> None:
        await ws.send("bye")
        await ws.close(1008, "policy")

    server = await start_server(kick)
    async with wsend_connect(f"ws://127.0.0.1:{server.port}/", "--keep-open") as session:
        result = await session.finish()
    assert result.code == 5
    assert result.out == "< bye"
    assert "connection closed: 1008 (POLICY_VIOLATION), reason: 'policy'" in result.err


async def test_save_binary_and_base64(start_server: StartServer, tmp_path: Path) -> None:
    async def blobs(ws: wsend.ServerConnection) -> None:
        await ws.send(b"\x01\x02")
        await ws.send(b"\x03")

    server = await start_server(blobs)
    url = f"ws://127.0.0.1:{server.port}/"
    saved = await arun_wsend("connect", url, "--keep-open", "--save-binary", str(tmp_path))
    shown = await arun_wsend("connect", url, "--keep-open", "--binary-format", "base64")
    assert saved.code == shown.code == 0
    assert (tmp_path / "message-0001.bin").read_bytes() == b"\x01\x02"
    assert (tmp_path / "message-0002.bin").read_bytes() == b"\x03"
    assert shown.out == "< [binary 2 bytes] AQI=\n< [binary 1 bytes] Aw==\n"


async def test_refused_handshake_exits_4(start_server: StartServer) -> None:
    def refuse(ws: wsend.ServerConnection, request: wsend.Request) -> wsend.Response:
        return wsend.Response(401)

    server = await start_server(process_request=refuse)
    result = await arun_wsend("connect", f"ws://127.0.0.1:{server.port}/")
    assert result.code == 4
    assert "HTTP 401 Unauthorized" in result.err


class RecordingOutput(DummyOutput):
    """A prompt_toolkit output that keeps what is written, and discards escape sequences."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[str] = []
        self.changed = asyncio.Event()

    def write(self, data: str) -> None:
        self.written.append(data)
        self.changed.set()

    async def shows(self, text: str) -> None:
        """Wait until ``text`` has been written."""
        async with asyncio.timeout(10):
            while text not in self.text:
                self.changed.clear()
                await self.changed.wait()

    @property
    def text(self) -> str:
        return "".join(self.written).replace("\r\n", "\n")


async def test_interactive_prompt_in_process(start_server: StartServer) -> None:
    async def echo_json(ws: wsend.ServerConnection) -> None:
        async for message in ws:
            await ws.send(json.dumps({"echo": message}))

    server = await start_server(echo_json)
    output = RecordingOutput()
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=output):
        session = asyncio.create_task(
            connect.run(
                f"ws://127.0.0.1:{server.port}/",
                ClientSettings(),
                Display(pretty_json=True),
                interactive=True,
            )
        )

        await output.shows("/help for commands")
        pipe.send_text("hi\r")
        await output.shows('"echo": "hi"')
        pipe.send_text("/ping\r")
        await output.shows("pong: ")
        pipe.send_text("/nope\r")
        await output.shows("unknown command /nope")
        pipe.send_text("/quit\r")
        async with asyncio.timeout(10):
            code = await session
    assert code == 0
    assert '< {\n    "echo": "hi"\n  }' in output.text
    assert "connection closed: 1000 (NORMAL_CLOSURE)" in output.text


async def test_interactive_prompt_ends_when_server_closes(start_server: StartServer) -> None:
    async def leave(ws: wsend.ServerConnection) -> None:
        await ws.close(4100, "later")

    server = await start_server(leave)
    output = RecordingOutput()
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=output):
        async with asyncio.timeout(10):
            code = await connect.run(
                f"ws://127.0.0.1:{server.port}/", ClientSettings(), Display(), interactive=True
            )
    assert code == 5
    assert "connection closed: 4100 (application-defined), reason: 'later'" in output.text


@pytest.mark.parametrize("history", [True, False])
def test_history_file(tmp_path: Path, history: bool) -> None:
    path = tmp_path / "state" / "history"
    made = connect.make_history(path if history else None)
    assert path.exists() is history
    assert type(made).__name__ == ("FileHistory" if history else "InMemoryHistory")
