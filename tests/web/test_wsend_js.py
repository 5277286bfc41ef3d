"""wsend.js itself, driven in real headless Chromium: the hub client (connect with or without
a token, subscribe with callbacks, publish, presence, history, RPC, errors, reconnection with
backoff and recovery) and ``WsendSocket`` (text, binary and JSON against ``wsend echo``).

Each test loads a page of the server (for its origin), imports ``/wsend.js`` and runs a
scenario in the page; the scenario returns what it saw, which the test checks.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is missing: pip install wsend[browser]", allow_module_level=True)

from wsend.hub.auth import make_token

from ..cli.conftest import Background, start_echo
from .conftest import LiveServer

SECRET = "a-secret-of-at-least-32-bytes-for-hs256!"


def blank(new_page: Any, server: LiveServer, **kwargs: Any) -> Any:
    """A page on ``server``'s origin with nothing in it: scenarios import /wsend.js."""
    page = new_page(**kwargs)
    page.goto(server.url + "/healthz")
    return page


@pytest.fixture(scope="module")
def token_server() -> Iterator[LiveServer]:
    """``wsend serve --jwt-secret SECRET``: connections need a token."""
    server = LiveServer(jwt_secret=SECRET)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def echo() -> Iterator[Background]:
    server = start_echo("--quiet")
    yield server
    assert server.stop() == 0


CLIENT_API = """async (channel) => {
  const { Client, WsendError } = await import("/wsend.js");
  const seen = { states: [], pubs: [], joins: [], leaves: [], errors: [] };
  const ada = new Client({ data: { name: "Ada" } });
  ada.on("state", (s) => seen.states.push(s));
  const connected = new Promise((resolve) => ada.once("connected", resolve));
  const sub = ada.subscribe(channel, {
    publication: (pub) => seen.pubs.push(pub),
    join: (info) => seen.joins.push(info.info.name),
    leave: (info) => seen.leaves.push(info.info.name),
  });
  const subscribed = new Promise((resolve) => sub.once("subscribed", resolve));
  ada.connect();
  seen.connected = await connected;
  seen.subscribed = await subscribed;
  seen.clientId = ada.clientId;
  seen.state = ada.state;

  // Publish, from the subscription and from the client; both come back with their offsets.
  seen.published = [await sub.publish({ text: "one" })];
  seen.published.push(await ada.publish(channel, { text: "two" }));
  while (seen.pubs.length < 2) await new Promise((r) => setTimeout(r, 10));

  // Another client joins, is in presence, leaves.
  const bob = new Client({ data: { name: "Bob" } });
  const bobSub = bob.subscribe(channel);
  bob.connect();
  await new Promise((resolve) => bobSub.once("subscribed", resolve));
  await bobSub.publish({ text: "three" });
  while (seen.joins.length < 1 || seen.pubs.length < 3) await new Promise((r) => setTimeout(r, 10));
  seen.presence = await sub.presence();
  seen.stats = await ada.presenceStats(channel);
  bob.disconnect();
  while (seen.leaves.length < 1) await new Promise((r) => setTimeout(r, 10));

  seen.history = await sub.history({ limit: 2, reverse: true });
  seen.rpc = await ada.rpc("chat.rooms");
  seen.ping = await ada.ping();
  for (const call of [() => ada.rpc("no.such.method"), () => ada.publish("nope:x", 1)]) {
    try {
      await call();
    } catch (err) {
      seen.errors.push({ name: err.name, code: err.code, isWsendError: err instanceof WsendError });
    }
  }
  const bad = ada.subscribe("nope:x");
  seen.subError = await new Promise((resolve) => bad.once("error", (e) => resolve(e.code)));
  await sub.unsubscribe();
  seen.afterUnsubscribe = [sub.state, ada.subscriptions.has(channel)];
  ada.disconnect();
  seen.finalState = ada.state;
  seen.pubs = seen.pubs.map((p) => ({ data: p.data, offset: p.offset, info: p.info }));
  return seen;
}"""


