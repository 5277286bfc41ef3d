"""``wsend serve``: the hub with its demo apps and the browser client, on one port.

What one port serves:

- ``/``: the landing page; ``/chat/``, ``/game/``, ``/ticker/``, ``/collab/``: the demo apps;
  ``/wsend.js``: the browser client; ``/style.css``: the shared styles (all from ``wsend/web``).
- ``/ws``: the hub's WebSocket endpoint; ``/yjs/<room>``: its y-websocket endpoint (Yjs
  documents kept in ``--data-dir``); ``/api/<method>``: its HTTP API (with ``--api-key``);
  ``/metrics``: Prometheus metrics; ``/healthz``: the health check; ``/apps.json``: the apps
  this server runs.

The apps are the modules of :mod:`wsend.apps` (see its docstring for their interface).
:class:`HubServer` runs all of this in a running event loop (the tests use it in-process);
:func:`run` adds the start line and the signal handling of the command.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import ssl
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .. import serve
from ..apps import App, AppRunner, hub_options, load_apps
from ..asyncio.routes import Router
from ..asyncio.server import Server, ServerConnection
from ..hub.broker import Broker, Presence
from ..hub.codes import DisconnectCode
from ..hub.node import Hub
from ..hub.options import ConfigError, HubOptions, JwtOptions, NamespaceOptions
from ..hub.yjs import MemoryStore, SQLiteStore, YjsOptions, YjsServer, YStore
from ..protocol.hosts import AllowedHosts
from ..protocol.http import Headers, Request, Response
from .errors import CliError, ExitCode
from .options import on_stop_signals

__all__ = ["WEB_DIR", "HubServer", "ServeSettings", "command", "load_config", "run"]

#: The browser client and the demo pages.
WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# Seconds a shutdown takes at most: the apps' tasks, the connections' closing handshakes
# and the engines share them (a worker must be done well within its supervisor's grace,
# wsend.hub.workers.STOP_GRACE).
SHUTDOWN_TIMEOUT = 8.0

EPILOG = """\b
Examples:
  wsend serve                           # http://127.0.0.1:8765/, anonymous demos
  wsend serve --port 0                  # any free port (printed at start)
  wsend serve --host 0.0.0.0 --certfile cert.pem --keyfile key.pem
  wsend serve --jwt-secret "$SECRET"    # require connection tokens (HS256)
  wsend serve --api-key "$KEY"          # enable the HTTP API: POST /api/publish ...
  wsend serve --config hub.toml         # [server] and [hub] tables, see docs/serve.md
  wsend serve --host 0.0.0.0 --allowed-hosts chat.example.com,localhost

Without --jwt-secret or --jwt-public-key anyone may connect anonymously (fine for the demos
on your machine; give a key before exposing the server). Logs one line when listening, with
the URL to open. Ctrl-C or SIGTERM closes the connections and exits with 0.

\b
Exit codes:
  0  stopped by Ctrl-C or SIGTERM
  1  could not start (address in use, bad certificate, bad configuration)
  2  usage error
