"""``for ws in wsend.sync.connect(uri)``: reconnecting to real servers that die, restart or
refuse. Delays are read from the log records of each retry, never measured."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import wsend
from wsend.protocol.http import Request, Response

from ..reconnecting import FAST, ServerProcess, delays
from .conftest import StartServer
from .helpers import in_thread, uri


@pytest.fixture
def sync_server_process() -> Iterator[ServerProcess]:
    process = ServerProcess(sync=True)
    yield process
    process.kill()


def first(connector: wsend.sync.connect) -> wsend.sync.ClientConnection:
    """The first connection of a reconnecting loop."""
    for ws in connector:
        return ws
    raise AssertionError("unreachable")  # pragma: no cover


def test_server_killed_and_restarted(
    sync_server_process: ServerProcess, retries: list[logging.LogRecord]
) -> None:
    """A threading server in its own process, killed with SIGKILL while a client is
    connected, then started again on the same port: the client reconnects."""
    sync_server_process.start()
    restarter: threading.Thread | None = None

    def restart() -> None:
        end = time.monotonic() + 30
        while len(delays(retries)) < 4 and time.monotonic() < end:
            time.sleep(0.01)
        sync_server_process.start()

    connector = wsend.sync.connect(sync_server_process.uri, backoff=FAST, open_timeout=5)
    for opened, ws in enumerate(connector, 1):
        ws.send(f"hello {opened}")
        assert ws.recv(timeout=5) == f"hello {opened}"
        if opened == 2:
            break
        sync_server_process.kill()
        with pytest.raises(wsend.ConnectionClosedError) as caught:
            ws.recv(timeout=5)
        assert caught.value.code == 1006
        restarter = in_thread(restart)
    assert restarter is not None
    restarter.join(30)
    assert sync_server_process.starts == 2
    failed = delays(retries)
    assert failed[:3] == [0.04, 0.08, 0.16]
    assert all(delay <= 0.16 for delay in failed)
    assert delays(retries, "ended")[0] == 0.02


def test_server_unavailable_then_recovering(
    start_sync_server: StartServer, retries: list[logging.LogRecord]
) -> None:
    refusals = 3

    def unavailable(ws: object, request: Request) -> Response | None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            return Response.text(503, "Service Unavailable\n")
        return None

    server = start_sync_server(process_request=unavailable)
    for ws in wsend.sync.connect(uri(server), backoff=FAST):
        ws.send("finally")
        assert ws.recv(timeout=5) == "finally"
        break
    assert refusals == 0
    assert delays(retries) == [0.02, 0.04, 0.08]


def test_fatal_status_ends_the_loop(
    start_sync_server: StartServer, retries: list[logging.LogRecord]
) -> None:
    server = start_sync_server(process_request=lambda ws, r: Response.text(401, "Who?\n"))
    with pytest.raises(wsend.InvalidStatus) as caught:
        first(wsend.sync.connect(uri(server), backoff=FAST))
    assert caught.value.status_code == 401
    assert not delays(retries)


def test_hook_and_max_attempts(retries: list[logging.LogRecord]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    seen: list[Exception] = []

    def give_up_third(exc: Exception) -> Exception | None:
        seen.append(exc)
        return RuntimeError("gave up") if len(seen) == 3 else None

    with pytest.raises(RuntimeError, match="gave up") as caught:
        first(
            wsend.sync.connect(
                f"ws://127.0.0.1:{port}/", backoff=FAST, process_exception=give_up_third
            )
        )
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    backoff = wsend.Backoff(initial_delay=0.001, max_attempts=2)
    with pytest.raises(ConnectionRefusedError):
        first(wsend.sync.connect(f"ws://127.0.0.1:{port}/", backoff=backoff))


def test_short_connections_back_off(
    start_sync_server: StartServer, retries: list[logging.LogRecord]
) -> None:
    server = start_sync_server(lambda ws: None)  # closes right after opening
    for ended, ws in enumerate(wsend.sync.connect(uri(server), backoff=FAST), 1):
        with pytest.raises(wsend.ConnectionClosedOK):
            ws.recv(timeout=5)
        if ended == 4:
            break
    assert delays(retries, "ended") == [0.02, 0.04, 0.08]


def test_leaving_the_loop_closes_the_connection(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    ws = first(wsend.sync.connect(uri(server), backoff=FAST))
    assert ws.wait_closed(5)  # the loop's generator was dropped: its connection closed
    assert ws.close_code == 1000


def test_no_reconnection_with_a_socket(start_sync_server: StartServer) -> None:
    server = start_sync_server()
    with (
        socket.create_connection(("127.0.0.1", server.port)) as sock,
        pytest.raises(wsend.UsageError, match="sock="),
    ):
        first(wsend.sync.connect(uri(server), sock=sock))
