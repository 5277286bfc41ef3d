"""The app registry of ``wsend serve`` (:mod:`wsend.apps`): loading, merging, running."""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

import pytest

import wsend.apps as apps_module
from wsend.apps import App, AppRunner, clean_name, connect_info, hub_options, load_apps
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions, NamespaceOptions


def make_app(name: str, namespaces: dict[str, NamespaceOptions], **attrs: Any) -> App:
    module = types.ModuleType(f"wsend.apps.{name}")
    module.NAME = name  # type: ignore[attr-defined]
    module.TITLE = name.title()  # type: ignore[attr-defined]
    module.DESCRIPTION = f"The {name} app."  # type: ignore[attr-defined]
    module.namespaces = lambda: namespaces  # type: ignore[attr-defined]
    for key, value in attrs.items():
        setattr(module, key, value)
    return App.from_module(module)


def test_chat_is_loaded_and_missing_apps_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "wsend.apps"):
        apps = load_apps(["chat", "no_such_app"])
    assert [app.name for app in apps] == ["chat"]
    assert "app 'no_such_app' skipped" in caplog.text
    chat = apps[0]
    assert chat.namespaces["chat"].recovery
    assert chat.namespaces["chat"].presence
    assert chat.namespaces["chat-typing"].history_size == 0


def test_broken_app_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    module = types.ModuleType("wsend.apps.broken")  # no NAME
    with pytest.raises(TypeError, match="NAME"):
        App.from_module(module)


def test_hub_options_merge_namespaces() -> None:
    a = make_app("a", {"a": NamespaceOptions(publish=True)})
    b = make_app("b", {"b": NamespaceOptions(presence=True)})
    base = HubOptions(namespaces={"b": NamespaceOptions(), "": NamespaceOptions()})
    options = hub_options([a, b], base, allow_anonymous=True)
    assert options.allow_anonymous
    assert options.namespaces["a"].publish
    assert not options.namespaces["b"].presence  # the configuration wins over the app
    with pytest.raises(ValueError, match="declared by a and c"):
        hub_options([a, make_app("c", {"a": NamespaceOptions()})])


def test_clean_name_and_connect_info() -> None:
    assert clean_name("  Ada \x00 Lovelace\n ") == "Ada Lovelace"
    assert clean_name("x" * 100) == "x" * 32
    assert clean_name("   ") is None
    assert clean_name(42) is None
    session = types.SimpleNamespace(info=None, user="")
    assert connect_info(session, {"name": " Bob "}) == {"name": "Bob"}  # type: ignore[arg-type]
    assert session.info == {"name": "Bob"}
    # Info from a token is kept.
    session = types.SimpleNamespace(info={"name": "Token"}, user="u1")
    assert connect_info(session, {"name": "Other"}) == {"name": "Token"}  # type: ignore[arg-type]


async def test_runner_starts_and_cancels_app_tasks() -> None:
    events: list[str] = []

    async def start(hub: Hub) -> None:
        events.append("started")
        try:
            await asyncio.Event().wait()
        finally:
            events.append("stopped")

    async def failing(hub: Hub) -> None:
        raise RuntimeError("boom")

    def setup(hub: Hub) -> None:
        hub.rpc("x.ping")(lambda session, data: "pong")

    apps = [
        make_app("x", {}, start=start, setup=setup),
        make_app("y", {}, start=failing),
    ]
    hub = Hub(hub_options(apps, allow_anonymous=True))
    runner = AppRunner(hub, apps)
    assert "x.ping" in hub.rpc_handlers
    runner.start()
    await asyncio.sleep(0.01)
    await runner.stop()
    assert events == ["started", "stopped"]
    await hub.close()


async def test_a_failed_app_is_started_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(apps_module, "RESTART_DELAY", 0.01)
    runs: list[int] = []
    running = asyncio.Event()

    async def flaky(hub: Hub) -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise ConnectionError("the engine is away")
        running.set()
        await asyncio.Event().wait()

    apps = [make_app("z", {}, start=flaky)]
    hub = Hub(hub_options(apps, allow_anonymous=True))
    runner = AppRunner(hub, apps)
    with caplog.at_level(logging.ERROR, logger="wsend.apps"):
        runner.start()
        await asyncio.wait_for(running.wait(), 5)
    assert runs == [0, 1, 2]
    assert caplog.text.count("app 'z' failed; restarting it in") == 2
    await runner.stop()
    await hub.close()