"""

#: The namespace of the Yjs documents (``/yjs/<room>`` is the channel ``yjs:<room>``), added
#: unless the ``[hub]`` table configures it.
YJS_NAMESPACE = "yjs"


def yjs_namespace() -> NamespaceOptions:
    """The default options of :data:`YJS_NAMESPACE`: every client may write; presence and
    join/leave show who is in a document; a short history lets the Redis engine fill gaps in
    the updates relayed between nodes (60 s, 200 updates)."""
    return NamespaceOptions(
        publish=True, presence=True, join_leave=True, history_size=200, history_ttl=60.0
    )


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/wsend``, or ``~/.local/share/wsend``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wsend"


# Keys of the [server] table of a configuration file (command-line options win over them).
_SERVER_KEYS = (
    "data_dir",
    "yjs_store",
    "host",
    "port",
    "certfile",
    "keyfile",
    "api_key",
    "jwt_secret",
    "jwt_public_key",
    "redis",
    "workers",
    "allowed_hosts",
)


@dataclass
class ServeSettings:
    """Everything ``wsend serve`` needs, from options and the configuration file.

    Attributes:
        host, port: where to listen (``port=0``: any free port).
        certfile, keyfile: PEM files for TLS (``https://`` and ``wss://``).
        jwt_secret: the HMAC secret for connection tokens; tokens become required.
        jwt_public_key: a PEM public key (RSA or EC) for tokens; tokens become required.
        api_key: enables the HTTP API for requests carrying it.
        hub: the ``[hub]`` table of the configuration file (:meth:`HubOptions.from_dict`).
        apps: the names of the apps to run.
        redis: a Redis URL: the hub shares channels, history and presence through it.
        workers: processes sharing the port (SO_REUSEPORT); more than one needs ``redis``.
        worker: this process's index among the workers (0 runs the apps' background tasks).
        allowed_hosts: the Host values the server answers to (others get 421), or ``None``
            to answer any (see :class:`~wsend.protocol.hosts.AllowedHosts`).
        data_dir: where the Yjs documents are kept (``yjs.sqlite3``); by default
            ``$XDG_DATA_HOME/wsend`` (``~/.local/share/wsend``).
        yjs_store: ``"sqlite"`` (in ``data_dir``), ``"redis"`` (in ``redis``, for nodes on
            several machines) or ``"memory"`` (forgotten at exit).
        yjs: the ``[yjs]`` table of the configuration file (:class:`YjsOptions` fields).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    certfile: str | None = None
    keyfile: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    api_key: str | None = None
    hub: dict[str, Any] = field(default_factory=dict)
    apps: tuple[str, ...] | None = None
    redis: str | None = None
    workers: int = 1
    worker: int = 0
    allowed_hosts: list[str] | None = None
    data_dir: str | None = None
    yjs_store: str = "sqlite"
    yjs: dict[str, Any] = field(default_factory=dict)

    def hub_options(self, apps: list[App]) -> HubOptions:
        """The hub's options: the ``[hub]`` table, the apps' namespaces and the JWT keys.

        Raises:
            ConfigError: a bad ``[hub]`` table.
        """
        base = HubOptions.from_dict(self.hub)
        if YJS_NAMESPACE not in base.namespaces:
            namespaces = {**base.namespaces, YJS_NAMESPACE: yjs_namespace()}
            base = dataclasses.replace(base, namespaces=namespaces)
        jwt = base.jwt
        if self.jwt_secret or self.jwt_public_key:
            jwt = jwt or JwtOptions()
            secret = self.jwt_secret or jwt.secret
            public_key = self.jwt_public_key or jwt.public_key
            jwt = dataclasses.replace(jwt, secret=secret, public_key=public_key)
        # Anonymous access for the demos unless tokens are configured (or the file says).
        anonymous = self.hub.get("allow_anonymous", jwt is None)
        try:
            return hub_options(apps, base, jwt=jwt, allow_anonymous=anonymous)
        except ValueError as exc:
            raise ConfigError("namespaces", str(exc)) from exc


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON configuration file: ``{"server": {...}, "hub": {...}}``.

    Raises:
        CliError: the file can't be read or parsed, or has unknown top-level keys.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the configuration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{path}: the configuration must be a table/object")
    unknown = set(data) - {"server", "hub", "yjs"}
    if unknown:
        raise CliError(f"{path}: unknown key {sorted(unknown)[0]!r} (expected server, hub, yjs)")
    for table in ("server", "hub", "yjs"):
        if not isinstance(data.get(table, {}), dict):
            raise CliError(f"{path}: [{table}] must be a table")
    bad = set(data.get("server", {})) - set(_SERVER_KEYS)
    if bad:
        raise CliError(f"{path}: unknown key server.{sorted(bad)[0]}")
    return data


