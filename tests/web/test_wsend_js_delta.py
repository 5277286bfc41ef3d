"""Delta compression in wsend.js, in real headless Chromium against a real hub.

``applyDelta`` (the browser's Fossil decoder) is checked against the hub's encoder on random
pairs and against hostile deltas; a subscription with ``delta: "fossil"`` rebuilds whole data
next to a subscriber without deltas, recovers after a reconnection, and, given a delta broken
on purpose on the hub's side, never shows it: it resubscribes with recovery instead.
"""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

try:
    import playwright  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is missing: pip install wsend[browser]", allow_module_level=True)

from wsend.hub import fossil

from ..hub.test_delta import book
from .conftest import LiveServer

NAMESPACES = {
    "deltas": {
        "delta": True,
        "publish": True,
        "history_size": 100,
        "history_ttl": 60,
        "recovery": True,
    },
}


@pytest.fixture(scope="module")
def delta_server() -> Iterator[LiveServer]:
    server = LiveServer(hub={"namespaces": NAMESPACES})
    try:
        yield server
    finally:
        server.close()


def blank(new_page: Any, server: LiveServer) -> Any:
    page = new_page()
    page.goto(server.url + "/healthz")
    return page


def publish(server: LiveServer, channel: str, values: list[Any]) -> None:
    async def run() -> None:
        for value in values:
            await server.server.hub.publish(channel, value)

    server.call(run())


APPLY = """async (cases) => {
  const { applyDelta, DeltaError } = await import("/wsend.js");
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const b64 = (data) => btoa(String.fromCharCode(...data));
  return cases.map(([source, delta]) => {
    try {
      return b64(applyDelta(bytes(source), bytes(delta)));
    } catch (err) {
      return err instanceof DeltaError ? `DeltaError: ${err.message}` : `other: ${err}`;
    }
  });
}"""


def test_apply_delta_agrees_with_the_hub(new_page: Any, delta_server: LiveServer) -> None:
    rng = random.Random(2024)
    pairs: list[tuple[bytes, bytes]] = []
    for _ in range(120):
        alphabet = rng.choice([b"ab{}", "é€🎉ab,:".encode(), bytes(range(256))])
        source = bytes(rng.choice(alphabet) for _ in range(rng.randrange(800)))
        target = bytearray(source)
        for _ in range(rng.randrange(5)):
            at = rng.randrange(len(target) + 1)
            target[at : at + rng.randrange(30)] = rng.randbytes(rng.randrange(12))
        pairs.append((source, bytes(target)))
    deltas = [fossil.create(s, t, text=bool(i % 2)) for i, (s, t) in enumerate(pairs)]
    hostile = [
        (b"abcd", b"3\n3@0,0;"),  # bad checksum
        (b"abcd", b"3\n3@5,"),  # copy past the source
        (b"abcd", b"3\n9:abc"),  # insert past the delta
        (b"abcd", b"zzzzzzz\n"),  # number too large
        (b"abcd", b"zzzzzz\n"),  # over the size limit
        (b"abcd", b"3\n3#0,"),  # unknown command
        (b"abcd", b"3\n3@0,"),  # no checksum
    ]
    cases = [(s, d) for (s, _), d in zip(pairs, deltas, strict=True)] + hostile
    encoded = [[base64.b64encode(s).decode(), base64.b64encode(d).decode()] for s, d in cases]
    page = blank(new_page, delta_server)
    results = page.evaluate(APPLY, encoded)
    for (_, target), result in zip(pairs, results[: len(pairs)], strict=True):
        assert base64.b64decode(result) == target
    for result in results[len(pairs) :]:
        assert result.startswith("DeltaError: "), result


