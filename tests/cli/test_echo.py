"""``wsend echo``: the start line, connection logs, clean exit on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import socket

import pytest

from .conftest import run_wsend, start_echo


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_logs_and_stops_cleanly(sig: int) -> None:
    server = start_echo()
    try:
        assert server.url.startswith("ws://127.0.0.1:")
        assert run_wsend("send", server.url + "room?x=1", "ping", "--wait", "1").out == "ping\n"
        server.wait_for(r"open  127\.0\.0\.1:\d+ /room\?x=1$")
        server.wait_for(r"close 127\.0\.0\.1:\d+ 1000 \(NORMAL_CLOSURE\), 1 message echoed$")
    finally:
        code = server.stop(sig)
    assert code == 0
    assert server.lines[-1].endswith("shutting down")
    assert not any("Traceback" in line for line in server.lines)


def test_quiet_and_max_size() -> None:
    server = start_echo("-q", "--no-compress", "--max-size", "64k")
    try:
        assert run_wsend("send", server.url, "x" * 65536, "--wait", "1").code == 0
        too_big = run_wsend("send", server.url, "x" * 65537)
    finally:
        assert server.stop() == 0
    assert len([line for line in server.lines if "open" in line or "close" in line]) == 0
    assert too_big.code == 5
    # The server closes the TCP connection right after its 1009 close frame, with our data
    # unread: the reset may destroy that frame before we read it, leaving 1006.
    assert too_big.err.startswith("error: connection closed: 100")
    assert "(MESSAGE_TOO_BIG)" in too_big.err or "(ABNORMAL_CLOSURE)" in too_big.err


def test_port_in_use_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_wsend("echo", "--port", str(port))
    assert result.code == 1
    assert result.err.startswith(f"error: cannot listen on 127.0.0.1:{port}")


def test_keyfile_needs_certfile() -> None:
    result = run_wsend("echo", "--keyfile", __file__)
    assert result.code == 2
    assert result.err == "error: --keyfile needs --certfile\n"