def make_engines(settings: ServeSettings) -> tuple[Broker | None, Presence | None]:
    """The hub's broker and presence engines; ``None`` means the in-memory ones.

    With ``--redis URL`` they are the Redis engine's: every node (and every worker process)
    shares channels, history and presence through Redis.
    """
    if settings.redis is None:
        return None, None
    from ..hub.redis import engine_from_url

    try:
        return engine_from_url(settings.redis)
    except ValueError as exc:
        raise CliError(f"bad --redis URL: {exc}", ExitCode.USAGE) from exc


def make_yjs_store(settings: ServeSettings) -> YStore:
    """The Yjs documents' store: SQLite in the data directory, Redis or memory.

    Raises:
        CliError: an unknown store, or ``redis`` without ``--redis``.
    """
    kind = settings.yjs_store
    if kind == "sqlite":
        return SQLiteStore(settings.data_dir or default_data_dir())
    if kind == "memory":
        return MemoryStore()
    if kind == "redis":
        if settings.redis is None:
            raise CliError("--yjs-store redis needs --redis", ExitCode.USAGE)
        from ..hub.yjs.redis_store import RedisStore

        return RedisStore.from_url(settings.redis)
    raise CliError(f"unknown Yjs store {kind!r} (sqlite, redis, memory)", ExitCode.USAGE)


class HubServer:
    """The hub, the apps and the web pages on one server, in the running event loop.

    Use ``await start()``, then ``await stop()``; :attr:`hub` is the hub (for its Python API),
    :attr:`url` the address of the landing page.
    """

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.apps = load_apps(settings.apps) if settings.apps is not None else load_apps()
        broker, presence = make_engines(settings)
        self.hub = Hub(
            settings.hub_options(self.apps),
            broker=broker,
            presence=presence,
            api_key=settings.api_key,
        )
        self.runner = AppRunner(self.hub, self.apps)
        yjs_options = YjsOptions.from_dict(settings.yjs)
        self.yjs = YjsServer(
            self.hub, yjs_options, store=make_yjs_store(settings), initial=self._yjs_document
        )
        self.server: Server | None = None

    def router(self) -> Router:
        """The HTTP routes: health, the list of apps, then the static web files."""
        router = Router()
        router.add("/healthz", lambda request: Response.text(200, "OK\n"))
        router.add("/apps.json", self._apps_json)
        # Browsers ask for /favicon.ico on pages without an icon link (JSON, metrics...).
        router.add("/favicon.ico", _favicon)
        router.static("/", WEB_DIR)
        return router

    def _apps_json(self, request: Request) -> Response:
        apps = [
            {"name": a.name, "title": a.title, "description": a.description, "url": f"/{a.name}/"}
            for a in self.apps
        ]
        return Response.json(200, {"apps": apps})

    async def start(self) -> None:
        """Listen, start the hub and the apps.

        Raises:
            CliError: the server could not listen or load the certificate.
        """
        s = self.settings
        kwargs = self.hub.serve_kwargs(self.router())
        kwargs["process_request"] = [self._process_request]
        kwargs["max_message_size"] = max(
            kwargs["max_message_size"], self.yjs.options.max_message_size
        )
        try:
            self.server = await serve(
                self._handler,
                s.host,
                s.port,
                certfile=s.certfile,
                keyfile=s.keyfile,
                reuse_port=True if s.workers > 1 else None,
                allowed_hosts=s.allowed_hosts,
                **kwargs,
            )
        except ssl.SSLError as exc:
            raise CliError(f"cannot load the certificate: {exc}") from exc
        except OSError as exc:
            where = f"{s.host}:{s.port}"
            raise CliError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        await self.hub.start()
        if s.worker == 0:
            # Background tasks (the ticker's feed, the game's loop) run once, in worker 0.
            self.runner.start()

    def _yjs_document(self, room: str) -> bytes | None:
        """A new Yjs document's first update, from the first app that has one."""
        for app in self.apps:
            if app.yjs_document is not None:
                update = app.yjs_document(room)
                if update is not None:
                    return update
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        """The hub's endpoint, or the Yjs endpoint for ``/yjs/...``."""
        if self.yjs.handles(ws.request.path if ws.request is not None else ""):
            await self.yjs.handler(ws)
        else:
            await self.hub.handler(ws)

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.yjs.handles(request.path):
            return None
        return self.hub.process_request(ws, request)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def url(self) -> str:
        """The landing page's URL, e.g. ``http://127.0.0.1:8765/``."""
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if self.settings.certfile else "http"
        return f"{scheme}://{shown}:{self.port}/"

    async def stop(self) -> None:
        """Stop the apps, close the hub's connections (4001: reconnect later), then the
        engines and the server."""
        # One deadline for the whole stop (see SHUTDOWN_TIMEOUT): each step gets what the
        # steps before it left, and the last ones a short minimum.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_TIMEOUT
        await self.runner.stop()
        # The Yjs documents are compacted and stored before the engines close.
        try:
            async with asyncio.timeout(max(1.0, deadline - loop.time() - 2.0)):
                await self.yjs.close()
        except TimeoutError:
            log("the Yjs documents were not all stored in time")
        # Let the connections end (and leave their channels) before the engines close:
        # ``Hub.close`` alone closes the engines under connections still cleaning up.
        hub = self.hub
        for user in {session.user for session in hub.sessions()}:
            hub.disconnect(user, DisconnectCode.SHUTDOWN, "shutdown")
        while hub.sessions() and loop.time() < deadline:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
        try:
            async with asyncio.timeout(max(1.0, deadline - loop.time())):
                await hub.close(DisconnectCode.SHUTDOWN, "shutdown")
        except TimeoutError:
            log("the hub's engines did not close in time: leaving them")
        if self.server is not None:
            await self.server.shutdown(timeout=max(0.5, deadline - loop.time()))


