"""Fixtures for the browser tests: ``wsend serve`` in a background thread, and headless
Chromium driven by Playwright.

The server runs in-process (:class:`~wsend.cli.serve.HubServer` on its own event loop in a
thread) so that tests can reach the hub directly, e.g. to drop every connection. Chromium is
Debian's ``/usr/bin/chromium``; without it the browser tests are skipped, or fail when the
``CI`` environment variable is set (a CI run must not pass by skipping them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from wsend.cli.serve import HubServer, ServeSettings

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "test-api-key"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


class LiveServer:
    """``wsend serve`` running on a free port in a thread, with helpers for tests."""

    def __init__(self, **settings_kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # The Yjs documents go to a temporary directory, kept across restart_server().
        settings_kwargs.setdefault("data_dir", tempfile.mkdtemp(prefix="wsend-web-"))
        self.settings = ServeSettings(port=0, api_key=API_KEY, **settings_kwargs)
        self.server: HubServer = self.call(self._make(self.settings))
        self.url = self.server.url.rstrip("/")

    async def _make(self, settings: ServeSettings) -> HubServer:
        server = HubServer(settings)
        await server.start()
        return server

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def run(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the server's loop (the hub isn't thread-safe)."""

        async def wrapper() -> T:
            return fn()

        result: T = self.call(wrapper())
        return result

    def api(self, method: str, body: dict[str, Any]) -> Any:
        """Call the hub's HTTP API, as a backend would."""
        request = urllib.request.Request(
            f"{self.url}/api/{method}",
            data=json.dumps(body).encode(),
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())["result"]

    async def outage(self, channel: str, texts: list[str]) -> int:
        """Close every hub connection with 4000 (reconnect) while keeping the hub's memory
        (history, epochs), wait until they are gone, then publish ``texts`` to ``channel``
        while nobody is connected: only recovery can bring these to the pages. Returns how
        many connections were closed. Run it with :meth:`call`."""
        hub = self.server.hub
        users = {session.user for session in hub.sessions()}
        dropped = sum(hub.disconnect(user, 4000, "reconnect") for user in users)
        for _ in range(1000):  # the hub has no event for "all gone": poll, up to 5 s
            if not hub.sessions():
                break
            await asyncio.sleep(0.005)
        assert not hub.sessions()
        for text in texts:
            await hub.publish(channel, {"name": "server", "text": text})
        return dropped

    def stop_server(self) -> None:
        """Stop the server as Ctrl-C does (connections closed with 4001): pages can't
        reconnect until :meth:`start_server`."""
        self.call(self.server.stop())

    def start_server(self) -> None:
        """Start a new server, with empty memory, on the same port."""
        port = int(self.url.rsplit(":", 1)[1])
        settings = dataclasses.replace(self.settings, port=port)
        self.server = self.call(self._make(settings))

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        if self.settings.data_dir is not None:
            shutil.rmtree(self.settings.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    server = LiveServer()
    try:
        yield server
    finally:
        server.close()


# Module scope: Playwright's sync API runs an event loop in this thread while it is open, which
# asyncio tests can't share; it must be gone before other modules' async tests run.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(f"browser tests can't run in CI: {reason}")
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install wsend[browser]")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """``new_page(width=1280, height=800, allow=())``: a page in a fresh context (own
    storage); uncaught exceptions and errors logged to the console (a failed request, a
    failed WebSocket connection...) fail the test, unless they match a regular expression
    of ``allow`` (a test that refuses connections on purpose)."""
    contexts = []
    errors: list[str] = []

    def make(width: int = 1280, height: int = 800, allow: tuple[str, ...] = ()) -> Any:
        def on_console(message: Any) -> None:
            if message.type == "error" and not any(re.search(p, message.text) for p in allow):
                errors.append(f"console: {message.text} ({message.location.get('url', '')})")

        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", on_console)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page: {errors}"


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot to tests/screenshots/NAME.png.

    With ``WSEND_UPDATE_SCREENSHOTS=1`` it is also copied to docs/screenshots/ (the committed
    ones), so that running the tests doesn't change tracked files.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", full_page=full_page)
    assert path.stat().st_size > 1000, f"empty screenshot {path}"
    if os.environ.get("WSEND_UPDATE_SCREENSHOTS"):
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
    return path
