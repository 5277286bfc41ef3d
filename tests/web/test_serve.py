"""``wsend serve`` as a command: the start line, its routes, options, TLS, clean exit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import wsend
from wsend.hub.auth import make_token

from ..cli.conftest import WSEND, Background, run_wsend, start_background

START_LINE = r"wsend hub on (?P<url>https?://\S+)"
JS_TYPES = ("text/javascript", "application/javascript")
SECRET = "a-secret-of-at-least-32-bytes-for-hs256"


def start_serve(*args: str) -> Background:
    return start_background([*WSEND, "serve", "--port", "0", *args], START_LINE)


def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def post(url: str, body: Any, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"X-API-Key": key}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stop_cleanly(server: Background, sig: int = signal.SIGTERM) -> None:
    assert server.stop(sig) == 0
    assert server.lines[-1].endswith("shutting down")
    assert not any("Traceback" in line or "ERROR" in line for line in server.lines), server.lines


async def hub_connect(ws_url: str, token: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Open a hub connection, send ``connect``, return the reply."""
    async with wsend.connect(ws_url, subprotocols=["wsend.v1.json"], **kwargs) as ws:
        command: dict[str, Any] = {"id": 1, "method": "connect"}
        if token:
            command["token"] = token
        await ws.send(json.dumps(command))
        reply: dict[str, Any] = json.loads(await ws.recv())
        return reply


def test_defaults_start_line_routes_and_sigterm() -> None:
    server = start_serve("--api-key", "k3y")
    try:
        url = server.url
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/")
        start = [line for line in server.lines if "wsend hub on" in line]
        assert len(start) == 1
        assert "Ctrl-C" in start[0]
        assert "anonymous access" in start[0]
        assert get(url + "healthz")[:3:2] == (200, b"OK\n")
        status, headers, body = get(url + "wsend.js")
        assert status == 200
        assert headers["Content-Type"].split(";")[0] in JS_TYPES
        assert b"export class Client" in body
        assert b"export class WsendSocket" in body
        status, _, landing = get(url)
        assert status == 200
        for app in ("chat", "game", "ticker", "collab"):
            assert f'href="/{app}/"'.encode() in landing
        assert get(url + "chat/")[0] == 200
        assert get(url + "style.css")[0] == 200
        assert get(url + "nope.html")[0] == 404
        apps = json.loads(get(url + "apps.json")[2])["apps"]
        assert "chat" in [app["name"] for app in apps]
        # The HTTP API is on with --api-key, and the chat namespace exists.
        lobby = {"channel": "chat:lobby", "data": {"text": "hi"}}
        assert post(url + "api/publish", lobby, "k3y")[0] == 200
        assert post(url + "api/publish", {"channel": "chat:lobby", "data": 1}, "wrong")[0] == 401
        ws_url = url.replace("http", "ws", 1) + "ws"
        reply = wsend_run(hub_connect(ws_url))
        assert reply["result"]["user"] == ""  # anonymous by default
    finally:
        stop_cleanly(server)


def wsend_run(coro: Any) -> Any:
    """Run ``coro`` to completion in a thread of its own (Playwright's sync API may own this
    thread's event loop when the browser tests run in the same session)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=30)


def test_port_option() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_background([*WSEND, "serve", "--port", str(port)], START_LINE)
    try:
        assert server.url == f"http://127.0.0.1:{port}/"
    finally:
        stop_cleanly(server, signal.SIGINT)


def test_port_in_use_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_wsend("serve", "--port", str(port))
    assert result.code == 1
    assert result.err.startswith(f"error: cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_file(tmp_path: Path, suffix: str) -> None:
    config = {
        "server": {"api_key": "from-config"},
        "hub": {"node_name": "node-7", "namespaces": {"extra": {"publish": True}}},
    }
    path = tmp_path / f"hub{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(config))
    else:
        path.write_text(
            '[server]\napi_key = "from-config"\n\n[hub]\nnode_name = "node-7"\n\n'
            "[hub.namespaces.extra]\npublish = true\n"
        )
    server = start_serve("--config", str(path))
    try:
        url = server.url
        assert post(url + "api/publish", {"channel": "extra:x", "data": 1}, "from-config")[0] == 200
        # The apps' namespaces are still there beside the file's.
        assert post(url + "api/publish", {"channel": "chat:x", "data": 1}, "from-config")[0] == 200
        reply = wsend_run(hub_connect(url.replace("http", "ws", 1) + "ws"))
        assert reply["result"]["node"] == "node-7"
    finally:
        stop_cleanly(server)


def test_bad_config_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[hub]\nmax_message_size = "big"\n')
    result = run_wsend("serve", "--port", "0", "--config", str(path))
    assert result.code == 1
    assert "max_message_size" in result.err
    assert "Traceback" not in result.err
    path.write_text("[nonsense]\n")
    assert run_wsend("serve", "--config", str(path)).code == 1


def test_jwt_secret_requires_tokens() -> None:
    server = start_serve("--jwt-secret", SECRET)
    try:
        assert "tokens required" in server.lines[-1]
        ws_url = server.url.replace("http", "ws", 1) + "ws"
        refused = wsend_run(hub_connect(ws_url))
        assert refused["error"]["code"] == 101
        token = make_token(SECRET, "alice", info={"name": "Alice"})
        accepted = wsend_run(hub_connect(ws_url, token))
        assert accepted["result"]["user"] == "alice"
        assert accepted["result"]["data"] == {"name": "Alice"}
    finally:
        stop_cleanly(server)


def test_tls(certs: Any) -> None:
    server = start_serve("--certfile", certs.certfile, "--keyfile", certs.keyfile)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert get(server.url + "healthz", certs.client_context)[0] == 200
        ws_url = server.url.replace("https", "wss", 1) + "ws"
        reply = wsend_run(hub_connect(ws_url, ssl=certs.client_context))
        assert "client" in reply["result"]
    finally:
        stop_cleanly(server)


def test_keyfile_needs_certfile() -> None:
    result = run_wsend("serve", "--keyfile", __file__)
    assert result.code == 2
    assert result.err == "error: --keyfile needs --certfile\n"


def test_allowed_hosts(tmp_path: Path) -> None:
    server = start_serve("--allowed-hosts", "localhost, 127.0.0.1", "--allowed-hosts", "[::1]")
    try:
        assert get(server.url + "healthz")[:3:2] == (200, b"OK\n")
        port = server.url.rsplit(":", 1)[1].strip("/")
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: rebound.example\r\n\r\n")
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 421 Misdirected Request\r\n")
    finally:
        stop_cleanly(server)
    config = tmp_path / "hub.toml"
    config.write_text('[server]\nallowed_hosts = "chat.example.com"\n')
    server = start_serve("--config", str(config))
    try:
        assert get(server.url + "healthz")[0] == 421
    finally:
        stop_cleanly(server)


def test_invalid_allowed_hosts_exit_2() -> None:
    result = run_wsend("serve", "--port", "0", "--allowed-hosts", "exa mple.com")
    assert result.code == 2
    assert "invalid allowed host: 'exa mple.com'" in result.err