def _favicon(request: Request) -> Response:
    icon = (WEB_DIR / "favicon.svg").read_bytes()
    return Response.bytes(200, icon, "image/svg+xml", Headers({"Cache-Control": "max-age=86400"}))


def log(message: str) -> None:
    """Write a timestamped line to stderr."""
    click.echo(f"{time.strftime('%H:%M:%S')} {message}", err=True)


async def run(settings: ServeSettings) -> int:
    """Serve until SIGINT or SIGTERM; return 0.

    Raises:
        CliError: the server could not start (exit code 1).
    """
    try:
        server = HubServer(settings)
    except (ConfigError, ValueError) as exc:
        raise CliError(f"bad configuration: {exc}") from exc
    await server.start()
    # Handlers first: a signal sent as soon as the line below appears must stop us cleanly.
    stop = asyncio.Event()
    undo = on_stop_signals(stop.set)
    apps = ", ".join(app.name for app in server.apps) or "no apps"
    auth = "tokens required" if server.hub.options.jwt else "anonymous access"
    if settings.worker == 0:
        engine = f"Redis at {settings.redis}" if settings.redis else "in-memory engine"
        workers = f", {settings.workers} workers" if settings.workers > 1 else ""
        log(
            f"wsend hub on {server.url} ({apps}; {auth}; {engine}{workers})"
            " - open it in a browser, Ctrl-C to stop"
        )
    try:
        await stop.wait()
    finally:
        undo()
    log("shutting down")
    await server.stop()
    return ExitCode.OK


