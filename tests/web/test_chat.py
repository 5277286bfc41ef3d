"""The landing page and the chat app in real headless Chromium.

Each test uses its own room, so tests share one server and one browser.
"""

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


def open_chat(new_page: Any, server: LiveServer, name: str, room: str, **size: Any) -> Any:
    page = new_page(**size)
    page.goto(f"{server.url}/chat/?name={name}#{room}")
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    if size.get("width", 1280) > 1000:  # the people list is hidden on small screens
        expect(page.locator("#people li", has_text=name)).to_be_visible()
    return page


def say(page: Any, text: str) -> None:
    page.locator("#text").fill(text)
    page.locator("#text").press("Enter")


def test_landing_page_links_the_four_apps(new_page: Any, live_server: LiveServer) -> None:
    page = new_page()
    page.goto(live_server.url + "/")
    for app in ("chat", "game", "ticker", "collab"):
        expect(page.locator(f'a.app-card[href="/{app}/"]')).to_be_visible()
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    expect(page.locator("#latency")).to_contain_text("ms")
    expect(page.locator('a[href="/chat/"] h2')).to_have_text("Chat")  # from apps.json
    screenshot(page, "landing", full_page=True)


def test_two_pages_see_each_other(new_page: Any, live_server: LiveServer) -> None:
    room = "lobby"
    ada = open_chat(new_page, live_server, "Ada", room)
    bob = open_chat(new_page, live_server, "Bob", room)
    # Presence both ways, and Ada is told that Bob joined.
    expect(ada.locator("#people li")).to_have_count(2)
    expect(bob.locator("#people li")).to_have_count(2)
    expect(ada.locator(".notice.join", has_text="Bob joined")).to_be_visible()

    say(ada, "Hi Bob! Shall we try the new hub?")
    expect(bob.locator(".message .bubble", has_text="Shall we try")).to_be_visible()
    say(bob, "Hi Ada, sure: it already feels instant.")
    expect(ada.locator(".message .bubble", has_text="feels instant")).to_be_visible()
    expect(ada.locator(".message.mine .bubble", has_text="Shall we try")).to_be_visible()
    say(ada, "Open it on your phone too, it adapts to small screens.")
    expect(bob.locator(".message .bubble", has_text="phone")).to_be_visible()
    screenshot(ada, "chat")
    screenshot(bob, "chat-second-window")

    bob.close()
    expect(ada.locator(".notice.leave", has_text="Bob left")).to_be_visible()
    expect(ada.locator("#people li")).to_have_count(1)


def test_typing_indicator(new_page: Any, live_server: LiveServer) -> None:
    room = "python"
    ada = open_chat(new_page, live_server, "Ada", room)
    bob = open_chat(new_page, live_server, "Bob", room)
    say(ada, "Has anyone tried asyncio.TaskGroup for the fan-out?")
    expect(bob.locator(".message .bubble", has_text="TaskGroup")).to_be_visible()
    bob.locator("#text").press_sequentially("I am writ")
    expect(ada.locator("#typing")).to_have_text("Bob is typing")
    expect(bob.locator("#typing")).to_have_text("")  # not for one's own typing
    screenshot(ada, "chat-typing")
    bob.locator("#text").press("Enter")
    expect(ada.locator("#typing")).to_have_text("")  # sending ends it at once
    expect(ada.locator(".message .bubble", has_text="I am writ")).to_be_visible()


def test_history_when_joining(new_page: Any, live_server: LiveServer) -> None:
    room = "history"
    for text in ("first", "second", "third"):
        live_server.api(
            "publish", {"channel": f"chat:{room}", "data": {"name": "bot", "text": text}}
        )
    page = open_chat(new_page, live_server, "Cleo", room)
    bubbles = page.locator(".message .bubble")
    expect(bubbles).to_have_text(["first", "second", "third"])
    expect(page.locator(".notice.history")).to_be_visible()
    # A backend may publish anything: a string, a number, an object without text.
    for data in ("plain string", 42, {"alert": "disk full"}):
        live_server.api("publish", {"channel": f"chat:{room}", "data": data})
    expect(bubbles).to_have_text(
        ["first", "second", "third", "plain string", "42", '{"alert":"disk full"}']
    )
    expect(page.locator(".message.server .meta strong").last).to_have_text("server")