def test_client_api(new_page: Any, live_server: LiveServer) -> None:
    page = blank(new_page, live_server)
    seen = page.evaluate(CLIENT_API, "chat:wsendjs-api")
    assert seen["state"] == "connected"
    assert seen["states"][:2] == ["connecting", "connected"]
    assert seen["finalState"] == "closed"
    assert seen["connected"]["client"] == seen["clientId"]
    assert seen["connected"]["data"] == {"name": "Ada"}
    assert seen["subscribed"]["recoverable"] is True
    assert seen["subscribed"]["wasRecovering"] is False
    start = seen["subscribed"]["offset"]
    assert [p["offset"] for p in seen["published"]] == [start + 1, start + 2]
    assert [p["data"]["text"] for p in seen["pubs"]] == ["one", "two", "three"]
    assert [p["offset"] for p in seen["pubs"]] == [start + 1, start + 2, start + 3]
    assert seen["pubs"][0]["info"]["client"] == seen["clientId"]
    assert seen["pubs"][2]["info"]["info"] == {"name": "Bob"}
    assert seen["joins"] == ["Bob"]
    assert seen["leaves"] == ["Bob"]
    names = sorted(c["info"]["name"] for c in seen["presence"].values())
    assert names == ["Ada", "Bob"]
    assert seen["stats"] == {"num_clients": 2, "num_users": 1}  # both anonymous: user ""
    history = seen["history"]
    assert [p["data"]["text"] for p in history["publications"]] == ["three", "two"]
    assert history["offset"] == start + 3
    assert set(seen["rpc"]["rooms"]) >= {"lobby", "python", "random"}
    assert 0 <= seen["ping"] < 1000
    assert seen["errors"] == [
        {"name": "WsendError", "code": 104, "isWsendError": True},
        {"name": "WsendError", "code": 102, "isWsendError": True},
    ]
    assert seen["subError"] == 102
    assert seen["afterUnsubscribe"] == ["unsubscribed", False]


TOKENS = """async ([goodToken, expiringTokens]) => {
  const { Client } = await import("/wsend.js");
  const result = {};

  // A fixed token.
  const alice = new Client({ token: goodToken });
  const ok = new Promise((resolve) => alice.once("connected", resolve));
  alice.connect();
  result.alice = await ok;
  alice.disconnect();

  // No token: refused, and no reconnection (4501 is terminal).
  const anon = new Client({ minDelay: 50 });
  const refused = await new Promise((resolve) => {
    const seen = { errors: [] };
    anon.on("error", (e) => seen.errors.push(e.code));
    anon.on("disconnected", (d) => { seen.disconnected = d; resolve(seen); });
    anon.connect();
  });
  await new Promise((r) => setTimeout(r, 300));
  refused.state = anon.state;
  result.refused = refused;

  // getToken: called to connect, then again before each token expires (refresh in band).
  let calls = 0;
  const bob = new Client({ getToken: async () => expiringTokens[Math.min(calls++, 2)] });
  const connected = new Promise((resolve) => bob.once("connected", resolve));
  bob.connect();
  result.bob = await connected;
  const started = Date.now();
  while (calls < 2 && Date.now() - started < 8000) await new Promise((r) => setTimeout(r, 50));
  result.calls = calls;
  result.bobState = bob.state;
  result.bobPing = await bob.ping();
  bob.disconnect();
  return result;
}"""


def test_tokens(new_page: Any, token_server: LiveServer) -> None:
    page = blank(new_page, token_server, allow=(r"WebSocket connection to .* failed",))
    good = make_token(SECRET, "alice", info={"name": "Alice"})
    # Expiring in 11 s: wsend.js refreshes 10 s before expiry, so after about a second.
    expiring = [make_token(SECRET, "bob", exp=time.time() + 11) for _ in range(3)]
    result = page.evaluate(TOKENS, [good, expiring])
    assert result["alice"]["user"] == "alice"
    assert result["alice"]["data"] == {"name": "Alice"}
    assert result["refused"]["errors"] == [101]
    assert result["refused"]["disconnected"]["reconnect"] is False
    assert result["refused"]["state"] == "disconnected"
    assert result["bob"]["user"] == "bob"
    assert result["bob"]["expires"] is True
    assert result["calls"] >= 2, "the token was not refreshed"
    assert result["bobState"] == "connected"


