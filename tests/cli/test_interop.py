"""The client commands against another implementation: Node's ``ws`` (the ``websockets``
package is the peer of the other modules' ``websockets_server`` tests)."""

from __future__ import annotations

import json

from .conftest import run_wsend


def test_send_text_binary_json(node_server: str) -> None:
    text = run_wsend("send", node_server, "héllo", "--wait", "1")
    assert (text.code, text.out, text.err) == (0, "héllo\n", "")
    binary = run_wsend("send", node_server, "--hex", "00ff10", "--wait", "1")
    assert (binary.code, binary.out) == (0, "[binary 3 bytes] 00ff10\n")
    data = run_wsend("send", node_server, '{"a": [1, 2]}', "--json", "--wait", "1")
    assert data.code == 0
    assert json.loads(data.out) == {"a": [1, 2]}
    assert data.out.startswith("{\n  ")  # pretty-printed


def test_send_exit_codes(node_server: str) -> None:
    closed = run_wsend("send", node_server + "?close_after=0&code=1011&reason=boom", "x")
    assert closed.code == 5
    assert closed.err == "error: connection closed: 1011 (INTERNAL_ERROR), reason: 'boom'\n"
    early = run_wsend("send", node_server + "?close_after=1&code=1000", "x", "--wait", "2")
    assert (early.code, early.out) == (5, "x\n")
    assert early.err == (
        "error: connection closed before the replies (1 of 2 received): 1000 (NORMAL_CLOSURE)\n"
    )
    normal = run_wsend("send", node_server + "?close_after=1&code=1000", "x", "--wait", "1")
    assert (normal.code, normal.out) == (0, "x\n")


def test_connect_from_stdin(node_server: str) -> None:
    result = run_wsend(
        "connect", node_server, "--no-compress", input=b"one\n/binary 01 02\n/ping\ntwo\n"
    )
    assert result.code == 0
    assert result.out == "< one\n< [binary 2 bytes] 0102\n< two\n"
    assert "connected to ws://127.0.0.1:" in result.err
    assert "pong: " in result.err
    assert "connection closed: 1000 (NORMAL_CLOSURE)" in result.err
    server_closes = run_wsend(
        "connect", node_server + "?close_after=1&code=4999&reason=nope", "--keep-open",
        input=b"a\n",
    )  # fmt: skip
    assert server_closes.code == 5
    assert "connection closed: 4999 (application-defined), reason: 'nope'" in server_closes.err


def test_bench(node_server: str) -> None:
    result = run_wsend("bench", node_server, "-c", "2", "-d", "1", "-s", "1k", "--json", "--text")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["errors"] == 0
    assert summary["messages"] > 10
    assert summary["type"] == "text"
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
