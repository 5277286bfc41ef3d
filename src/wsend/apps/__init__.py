"""The demo apps that ``wsend serve`` runs on one hub: chat, game, ticker and collab.

How an app is built
===================

An app is a module ``wsend/apps/<name>.py`` plus its page(s) in ``wsend/web/<name>/``
(``index.html``, and any ``.js``/``.css`` beside it). ``wsend serve`` serves ``wsend/web/`` as
static files, so the page of app ``chat`` is ``/chat/``; pages load the browser client with
``import { Client } from "/wsend.js"`` and the shared look with ``/style.css``.

The module exposes:

``NAME: str``
    The app's name: its page is ``/<NAME>/``, its namespaces start with it by convention
    (``chat``, ``chat-typing``...). Must equal the module name.
``TITLE: str``
    A short title for the landing page ("Chat").
``DESCRIPTION: str``
    One or two sentences for the landing page: what the app shows.
``def namespaces() -> dict[str, NamespaceOptions]``
    The hub namespaces the app uses. ``wsend serve`` merges every app's namespaces into one
    :class:`~wsend.hub.options.HubOptions`; two apps declaring the same namespace is an error.
``async def start(hub: Hub) -> None``
    Runs for the life of the server, in its own task: background work such as a game's tick
    loop or a market feed publishing with ``await hub.publish(channel, data)``. Return at once
    if there is nothing to do. It is cancelled when the server stops (before ``hub.close()``):
    let :class:`asyncio.CancelledError` propagate (clean up in ``finally``). An exception
    raised by it is logged and doesn't stop the other apps.

And optionally:

``def setup(hub: Hub) -> None``
    Called once before the server starts: register RPC handlers with ``@hub.rpc("name")``
    (prefix their names with the app's name: ``game.move``). Don't use
    ``hub.on_connect_callback`` or ``hub.on_subscribe_callback``: the server owns those (see
    below).
``ORDER: int``
    Position on the landing page (smaller first; default 100).
``def yjs_document(room: str) -> bytes | None``
    The first Yjs update of a new document of the y-websocket endpoint (``/yjs/<room>``;
    ``room`` is its channel, e.g. ``yjs:collab.pad``), or ``None`` for an empty one. It must
    be the same bytes on every node (write it with a fixed Yjs client id).

What the server does for every app
==================================

- Anonymous connections are allowed (unless ``--jwt-secret``/``--jwt-public-key`` is given).
  A client may send ``{"name": "Ada"}`` as its ``connect`` data: the server's connect callback
  (:func:`connect_info`) then sets the connection's public info to ``{"name": "Ada"}`` (at
  most :data:`MAX_NAME` characters) unless a token already gave it info. That info shows in
  presence, ``join``/``leave`` pushes and in the ``info`` of the publications the client makes.
  Its result is ``{"name": ...}``.
- ``start(hub)`` tasks are started after the server listens and cancelled at shutdown.

Use :func:`load_apps` to import the apps (missing modules are skipped with a warning),
:func:`hub_options` to merge their namespaces, and :class:`AppRunner` to run them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..hub.options import HubOptions, NamespaceOptions

if TYPE_CHECKING:
    from ..hub.node import Hub
    from ..hub.session import Session

__all__ = [
    "APP_NAMES",
    "MAX_NAME",
    "App",
    "AppRunner",
    "connect_info",
    "hub_options",
    "load_apps",
]

logger = logging.getLogger("wsend.apps")

#: Seconds before an app whose ``start`` failed is started again; doubled at each failure in
#: a row, up to MAX_RESTART_DELAY (a game loop or a feed shouldn't stay dead after a
#: transient error, nor spin on a permanent one).
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0

#: The demo apps, in the order of the landing page (an app's ``ORDER`` may change it).
APP_NAMES: tuple[str, ...] = ("chat", "game", "ticker", "collab")

#: The longest display name accepted in ``connect`` data.
MAX_NAME = 32

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class App:
    """One loaded app module, with its declarations checked."""

    name: str
    title: str
    description: str
    namespaces: dict[str, NamespaceOptions]
    start: Callable[[Hub], Awaitable[None]] | None = None
    setup: Callable[[Hub], None] | None = None
    order: int = 100
    yjs_document: Callable[[str], bytes | None] | None = None
    module: ModuleType | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_module(cls, module: ModuleType) -> App:
        """Read an app's declarations from its module.

        Raises:
            TypeError: a required attribute is missing or has the wrong type.
        """
        name = _attr(module, "NAME", str)
        namespaces = module.namespaces() if hasattr(module, "namespaces") else {}
        if not isinstance(namespaces, Mapping) or not all(
            isinstance(v, NamespaceOptions) for v in namespaces.values()
        ):
            raise TypeError(f"{module.__name__}.namespaces() must return NamespaceOptions")
        return cls(
            name=name,
            title=_attr(module, "TITLE", str),
            description=_attr(module, "DESCRIPTION", str),
            namespaces=dict(namespaces),
            start=getattr(module, "start", None),
            setup=getattr(module, "setup", None),
            order=int(getattr(module, "ORDER", 100)),
            yjs_document=getattr(module, "yjs_document", None),
            module=module,
        )


def _attr(module: ModuleType, name: str, kind: type) -> Any:
    value = getattr(module, name, None)
    if not isinstance(value, kind):
        raise TypeError(f"{module.__name__}.{name} must be a {kind.__name__}")
    return value


def load_apps(names: Iterable[str] = APP_NAMES) -> list[App]:
    """Import the apps ``wsend.apps.<name>``; skip (with a warning) those that are missing
    or broken, so one unfinished app doesn't stop the others. Sorted by ``ORDER``."""
    apps = []
    for name in names:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
            apps.append(App.from_module(module))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                logger.warning("app %r skipped: %s", name, exc)
            else:
                logger.warning("app %r skipped: no module wsend.apps.%s", name, name)
        except Exception as exc:
            logger.warning("app %r skipped: %s", name, exc)
    return sorted(apps, key=lambda app: app.order)


