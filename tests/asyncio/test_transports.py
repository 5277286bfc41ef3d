"""The choice of transport: asyncio's own, or aiofastnet's C transports when installed."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import os
from pathlib import Path
from typing import Any, cast

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


class _Sink(asyncio.Protocol):
    """A peer that never reads: what is written to it piles up in the writer's buffer."""

    accepted: list[asyncio.Transport]
    ready: asyncio.Event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.pause_reading()
        self.accepted.append(transport)  # closed by the test: it never reads the EOF
        self.ready.set()


class _Writer(asyncio.Protocol):
    paused = False

    def pause_writing(self) -> None:
        self.paused = True


async def _writelines_until_paused(
    fast: bool, kind: str, certs: Any, tmp_path: Path
) -> tuple[asyncio.Transport, bool]:
    """Open a connection to a :class:`_Sink`, write to it with ``writelines()`` only, and
    return the transport and whether the protocol was paused before 64 MiB were written."""
    server_kwargs: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    path = str(tmp_path / "sink.sock") if kind == "unix" else None
    if path is None:
        server_kwargs = {"host": "127.0.0.1", "port": 0}
    if kind == "tls":
        server_kwargs["ssl"] = certs.server_context
        client_kwargs["ssl"] = certs.client_context
    accepted: list[asyncio.Transport] = []
    ready = asyncio.Event()

    def sink() -> _Sink:
        protocol = _Sink()
        protocol.accepted = accepted
        protocol.ready = ready
        return protocol

    server = await transports.create_server(fast, sink, path, **server_kwargs)
    if path is None:
        client_kwargs["host"], client_kwargs["port"] = server.sockets[0].getsockname()[:2]
    transport, writer = await transports.create_connection(fast, _Writer, path, **client_kwargs)
    async with asyncio.timeout(10):  # the server side's TLS handshake is done too
        await ready.wait()
    transport.set_write_buffer_limits(65536)
    frame = [b"\x82\x7f" + bytes(8), bytes(65536)]  # a frame's header and payload, apart
    try:
        for _ in range(1024):
            transport.writelines(frame)
            if writer.paused:
                break
        return transport, writer.paused
    finally:
        transport.abort()
        for peer in accepted:
            peer.abort()
        server.close()
        await server.wait_closed()


def _check_vectored_writes(transport: asyncio.Transport, paused: bool) -> None:
    vectored = transports.has_vectored_writes(transport)
    selector_events: Any = asyncio.selector_events
    if isinstance(transport, selector_events._SelectorSocketTransport):
        # Python 3.11 joins the chunks (its writelines is WriteTransport's); from 3.12 they go
        # out in one sendmsg(), but writelines doesn't pause on 3.12.0 or 3.13.0 (gh-127655).
        joins = type(transport).writelines is asyncio.WriteTransport.writelines
        assert vectored is (paused and not joins)
    else:
        assert vectored
        assert paused


@pytest.mark.parametrize("kind", ["tcp", "tls", "unix"])
@pytest.mark.parametrize("fast", [False, pytest.param(True, marks=needs_aiofastnet)])
async def test_vectored_writes_only_where_writelines_applies_backpressure(
    certs: Any, tmp_path: Path, fast: bool, kind: str
) -> None:
    # Connections hand a frame's chunks to writelines() only where has_vectored_writes says
    # so: there, a peer that doesn't read must pause the writer (send() waits) as with write().
    transport, paused = await _writelines_until_paused(fast, kind, certs, tmp_path)
    _check_vectored_writes(transport, paused)


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_vectored_writes_on_uvloop(certs: Any, tmp_path: Path, kind: str) -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        transport, paused = runner.run(_writelines_until_paused(False, kind, certs, tmp_path))
    assert type(transport).__module__.startswith("uvloop")
    _check_vectored_writes(transport, paused)
