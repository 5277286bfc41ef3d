"""The choice of transport: asyncio's own, or aiofastnet's C transports when installed."""

from __future__ import annotations

import os

import pytest

import wsend
from wsend.asyncio import transports

from .helpers import ws_uri

# aiofastnet comes with the dev extras: CI must test on it, so there it is required.
needs_aiofastnet = pytest.mark.skipif(
    not transports.fast_transport_available() and not os.environ.get("CI"),
    reason="aiofastnet is not installed (pip install 'wsend[fast]')",
)


def _module_of(ws: wsend.Connection) -> str:
    return type(ws.transport).__module__


def test_use_fast_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    available = transports.fast_transport_available()
    assert transports.use_fast(False) is False
    monkeypatch.delenv(transports.DISABLE_ENV, raising=False)
    assert transports.use_fast(None) is available
    monkeypatch.setenv(transports.DISABLE_ENV, "1")
    assert transports.use_fast(None) is False
    if available:
        assert transports.use_fast(True) is True  # an explicit request wins over the variable


def test_fast_transport_required_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transports, "_module", None)
    monkeypatch.setattr(transports, "_probed", True)
    with pytest.raises(wsend.UsageError, match="aiofastnet"):
        transports.use_fast(True)
    with pytest.raises(wsend.UsageError, match="aiofastnet"):
        wsend.connect("ws://127.0.0.1:1/", fast_transport=True)
    assert transports.use_fast(None) is False


@pytest.mark.parametrize("fast", [False, pytest.param(True, marks=needs_aiofastnet)])
async def test_server_and_client_on_the_chosen_transport(start_server, fast: bool) -> None:
    modules: list[str] = []

    async def handler(ws: wsend.ServerConnection) -> None:
        modules.append(_module_of(ws))
        await ws.send(await ws.recv())

    server = await start_server(handler, fast_transport=fast)
    async with wsend.connect(ws_uri(server), fast_transport=fast) as ws:
        await ws.send(b"x" * 200_000)
        assert await ws.recv() == b"x" * 200_000
        assert _module_of(ws).startswith("aiofastnet") is fast
    assert modules[0].startswith("aiofastnet") is fast


@pytest.mark.parametrize("fast", [False, pytest.param(True, marks=needs_aiofastnet)])
async def test_tls_and_unix_sockets_on_the_chosen_transport(
    start_server, certs, tmp_path, fast: bool
) -> None:
    server = await start_server(ssl=certs.server_context, fast_transport=fast)
    uri = ws_uri(server, scheme="wss")
    async with wsend.connect(uri, ssl=certs.client_context, fast_transport=fast) as ws:
        await ws.send("over TLS")
        assert await ws.recv() == "over TLS"
    path = str(tmp_path / "ws.sock")
    await start_server(path=path, fast_transport=fast)
    async with wsend.connect("ws://localhost/", path=path, fast_transport=fast) as ws:
        await ws.send("over a Unix socket")
        assert await ws.recv() == "over a Unix socket"
        assert _module_of(ws).startswith("aiofastnet") is fast