def hub_options(apps: Iterable[App], base: HubOptions | None = None, **changes: Any) -> HubOptions:
    """``base`` (defaults if ``None``) with every app's namespaces added, and ``changes``.

    Namespaces configured in ``base`` win over an app's (a config file may tune them).

    Raises:
        ValueError: two apps declare the same namespace.
    """
    base = base or HubOptions()
    merged: dict[str, NamespaceOptions] = {}
    owners: dict[str, str] = {}
    for app in apps:
        for ns, options in app.namespaces.items():
            if ns in owners:
                raise ValueError(f"namespace {ns!r} is declared by {owners[ns]} and {app.name}")
            owners[ns] = app.name
            merged[ns] = options
    merged.update(base.namespaces)
    return dataclasses.replace(base, **{**changes, "namespaces": merged})


def clean_name(value: Any) -> str | None:
    """A display name from untrusted input: trimmed, no control characters, at most
    :data:`MAX_NAME` characters; ``None`` if nothing is left."""
    if not isinstance(value, str):
        return None
    name = " ".join(_CONTROL.sub("", value).split())[:MAX_NAME]
    return name or None


def connect_info(session: Session, data: Any) -> dict[str, Any]:
    """The server's connect callback: take a display name from ``connect`` data.

    Connections whose token carried ``info`` keep it. Others get ``{"name": NAME}`` from
    ``data["name"]`` when given.
    """
    info = session.info
    if info is None and isinstance(data, Mapping):
        name = clean_name(data.get("name"))
        if name is not None:
            session.info = info = {"name": name}
    name = info.get("name") if isinstance(info, Mapping) else None
    return {"name": name if isinstance(name, str) else session.user or None}


class AppRunner:
    """Sets up apps on a hub, runs their ``start`` tasks, and stops them."""

    def __init__(self, hub: Hub, apps: Iterable[App]) -> None:
        self.hub = hub
        self.apps = list(apps)
        self._tasks: list[asyncio.Task[None]] = []
        hub.on_connect_callback(connect_info)
        for app in self.apps:
            if app.setup is not None:
                app.setup(hub)

    def start(self) -> None:
        """Start each app's ``start(hub)`` in its own task."""
        loop = asyncio.get_running_loop()
        for app in self.apps:
            if app.start is not None:
                task = loop.create_task(self._run(app), name=f"wsend-app-{app.name}")
                self._tasks.append(task)

    async def _run(self, app: App) -> None:
        """Run ``app.start``; if it fails (say the Redis engine was unreachable for a
        moment), log it and start it again after a delay that doubles at each failure in a
        row, from :data:`RESTART_DELAY` up to :data:`MAX_RESTART_DELAY`."""
        assert app.start is not None
        delay = RESTART_DELAY
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await app.start(self.hub)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if loop.time() - started > MAX_RESTART_DELAY:
                    delay = RESTART_DELAY  # it had been running fine: not a crash loop
                logger.exception("app %r failed; restarting it in %g s", app.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    async def stop(self) -> None:
        """Cancel the apps' tasks and wait for them to finish."""
        # Cancel until they end: a task may swallow one cancellation (a client library that
        # turns it into its own error, caught by the app's retry loop). Give up after 3 s.
        pending = set(self._tasks)
        for _ in range(30):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        for task in pending:
            logger.warning("app task %s did not stop", task.get_name())
        for task in self._tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: already logged by the task itself
        self._tasks.clear()
