"""The stock ticker in real headless Chromium: the watchlist updates live and can be edited;
the board arrives as deltas."""

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


def test_watchlist_updates_and_edits(new_page: Any, live_server: LiveServer) -> None:
    page = new_page(width=1360, height=860)
    page.goto(f"{live_server.url}/ticker/")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    rows = page.locator("#rows tr[data-symbol]")
    expect(rows).to_have_count(12)
    expect(page.locator("#heatmap button")).to_have_count(300)

    # Prices move: the first rows' "last" cells change and flash.
    page.wait_for_function("window.ticker.quotes.size >= 12")
    before = [rows.nth(i).locator("td.last").inner_text() for i in range(6)]
    page.wait_for_function(
        """(before) => [...document.querySelectorAll('#rows tr[data-symbol]')].slice(0, 6)
             .some((tr, i) => tr.querySelector('td.last').innerText !== before[i])""",
        arg=before,
    )
    page.wait_for_selector("td.last span.flash-up, td.last span.flash-down")

    # The board comes as Fossil deltas: the page asks, the namespace offers them.
    board = "window.ticker.client.subscriptions.get('ticker-board:all')"
    assert page.evaluate(f"{board}.deltaOn")
    page.wait_for_function(f"{board}.deltas >= 1", timeout=15000)

    # Add a symbol from the market map, another by typing; remove one.
    tile = page.locator("#heatmap button:not(.watched)").first
    added = tile.inner_text()
    tile.click()
    expect(page.locator(f'#rows tr[data-symbol="{added}"]')).to_be_visible()
    expect(page.locator(f'#rows tr[data-symbol="{added}"] td.last')).not_to_have_text("")
    expect(rows).to_have_count(13)
    listing = page.evaluate("window.ticker.watch()")
    candidates = page.evaluate(
        "(w) => [...document.querySelectorAll('#heatmap button')].map(b => b.textContent)"
        ".filter(s => !w.includes(s))",
        listing,
    )
    typed = candidates[0]
    page.locator("#add-input").fill(typed.lower())
    page.locator("#add-input").press("Enter")
    expect(page.locator(f'#rows tr[data-symbol="{typed}"]')).to_be_visible()
    expect(rows.first).to_have_attribute("data-symbol", typed)  # new symbols go on top
    page.locator("#add-input").fill("no such company")
    page.locator("#add-input").press("Enter")
    message = page.evaluate("document.getElementById('add-input').validationMessage")
    assert message == "No symbol or company “no such company” on this market."
    expect(rows).to_have_count(14)
    first = rows.last.get_attribute("data-symbol")
    rows.last.locator("button.remove").click()
    expect(page.locator(f'#rows tr[data-symbol="{first}"]')).to_have_count(0)
    expect(rows).to_have_count(13)
    assert first not in page.evaluate("window.ticker.watch()")

    # The watchlist is kept across reloads.
    page.reload()
    expect(rows).to_have_count(13)
    expect(page.locator(f'#rows tr[data-symbol="{typed}"]')).to_be_visible()
    page.wait_for_function("window.ticker.quotes.size >= 13")
    page.wait_for_timeout(1200)  # a second of ticks: flashes and sparklines
    screenshot(page, "ticker")
