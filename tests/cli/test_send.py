"""``wsend send``: every way to give data, replies, and every documented exit code."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

import wsend
from wsend import Headers, Response

from ..conftest import Certs, StartServer
from .conftest import Background, arun_wsend, run_wsend, start_echo


def url_of(server: wsend.Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


def free_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_text(echo_server: Background) -> None:
    result = run_wsend("send", echo_server.url, "hello there", "--wait", "1")
    assert (result.code, result.out) == (0, "hello there\n")


def test_send_without_wait_prints_nothing(echo_server: Background) -> None:
    result = run_wsend("send", echo_server.url, "fire and forget")
    assert (result.code, result.out, result.err) == (0, "", "")


def test_binary_from_file(echo_server: Background, tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x00\x01\xfe\xff")
    result = run_wsend("send", echo_server.url, f"@{path}", "--binary", "--wait", "1")
    assert (result.code, result.out) == (0, "[binary 4 bytes] 0001feff\n")


def test_binary_base64_and_hex_input(echo_server: Background) -> None:
    args = ["send", echo_server.url, "68 69", "--hex", "--wait", "1", "--binary-format", "base64"]
    result = run_wsend(*args)
    assert (result.code, result.out) == (0, "[binary 2 bytes] aGk=\n")


def test_text_from_file_loses_one_newline(echo_server: Background, tmp_path: Path) -> None:
    path = tmp_path / "message.txt"
    path.write_text("line one\nline two\n")
    result = run_wsend("send", echo_server.url, f"@{path}", "--wait", "1")
    assert (result.code, result.out) == (0, "line one\nline two\n")


def test_stdin_dash_and_implicit(echo_server: Background) -> None:
    dash = run_wsend("send", echo_server.url, "-", "--wait", "1", input=b"from stdin\n")
    implicit = run_wsend("send", echo_server.url, "--wait", "1", input=b"piped\n")
    assert (dash.code, dash.out) == (0, "from stdin\n")
    assert (implicit.code, implicit.out) == (0, "piped\n")


def test_json_is_pretty_printed(echo_server: Background) -> None:
    result = run_wsend("send", echo_server.url, '{"op":"sub","ids":[1,2]}', "--json", "--wait", "1")
    assert result.code == 0
    assert json.loads(result.out) == {"op": "sub", "ids": [1, 2]}
    assert result.out.startswith('{\n  "op": "sub"')


def test_invalid_json_is_a_usage_error_before_connecting() -> None:
    # Nothing listens on the port: exit code 2 (not 3) proves nothing tried to connect.
    result = run_wsend("send", f"ws://127.0.0.1:{free_port()}/", "{oops", "--json")
    assert result.code == 2
    assert result.err.startswith("error: invalid JSON, nothing sent")


def test_binary_stdin_not_utf8_needs_binary(echo_server: Background) -> None:
    result = run_wsend("send", echo_server.url, "-", input=b"\xff\xfe")
    assert result.code == 2
    assert "--binary" in result.err


def test_against_websockets_server(websockets_server: Background) -> None:
    result = run_wsend("send", websockets_server.url, "über", "--wait", "1")
    assert (result.code, result.out) == (0, "über\n")
    result = run_wsend("send", websockets_server.url, "cafe", "--hex", "--wait", "1")
    assert (result.code, result.out) == (0, "[binary 2 bytes] cafe\n")


async def test_wait_for_several_replies(start_server: StartServer) -> None:
    async def chatty(ws: wsend.ServerConnection) -> None:
        message = await ws.recv()
        assert isinstance(message, str)
        for i in range(3):
            await ws.send(f"{message} #{i}")
        await ws.wait_closed()

    server = await start_server(chatty)
    result = await arun_wsend("send", url_of(server), "reply", "--wait", "3")
    assert (result.code, result.out) == (0, "reply #0\nreply #1\nreply #2\n")


async def test_headers_token_origin_subprotocol(start_server: StartServer) -> None:
    async def show(ws: wsend.ServerConnection) -> None:
        await ws.recv()
        assert ws.request is not None
        headers = ws.request.headers
        names = ("Authorization", "X-Trace", "Origin")
        await ws.send_json({name: headers.get(name) for name in names} | {"sp": ws.protocol})

    server = await start_server(show, subprotocols=["chat.v2"])
    args = ["-H", "X-Trace: abc 123", "--token", "s3cret", "--origin", "https://app.example"]
    args += ["--subprotocol", "chat.v1", "--subprotocol", "chat.v2"]
    result = await arun_wsend("send", url_of(server), "hi", "--wait", "1", *args)
    assert result.code == 0
    assert json.loads(result.out) == {
        "Authorization": "Bearer s3cret",
        "X-Trace": "abc 123",
        "Origin": "https://app.example",
        "sp": "chat.v2",
    }


def test_exit_3_connection_refused() -> None:
    port = free_port()
    result = run_wsend("send", f"ws://127.0.0.1:{port}/", "x")
    assert result.code == 3
    assert result.err == f"error: connection refused by 127.0.0.1:{port}\n"


async def test_exit_4_handshake_refused(start_server: StartServer) -> None:
    def refuse(ws: wsend.ServerConnection, request: wsend.Request) -> Response:
        headers = Headers({"Content-Type": "text/plain"})
        return Response(403, headers, b"members only\n")

    server = await start_server(process_request=refuse)
    result = await arun_wsend("send", url_of(server), "x")
    assert result.code == 4
    assert "HTTP 403 Forbidden (members only)" in result.err
    assert len(result.err.splitlines()) == 1


@pytest.mark.parametrize(
    ("code", "meaning"), [(1011, "INTERNAL_ERROR"), (4003, "application-defined")]
)
async def test_exit_5_closed_with_error(start_server: StartServer, code: int, meaning: str) -> None:
    async def reject(ws: wsend.ServerConnection) -> None:
        await ws.recv()
        await ws.close(code, "not today")

    server = await start_server(reject)
    result = await arun_wsend("send", url_of(server), "x", "--wait", "1")
    assert result.code == 5
    assert result.err == (
        f"error: connection closed before the replies (0 of 1 received): {code} ({meaning}),"
        " reason: 'not today'\n"
    )


async def test_exit_6_timeout_waiting(start_server: StartServer) -> None:
    async def silent(ws: wsend.ServerConnection) -> None:
        await ws.wait_closed()

    server = await start_server(silent)
    result = await arun_wsend("send", url_of(server), "x", "--wait", "1", "--timeout", "0.3")
    assert result.code == 6
    assert "timed out after 0.3 s waiting for replies (0 of 1 received)" in result.err


async def test_exit_3_handshake_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await arun_wsend("send", f"ws://127.0.0.1:{port}/", "x", "--open-timeout", "0.3")
    assert result.code == 3
    assert "timed out connecting" in result.err


def test_tls(certs: Certs) -> None:
    server = start_echo("--certfile", certs.certfile, "--keyfile", certs.keyfile)
    try:
        assert server.url.startswith("wss://")
        trusted = run_wsend("send", server.url, "tls", "--cacert", certs.cafile, "--wait", "1")
        insecure = run_wsend("send", server.url, "tls", "--insecure", "--wait", "1")
        untrusted = run_wsend("send", server.url, "tls")
    finally:
        assert server.stop() == 0
    assert (trusted.code, trusted.out) == (0, "tls\n")
    assert (insecure.code, insecure.out) == (0, "tls\n")
    assert untrusted.code == 3
    assert "certificate verification failed" in untrusted.err


def test_exit_3_unknown_host() -> None:
    result = run_wsend("send", "ws://no-such-host.invalid/", "x")
    assert result.code == 3
    assert result.err.startswith("error: cannot resolve no-such-host.invalid:80")
    assert len(result.err.splitlines()) == 1


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run_wsend("send", "ws://127.0.0.1:1/", f"@{tmp_path}/nope.bin", "--binary")
    assert result.code == 2
    assert result.err == f"error: cannot read {tmp_path}/nope.bin: No such file or directory\n"


def test_plain_ws_to_a_tls_server_exits_3(certs: Certs) -> None:
    server = start_echo("--certfile", certs.certfile, "--keyfile", certs.keyfile)
    try:
        plain = server.url.replace("wss://", "ws://", 1)
        result = run_wsend("send", plain, "x")
    finally:
        assert server.stop() == 0
    assert result.code == 3
    assert result.err.startswith("error: no HTTP answer to the handshake from 127.0.0.1:")
    assert result.err.endswith("(not a WebSocket server? with TLS, use wss://)\n")