RECOVERY = """async (channel) => {
  const { Client } = await import("/wsend.js");
  const client = new Client({ minDelay: 100, maxDelay: 400 });
  const seen = { pubs: [], subscribed: [], disconnected: [], connecting: [] };
  client.on("disconnected", (d) => seen.disconnected.push(d));
  client.on("connecting", (c) => seen.connecting.push(c));
  const sub = client.subscribe(channel, {
    publication: (pub) => seen.pubs.push([pub.offset, pub.data.text]),
    subscribed: (ctx) => seen.subscribed.push({
      wasRecovering: ctx.wasRecovering, recovered: ctx.recovered,
      missed: (ctx.publications ?? []).length,
    }),
  });
  client.connect();
  await new Promise((resolve) => sub.once("subscribed", resolve));
  await sub.publish({ text: "before" });
  window.recovery = { client, seen };
  return sub.offset;
}"""


def test_reconnect_with_backoff_recovers_missed_publications(
    new_page: Any, live_server: LiveServer
) -> None:
    channel = "chat:wsendjs-recovery"
    page = blank(new_page, live_server)
    offset = page.evaluate(RECOVERY, channel)
    missed = [f"missed {i}" for i in range(5)]
    assert live_server.call(live_server.outage(channel, missed)) == 1
    page.wait_for_function("window.recovery.seen.subscribed.length === 2")
    page.wait_for_function("window.recovery.seen.pubs.length === 6")
    seen = page.evaluate("window.recovery.seen")
    assert seen["disconnected"] == [{"code": 4000, "reason": "reconnect", "reconnect": True}]
    assert seen["connecting"][0]["attempt"] == 1
    assert 50 <= seen["connecting"][0]["delay"] <= 100  # minDelay, half of it random
    assert seen["subscribed"][1] == {"wasRecovering": True, "recovered": True, "missed": 5}
    # In order, each once, with consecutive offsets.
    assert seen["pubs"] == [[offset, "before"]] + [
        [offset + 1 + i, text] for i, text in enumerate(missed)
    ]


BACKOFF = """async () => {
  const { Client } = await import("/wsend.js");
  const client = new Client("ws://127.0.0.1:9/ws", { minDelay: 100, maxDelay: 400 });
  const delays = [];
  await new Promise((resolve) => {
    client.on("connecting", ({ attempt, delay }) => {
      delays.push(delay);
      if (attempt === 5) resolve();
    });
    client.connect();
  });
  client.disconnect();
  return { delays, state: client.state };
}"""