def test_reconnect_recovers_missed_messages(new_page: Any, live_server: LiveServer) -> None:
    room = "random"
    ada = open_chat(new_page, live_server, "Ada", room)
    bob = open_chat(new_page, live_server, "Bob", room)
    say(ada, "before the outage")
    expect(bob.locator(".message .bubble", has_text="before the outage")).to_be_visible()
    texts = ["sent during the outage", "and another one"]
    assert live_server.call(live_server.outage(f"chat:{room}", texts)) >= 2
    for page in (ada, bob):
        expect(page.locator(".message .bubble", has_text="and another one")).to_be_visible()
        expect(
            page.locator(".notice.ok", has_text="caught up on 2 missed messages")
        ).to_be_visible()
        expect(page.locator("#status")).to_have_attribute("data-state", "connected")
        # Nothing shown twice.
        expect(page.locator(".message .bubble", has_text="before the outage")).to_have_count(1)
    say(bob, "back again")
    expect(ada.locator(".message .bubble", has_text="back again")).to_be_visible()
    screenshot(ada, "chat-reconnected")


def test_chat_on_a_phone(new_page: Any, live_server: LiveServer) -> None:
    room = "design"
    bob = open_chat(new_page, live_server, "Bob", room)
    say(bob, "The new landing page is up, have a look when you can.")
    page = open_chat(new_page, live_server, "Dee", room, width=390, height=760)
    expect(page.locator(".message .bubble", has_text="landing page")).to_be_visible()  # history
    expect(page.locator(".rooms")).to_be_hidden()
    expect(page.locator("#room-select")).to_be_visible()
    say(page, "Reading it on my phone: looks great!")
    expect(bob.locator(".message .bubble", has_text="on my phone")).to_be_visible()
    screenshot(page, "chat-phone")
    # Who's here: a panel opened from the room's header.
    expect(page.locator("#people-panel")).to_be_hidden()
    page.locator("#room-info").click()
    expect(page.locator("#people-panel")).to_be_visible()
    expect(page.locator("#people li span:last-child")).to_have_text(["Bob", "Dee (you)"])
    page.keyboard.press("Escape")
    expect(page.locator("#people-panel")).to_be_hidden()


@pytest.fixture
def own_server() -> Any:
    """A server of this test's own, which it may stop and start again."""
    server = LiveServer()
    try:
        yield server
    finally:
        server.close()


def test_server_restart_keeps_the_conversation(new_page: Any, own_server: LiveServer) -> None:
    refused = (r"WebSocket connection to .* failed",)  # while the server is down
    ada = open_chat(new_page, own_server, "Ada", "restart", allow=refused)
    bob = open_chat(new_page, own_server, "Bob", "restart", allow=refused)
    say(ada, "before the restart")
    expect(bob.locator(".message .bubble", has_text="before the restart")).to_be_visible()

    own_server.stop_server()
    for page in (ada, bob):
        expect(page.locator("#status")).not_to_have_attribute("data-state", "connected")
        expect(page.locator("#banner")).to_contain_text("reconnecting")
    say(ada, "typed while the server was down")  # waits for the connection, shown greyed
    expect(ada.locator(".message.pending .bubble", has_text="while the server")).to_be_visible()
    own_server.start_server()

    # The new server has no history (in-memory engine): the pages keep what they showed,
    # say that messages may be missing, and the waiting message is sent.
    for page in (ada, bob):
        expect(page.locator("#status")).to_have_attribute("data-state", "connected", timeout=15_000)
        expect(page.locator(".notice.warn", has_text="server restarted")).to_be_visible()
        expect(page.locator(".message .bubble", has_text="before the restart")).to_have_count(1)
        expect(page.locator(".message .bubble", has_text="while the server")).to_have_count(1)
        expect(page.locator("#people li")).to_have_count(2)
    expect(ada.locator(".message.pending")).to_have_count(0)
    expect(ada.locator(".message.mine .bubble", has_text="while the server")).to_be_visible()
    say(bob, "and we carry on")
    expect(ada.locator(".message .bubble", has_text="carry on")).to_be_visible()