SUBSCRIBE = """async (channel) => {
  const { Client } = await import("/wsend.js");
  const seen = { pubs: [], plain: [], subscribed: [], errors: [] };
  const client = new Client({ minDelay: 100, maxDelay: 400 });
  const sub = client.subscribe(channel, {
    delta: "fossil",
    publication: (pub) => seen.pubs.push([pub.offset, pub.data]),
    subscribed: (ctx) => seen.subscribed.push(
      { delta: ctx.delta ?? null, recovered: ctx.recovered, wasRecovering: ctx.wasRecovering }),
    error: (err) => seen.errors.push(err.name),
  });
  const other = new Client();
  const plain = other.subscribe(channel, { publication: (pub) => seen.plain.push(pub.data) });
  const ready = [sub, plain].map((s) => new Promise((resolve) => s.once("subscribed", resolve)));
  client.connect();
  other.connect();
  await Promise.all(ready);
  window.deltas = { client, sub, plain, seen };
  return [sub.deltaOn, plain.deltaOn];
}"""

STATE = "({ seen: window.deltas.seen, deltas: window.deltas.sub.deltas })"


def test_whole_data_with_and_without_deltas(new_page: Any, delta_server: LiveServer) -> None:
    channel = "deltas:book"
    page = blank(new_page, delta_server)
    assert page.evaluate(SUBSCRIBE, channel) == [True, False]
    books = [book(seq) for seq in range(10)]
    publish(delta_server, channel, books)
    page.wait_for_function("window.deltas.seen.pubs.length === 10")
    page.wait_for_function("window.deltas.seen.plain.length === 10")
    state = page.evaluate(STATE)
    assert [data for _, data in state["seen"]["pubs"]] == books
    assert state["seen"]["plain"] == books
    assert state["deltas"] == 9  # every book after the first came as a delta
    assert state["seen"]["errors"] == []


def test_recovery_then_deltas_again(new_page: Any, delta_server: LiveServer) -> None:
    channel = "deltas:recovery"
    page = blank(new_page, delta_server)
    page.evaluate(SUBSCRIBE, channel)
    publish(delta_server, channel, [book(0), book(1)])
    page.wait_for_function("window.deltas.seen.pubs.length === 2")
    assert delta_server.call(delta_server.outage(channel, [])) >= 2  # this page's clients
    publish(delta_server, channel, [book(2), book(3)])  # missed: recovered whole
    page.wait_for_function("window.deltas.seen.subscribed.length === 2")
    page.wait_for_function("window.deltas.seen.pubs.length === 4")
    publish(delta_server, channel, [book(4), book(5), book(6)])
    page.wait_for_function("window.deltas.seen.pubs.length === 7")
    state = page.evaluate(STATE)
    seen = state["seen"]
    assert seen["subscribed"][1] == {"delta": True, "recovered": True, "wasRecovering": True}
    assert [data for _, data in seen["pubs"]] == [book(seq) for seq in range(7)]
    offsets = [offset for offset, _ in seen["pubs"]]
    assert offsets == list(range(offsets[0], offsets[0] + 7))
    assert state["deltas"] == 1 + 2  # book 1; books 5 and 6 (book 4 starts whole)


def test_a_broken_delta_is_never_shown(
    new_page: Any, delta_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    create = fossil.create

    def corrupt(source: bytes, target: bytes, *, text: bool = False) -> bytes:
        delta = create(source, target, text=text)
        if b'"seq":2,' in target:  # book 2's delta fails its checksum
            delta = delta[:-2] + (b"1" if delta[-2:-1] != b"1" else b"2") + b";"
        return delta

    monkeypatch.setattr(fossil, "create", corrupt)
    channel = "deltas:broken"
    page = blank(new_page, delta_server)
    page.evaluate(SUBSCRIBE, channel)
    publish(delta_server, channel, [book(seq) for seq in range(4)])
    page.wait_for_function("window.deltas.seen.pubs.length === 4")
    state = page.evaluate(STATE)
    seen = state["seen"]
    assert seen["errors"] == ["DeltaError"]
    assert [data for _, data in seen["pubs"]] == [book(seq) for seq in range(4)]
    assert seen["subscribed"][-1] == {"delta": True, "recovered": True, "wasRecovering": True}
    assert seen["plain"] == [book(seq) for seq in range(4)]