def test_backoff_doubles_up_to_max_delay(new_page: Any, live_server: LiveServer) -> None:
    page = blank(new_page, live_server, allow=(r"WebSocket connection to .* failed",))
    result = page.evaluate(BACKOFF)
    ceilings = [100, 200, 400, 400, 400]
    assert len(result["delays"]) == 5
    for delay, ceiling in zip(result["delays"], ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert result["state"] == "closed"


@pytest.fixture(scope="module")
def callback_server() -> Iterator[LiveServer]:
    """``wsend serve`` with a namespace whose subscriptions a callback allows."""
    server = LiveServer(hub={"namespaces": {"vip": {"subscribe": "callback"}}})
    try:
        yield server
    finally:
        server.close()


SLOW_SUBSCRIBE = """async (channel) => {
  const { Client } = await import("/wsend.js");
  const client = new Client({ timeout: 400, minDelay: 100, maxDelay: 200 });
  const seen = { errors: [], subscribed: 0, pubs: [] };
  const sub = client.subscribe(channel, {
    error: (e) => seen.errors.push([e.code, !!e.timedOut, e.temporary]),
    subscribed: () => { seen.subscribed += 1; },
    publication: (pub) => seen.pubs.push(pub.data),
  });
  const subscribed = new Promise((resolve) => sub.once("subscribed", resolve));
  client.connect();
  await subscribed;
  window.slow = { client, sub, seen };
  return { state: sub.state, clientId: client.clientId };
}"""


def test_a_subscribe_without_a_reply_in_time_is_retried(
    new_page: Any, callback_server: LiveServer
) -> None:
    # The hub's subscribe callback answers the first attempt after the client's timeout: the
    # subscription must not stay "unsubscribed" until the next reconnection.
    channel = "vip:wsendjs-slow"
    calls: list[str] = []

    async def slow_first(session: Any, name: str, data: Any) -> bool:
        calls.append(name)
        if len(calls) == 1:
            await asyncio.sleep(1.2)
        return True

    hub = callback_server.server.hub
    callback_server.run(lambda: hub.on_subscribe_callback(slow_first))
    page = blank(new_page, callback_server)
    result = page.evaluate(SLOW_SUBSCRIBE, channel)
    assert result["state"] == "subscribed"
    assert len(calls) >= 2
    seen = page.evaluate("window.slow.seen")
    assert seen["subscribed"] == 1
    assert seen["errors"]
    assert all(error == [0, True, True] for error in seen["errors"])
    callback_server.call(hub.publish(channel, "hello"))
    page.wait_for_function("window.slow.seen.pubs.length === 1")

    def subscriptions() -> list[list[str]]:
        return [s.channels for s in hub.sessions() if s.client == result["clientId"]]

    assert callback_server.run(subscriptions) == [[channel]]
    page.evaluate("window.slow.sub.unsubscribe()")
    deadline = time.monotonic() + 5
    while callback_server.run(subscriptions) != [[]]:
        assert time.monotonic() < deadline, callback_server.run(subscriptions)
        time.sleep(0.02)
    assert page.evaluate("window.slow.seen.pubs") == ["hello"]
    page.evaluate("window.slow.client.disconnect()")


SOCKET = """async (url) => {
  const { WsendSocket } = await import("/wsend.js");
  const ws = new WsendSocket(url);
  const received = [];
  ws.on("message", (msg) => received.push(
    msg.text !== null ? { text: msg.text } : { bytes: [...msg.bytes] }));
  await ws.opened;
  const buffer = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]).buffer;
  ws.send("héllo ✓");
  ws.send(buffer);                                   // ArrayBuffer
  ws.send(new Uint8Array(buffer, 2, 3));             // a view: only its bytes
  ws.send(new Uint16Array([0x0102, 0x0304]));        // other typed arrays: their bytes
  ws.send(new DataView(buffer, 6, 2));
  ws.send(new Blob([new Uint8Array([250, 251]), "ok"]));
  ws.send({ hello: "world", n: [1, 2] });            // JSON text
  ws.send(42);
  ws.sendJSON("a string as JSON");
  while (received.length < 9) await new Promise((r) => setTimeout(r, 10));
  // msg.json() parses text messages, and binary ones holding UTF-8 JSON.
  const next = () => new Promise((resolve) => ws.once("message", (msg) => resolve(msg.json())));
  let reply = next();
  ws.send({ x: 1 });
  const json = [await reply];
  reply = next();
  ws.send(new TextEncoder().encode("[1, 2]"));
  json.push(await reply);
  const closed = await ws.close(4000, "done");
  return { received, json, closed, readyState: ws.readyState };
}"""


def test_wsend_socket_sends_text_binary_and_json(
    new_page: Any, live_server: LiveServer, echo: Background
) -> None:
    page = blank(new_page, live_server)
    result = page.evaluate(SOCKET, echo.url)
    assert result["received"][:9] == [
        {"text": "héllo ✓"},
        {"bytes": [0, 1, 2, 3, 4, 5, 6, 7]},
        {"bytes": [2, 3, 4]},
        {"bytes": [2, 1, 4, 3]},  # little-endian Uint16
        {"bytes": [6, 7]},
        {"bytes": [250, 251, 111, 107]},
        {"text": '{"hello":"world","n":[1,2]}'},
        {"text": "42"},
        {"text": '"a string as JSON"'},
    ]
    assert result["json"] == [{"x": 1}, [1, 2]]
    # The code the server echoed in its close frame (the reason needn't be echoed).
    assert result["closed"]["code"] == 4000
    assert result["closed"]["wasClean"] is True
    assert result["readyState"] == 3


def test_demo_pages_take_a_token(new_page: Any, token_server: LiveServer) -> None:
    """With --jwt-secret the demo pages connect with ?token=JWT, and say so without one."""
    token = make_token(SECRET, "alice", info={"name": "Alice"})
    page = new_page()
    page.goto(f"{token_server.url}/chat/?name=Alice&token={token}#tokens")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    expect(page.locator("#people li", has_text="Alice (you)")).to_be_visible()
    assert "token=" not in page.url  # kept for the tab, not in the address bar
    page.reload()  # the tab remembers it
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")

    for path in ("/", "/chat/?name=Eve", "/game/?name=Eve", "/ticker/", "/collab/?name=Eve"):
        refused = new_page()
        refused.goto(token_server.url + path)
        expect(refused.locator("#refusal")).to_contain_text("requires a sign-in token")
        expect(refused.locator("#status")).not_to_have_attribute("data-state", "connected")
    expired = new_page()
    old = make_token(SECRET, "bob", exp=time.time() - 60)
    expired.goto(f"{token_server.url}/ticker/?token={old}")
    expect(expired.locator("#refusal")).to_contain_text("expired")


URLS_AND_EARLY_DISCONNECT = """async (httpUrl) => {
  const { Client } = await import("/wsend.js");
  const urls = [new Client().url, new Client("/ws").url, new Client(httpUrl + "/ws").url];
  // disconnect() before the socket is even open: no error in the console, and a later
  // connect() works.
  const client = new Client();
  client.connect();
  client.disconnect();
  const state = client.state;
  await new Promise((r) => setTimeout(r, 200));
  client.connect();
  await client.ready();
  const ping = await client.ping();
  client.disconnect();
  return { urls, state, ping };
}"""


def test_urls_and_disconnect_while_connecting(new_page: Any, live_server: LiveServer) -> None:
    page = blank(new_page, live_server)
    result = page.evaluate(URLS_AND_EARLY_DISCONNECT, live_server.url)
    ws_url = live_server.url.replace("http://", "ws://") + "/ws"
    assert result["urls"] == [ws_url] * 3
    assert result["state"] == "closed"
    assert result["ping"] >= 0


BACK_TO_THE_TAB = """async () => {
  const { Client } = await import("/wsend.js");
  const client = new Client("ws://127.0.0.1:9/ws", { minDelay: 20000, maxDelay: 20000 });
  const attempts = [];
  client.on("connecting", ({ attempt }) => attempts.push([attempt, performance.now()]));
  client.connect();
  while (attempts.length < 1) await new Promise((r) => setTimeout(r, 10));
  // Waiting 10-20 s for the next attempt; the user comes back to the tab:
  document.dispatchEvent(new Event("visibilitychange"));
  const started = performance.now();
  while (attempts.length < 2 && performance.now() - started < 3000) {
    await new Promise((r) => setTimeout(r, 10));
  }
  client.disconnect();
  return attempts.length;
}"""


def test_reconnects_at_once_when_the_tab_is_visible_again(
    new_page: Any, live_server: LiveServer
) -> None:
    page = blank(new_page, live_server, allow=(r"WebSocket connection to .* failed",))
    assert page.evaluate(BACK_TO_THE_TAB) == 2
