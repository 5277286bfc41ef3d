"""The game in real headless Chromium: two players see the shared world move."""

from __future__ import annotations

import os
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is missing: pip install wsend[browser]", allow_module_level=True)

from .conftest import LiveServer, screenshot


def join(new_page: Any, server: LiveServer, name: str) -> Any:
    page = new_page()
    page.goto(f"{server.url}/game/?name={name}")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    page.wait_for_function("window.game.player() !== null")
    return page


def position(page: Any, player: str) -> tuple[float, float]:
    p = page.evaluate("(id) => window.game.player(id)", player)
    assert p is not None
    return p["x"], p["y"]


def test_two_players_see_each_other_move(new_page: Any, live_server: LiveServer) -> None:
    ada = join(new_page, live_server, "Ada")
    bob = join(new_page, live_server, "Bob")
    ada_id, bob_id = ada.evaluate("window.game.me"), bob.evaluate("window.game.me")
    for page in (ada, bob):
        expect(page.locator("#board li", has_text="Ada")).to_be_visible()
        expect(page.locator("#board li", has_text="Bob")).to_be_visible()
    ada_start = position(bob, ada_id)
    bob_start = position(ada, bob_id)

    # Ada holds right, Bob holds up (keys pressed in each page, so each page's own input).
    ada.locator("#canvas").focus()
    ada.keyboard.down("ArrowRight")
    bob.locator("#canvas").focus()
    bob.keyboard.down("ArrowUp")
    # Each page sees the *other* player move, as the server moved them.
    bob.wait_for_function(
        "([id, x]) => window.game.player(id).x > x + 40 || window.game.player(id).x > 1100",
        arg=[ada_id, ada_start[0]],
    )
    ada.wait_for_function(
        "([id, y]) => window.game.player(id).y < y - 40 || window.game.player(id).y < 60",
        arg=[bob_id, bob_start[1]],
    )
    ada.keyboard.up("ArrowRight")
    bob.keyboard.up("ArrowUp")
    # Both render the same authoritative state (up to a tick or two of delivery).
    assert abs(position(ada, ada_id)[0] - position(bob, ada_id)[0]) < 30

    # The latency each page measured reaches the score board of the other.
    ada.wait_for_function(
        "(id) => window.game.player(id) && window.game.player(id).rtt !== null", arg=bob_id
    )
    expect(ada.locator("#board li", has_text="Bob")).to_contain_text("ms")
    expect(ada.locator("#fact-states")).not_to_have_text("0/s")
    screenshot(ada, "game")


def test_closing_the_page_removes_the_player(new_page: Any, live_server: LiveServer) -> None:
    ada = join(new_page, live_server, "Ada")
    eve = join(new_page, live_server, "Eve")
    eve_id = eve.evaluate("window.game.me")
    ada.wait_for_function("(id) => window.game.player(id) !== null", arg=eve_id)
    eve.close()
    ada.wait_for_function("(id) => window.game.player(id) === null", arg=eve_id, timeout=5000)