def _read_key(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc


@click.command("serve", epilog=EPILOG)
@click.option("--host", help="Interface to listen on.  [default: 127.0.0.1]")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port to listen on (0: any).  [default: 8765]"
)
@click.option(
    "--certfile",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate chain: serve https:// and wss://.",
)
@click.option(
    "--keyfile",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM private key, if not in --certfile.",
)
@click.option("--jwt-secret", metavar="SECRET", help="HMAC secret of connection tokens.")
@click.option(
    "--jwt-public-key",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="PEM public key (RSA or EC) of connection tokens.",
)
@click.option("--api-key", metavar="KEY", help="Enable the HTTP API (/api/...) with this key.")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="TOML or JSON file with [server] and [hub] tables.",
)
@click.option(
    "--redis",
    metavar="URL",
    help="Share the hub through Redis: redis://HOST:PORT/DB (also rediss://, "
    "redis+sentinel://HOST:PORT/MASTER, redis+cluster://HOST:PORT,HOST:PORT).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Where the Yjs documents are kept.  [default: ~/.local/share/wsend]",
)
@click.option(
    "--yjs-store",
    type=click.Choice(["sqlite", "redis", "memory"]),
    help="Where the Yjs documents are kept: sqlite (in --data-dir), redis (in --redis, for "
    "nodes on several machines) or memory.  [default: sqlite]",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Processes sharing the port (SO_REUSEPORT); more than 1 needs --redis.  [default: 1]",
)
@click.option(
    "--allowed-hosts",
    metavar="HOSTS",
    multiple=True,
    help="Answer only requests for these hosts, comma-separated (example.com, "
    "example.com:8443, *.example.com, [::1]); others get 421.  [default: any]",
)
@click.pass_context
def command(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    certfile: str | None,
    keyfile: str | None,
    jwt_secret: str | None,
    jwt_public_key: str | None,
    api_key: str | None,
    config: str | None,
    redis: str | None,
    data_dir: str | None,
    yjs_store: str | None,
    workers: int | None,
    allowed_hosts: tuple[str, ...],
) -> None:
    """Run the hub with the demo apps (chat, game, ticker, collab) and the browser client."""
    data = load_config(config) if config else {}
    given = {
        "host": host,
        "port": port,
        "certfile": certfile,
        "keyfile": keyfile,
        "jwt_secret": jwt_secret,
        "jwt_public_key": _read_key(jwt_public_key),
        "api_key": api_key,
        "redis": redis,
        "data_dir": data_dir,
        "yjs_store": yjs_store,
        "workers": workers,
        "allowed_hosts": _split_hosts(allowed_hosts) if allowed_hosts else None,
    }
    server_table = dict(data.get("server", {}))
    if "jwt_public_key" in server_table:  # a file name in the configuration too
        server_table["jwt_public_key"] = _read_key(server_table["jwt_public_key"])
    values = {**server_table, **{k: v for k, v in given.items() if v is not None}}
    if values.get("keyfile") and not values.get("certfile"):
        raise CliError("--keyfile needs --certfile", ExitCode.USAGE)
    if isinstance(values.get("allowed_hosts"), str):  # one string in the configuration file
        values["allowed_hosts"] = _split_hosts((values["allowed_hosts"],))
    _check_hosts(values.get("allowed_hosts"))
    settings = ServeSettings(**values, hub=dict(data.get("hub", {})))
    settings = ServeSettings(**values, hub=dict(data.get("hub", {})), yjs=dict(data.get("yjs", {})))
    if settings.workers > 1:
        if settings.redis is None:
            raise CliError(
                "--workers needs --redis: each worker is a separate process with its own memory",
                ExitCode.USAGE,
            )
        from ..hub.workers import run_workers

        ctx.exit(run_workers(settings.workers, _worker_main, settings))
    ctx.exit(asyncio.run(run(settings)))


def _split_hosts(values: tuple[str, ...]) -> list[str]:
    return [host.strip() for value in values for host in value.split(",") if host.strip()]


def _check_hosts(hosts: list[str] | None) -> None:
    if hosts is None:
        return
    try:
        AllowedHosts(hosts)
    except (ValueError, TypeError, AttributeError) as exc:
        raise CliError(f"--allowed-hosts: {exc}", ExitCode.USAGE) from exc


def _worker_main(index: int, settings: ServeSettings) -> None:
    """One worker process of ``wsend serve --workers N`` (module level: spawned)."""
    import sys

    settings = dataclasses.replace(settings, worker=index)
    try:
        code = asyncio.run(run(settings))
    except CliError as exc:
        exc.show()
        code = exc.exit_code
    sys.exit(code)
