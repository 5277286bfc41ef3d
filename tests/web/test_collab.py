"""The collab app in real headless Chromium: two pages typing at once converge (Yjs through
the hub's y-websocket endpoint), also after their connections drop and after a server restart.

Each test uses its own document (``?doc=...``), so tests share one server and one browser.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is missing: pip install wsend[browser]", allow_module_level=True)

import pycrdt

from .conftest import LiveServer, screenshot

# Random edits made from inside a page, as fast as the page can: typing, deleting and pasting
# at random places while the other page does the same. Resolves when done.
EDIT_STORM = """
async ([count, seed]) => {
  window.storming = true;
  const ta = document.getElementById("text");
  let s = seed;
  const rand = (n) => { s = (s * 1103515245 + 12345) % 2147483648; return s % n; };
  for (let i = 0; i < count; i++) {
    const v = ta.value;
    let pos = rand(v.length + 1);
    if (pos > 0 && /[\udc00-\udfff]/.test(v[pos])) pos -= 1; // not inside an emoji
    let del = rand(4) === 0 ? Math.min(rand(4), v.length - pos) : 0;
    if (del && /[\udc00-\udfff]/.test(v[pos + del])) del += 1;
    const ins = ["a", "b", "🙂", " ", "\\n", "xyz", "é"][rand(7)];
    ta.value = v.slice(0, pos) + ins + v.slice(pos + del);
    ta.setSelectionRange(pos + ins.length, pos + ins.length);
    ta.dispatchEvent(new Event("input"));
    await new Promise((r) => setTimeout(r, rand(3) ? 0 : 8));
  }
  window.storming = false;
}
"""


# Counts the page's (re)connections. A function: evaluate() would call a returned function.
COUNT_CONNECTS = (
    "() => { window.connects = 0;"
    " collab.provider.on('status', (e) => { if (e.status === 'connected') connects++; }); }"
)


def open_doc(new_page: Any, server: LiveServer, name: str, doc: str) -> Any:
    page = new_page()
    page.goto(f"{server.url}/collab/?doc={doc}&name={name}")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    page.wait_for_function("window.collab && window.collab.synced()")
    return page


def server_text(server: LiveServer, doc: str) -> str:
    room = server.server.yjs.rooms[f"yjs:collab.{doc}"]
    return server.run(lambda: str(room.doc.get("text", type=pycrdt.Text)))


def wait_converged(server: LiveServer, doc: str, *pages: Any) -> str:
    """Wait until every page and the server have the same text; return it."""
    deadline = time.monotonic() + 15
    while True:
        for page in pages:
            page.wait_for_function("window.collab.synced()", timeout=15_000)
        texts = [page.evaluate("window.collab.text()") for page in pages]
        values = [page.locator("#text").input_value() for page in pages]
        expected = server_text(server, doc)
        if texts == values == [expected] * len(pages) or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # updates still in flight
    assert texts == values  # what the page shows is its model
    assert texts == [expected] * len(pages)
    return expected


def drop_yjs_connections(server: LiveServer) -> None:
    """Close every Yjs connection with 4000 (y-websocket reconnects)."""

    def drop() -> None:
        for room in server.server.yjs.rooms.values():
            for conn in room.conns:
                conn.close(4000, "reconnect")

    server.run(drop)


def test_concurrent_typing_converges(new_page: Any, live_server: LiveServer) -> None:
    doc = f"t-{uuid.uuid4().hex[:8]}"
    ada = open_doc(new_page, live_server, "Ada", doc)
    linus = open_doc(new_page, live_server, "Linus", doc)
    expect(ada.locator("#people li")).to_have_count(2)
    expect(linus.locator("#people li", has_text="Ada")).to_be_visible()

    # Real keystrokes, interleaved, at the same place: each page sends before it has seen
    # the other's edits, so the server must transform them.
    for page in (ada, linus):
        page.locator("#text").click()
        page.keyboard.press("Control+End")
    for a, b in zip("Hello from Ada! ", "Linus was here. ", strict=True):
        if a:
            ada.keyboard.type(a)
        linus.keyboard.type(b)
    text = wait_converged(live_server, doc, ada, linus)
    assert sorted(text[-32:]) == sorted("Hello from Ada! Linus was here. ")

    # Then an edit storm in both pages at once: inserts, deletes, emoji, newlines.
    # (Started without waiting: evaluate() would wait for the promise.)
    ada.evaluate(f"() => {{ window.storm = ({EDIT_STORM})([120, 7]); }}")
    linus.evaluate(f"() => {{ window.storm = ({EDIT_STORM})([120, 11]); }}")
    assert ada.evaluate("window.storming")  # still editing: the two storms overlap
    ada.wait_for_function("window.storm.then(() => true)")
    linus.wait_for_function("window.storm.then(() => true)")
    wait_converged(live_server, doc, ada, linus)


def test_edits_made_offline_survive_a_reconnect(new_page: Any, live_server: LiveServer) -> None:
    doc = f"t-{uuid.uuid4().hex[:8]}"
    ada = open_doc(new_page, live_server, "Ada", doc)
    linus = open_doc(new_page, live_server, "Linus", doc)
    for page, key in ((ada, "Control+End"), (linus, "Control+Home")):
        page.evaluate(COUNT_CONNECTS)
        page.locator("#text").click()
        page.keyboard.press(key)
    # Drop every connection; type in both pages while they reconnect.
    drop_yjs_connections(live_server)
    ada.keyboard.type("typed while offline")
    linus.keyboard.type("Linus, offline too")
    for page in (ada, linus):
        page.wait_for_function("window.connects >= 1")
    text = wait_converged(live_server, doc, ada, linus)
    assert text.startswith("Linus, offline too")
    assert text.endswith("typed while offline")


def test_cursors_and_screenshot(new_page: Any, live_server: LiveServer) -> None:
    doc = f"demo-{uuid.uuid4().hex[:6]}"
    ada = open_doc(new_page, live_server, "Ada", doc)
    linus = open_doc(new_page, live_server, "Linus", doc)
    ada.locator("#text").click()
    ada.keyboard.press("Control+End")
    ada.keyboard.type("Meeting notes, Monday\n- ship the ticker demo\n- \n")
    wait_converged(live_server, doc, ada, linus)
    ada.keyboard.press("ArrowLeft")  # Ada back on the "- " line, Linus on the last one
    linus.locator("#text").click()
    linus.keyboard.press("Control+End")
    for a, b in itertools.zip_longest("review the game loop", "Linus: looks good to me!"):
        if a:
            ada.keyboard.type(a)
        linus.keyboard.type(b)
    text = wait_converged(live_server, doc, ada, linus)
    assert "- review the game loop\nLinus: looks good to me!" in text
    ada.keyboard.press("Shift+Control+ArrowLeft")  # select a word: a highlight in Linus's page
    expect(linus.locator("#overlay .caret .flag", has_text="Ada")).to_be_visible()
    expect(ada.locator("#overlay .caret .flag", has_text="Linus")).to_be_visible()
    time.sleep(0.2)
    screenshot(linus, "collab")


def test_the_pad_survives_a_server_restart(new_page: Any) -> None:
    """The server keeps documents on disk: after a restart, the pages reconnect, find the
    document as it was, and send what was typed while the server was down."""
    server = LiveServer()
    try:
        refused = (r"WebSocket connection to .* failed",)  # while the server is down
        pages = []
        for name in ("Ada", "Linus"):
            page = new_page(allow=refused)
            page.goto(f"{server.url}/collab/?doc=pad&name={name}")
            page.wait_for_function("window.collab && window.collab.synced()")
            pages.append(page)
        ada, linus = pages
        ada.locator("#text").click()
        ada.keyboard.press("Control+End")
        ada.keyboard.type("written before the restart.")
        wait_converged(server, "pad", ada, linus)

        server.stop_server()
        expect(ada.locator("#sync")).to_have_attribute("data-state", "offline")
        ada.keyboard.type(" And during it.")
        server.start_server()

        for page in (ada, linus):
            expect(page.locator("#status")).to_have_attribute("data-state", "connected")
        text = wait_converged(server, "pad", ada, linus)
        assert text.endswith("written before the restart. And during it.")
        assert text.startswith("Welcome to the shared pad!")  # written once, not twice
        assert text.count("Welcome to the shared pad!") == 1
        # Editing goes on.
        linus.locator("#text").click()
        linus.keyboard.press("Control+Home")
        linus.keyboard.type(">> ")
        assert wait_converged(server, "pad", ada, linus).startswith(">> ")
    finally:
        server.close()
