"""Options shared by the client commands (``connect``, ``send``, ``bench``) and opening a
connection with them.

:func:`client_options` adds ``-H/--header``, ``--subprotocol``, ``--origin``, ``--token``,
``--insecure``, ``--cacert``, ``--compress/--no-compress``, ``--ping-interval``,
``--open-timeout``, ``--max-size``, ``--proxy``, ``--no-proxy`` and ``--proxy-cacert`` to a
command, and hands it one :class:`ClientSettings` as the ``client`` argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import signal
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .. import connect
from ..asyncio.client import ClientConnection
from ..exceptions import WebSocketError
from .errors import check_url, open_error

__all__ = [
    "SIZE",
    "ClientSettings",
    "client_options",
    "on_stop_signals",
    "open_connection",
]

F = TypeVar("F", bound=Callable[..., Any])

# RFC 7230 token characters, for header names given with -H.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_UNITS = {"": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30}


def parse_size(ctx: click.Context | None, param: click.Parameter | None, value: Any) -> Any:
    """A click callback reading a size in bytes: ``512``, ``64k``, ``1M``, ``1g`` (powers of 2).

    Raises:
        click.BadParameter: the value isn't a size.
    """
    if value is None or isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise click.BadParameter(f"{value!r} is not a size such as 512, 64k or 1M", ctx, param)
    return int(match.group(1)) * _UNITS[unit]


#: Keyword arguments of ``click.option`` for a size option.
SIZE: dict[str, Any] = {"callback": parse_size, "metavar": "SIZE"}


@dataclass(frozen=True)
class ClientSettings:
    """How to open a client connection, from the command line.

    Attributes:
        headers: extra request headers, in order (``--token`` adds Authorization here).
        subprotocols: subprotocols to offer, in order of preference.
        origin: the Origin header, or ``None``.
        insecure: don't verify the server's TLS certificate.
        cacert: a PEM file of CA certificates to trust instead of the system's.
        compress: offer permessage-deflate.
        ping_interval: seconds between keepalive pings; ``None`` disables them.
        open_timeout: seconds allowed to connect and complete the opening handshake.
        max_size: the largest message accepted, in bytes; ``None`` for the library default,
            ``0`` for no limit.
        proxy: a proxy URL; ``None`` for the one the environment names (``https_proxy``...).
        no_proxy: connect directly, whatever the environment says.
        proxy_cacert: a PEM file of CA certificates for an ``https://`` proxy.
    """

    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    origin: str | None = None
    insecure: bool = False
    cacert: str | None = None
    compress: bool = True
    ping_interval: float | None = None
    open_timeout: float = 10.0
    max_size: int | None = None
    proxy: str | None = None
    no_proxy: bool = False
    proxy_cacert: str | None = None

    def connect_kwargs(self, url: str) -> dict[str, Any]:
        """Return the keyword arguments of :func:`wsend.connect` for ``url``."""
        kwargs: dict[str, Any] = {
            "headers": list(self.headers),
            "subprotocols": list(self.subprotocols),
            "origin": self.origin,
            "compression": "deflate" if self.compress else None,
            "open_timeout": self.open_timeout,
        }
        if self.ping_interval is not None:
            kwargs["ping_interval"] = self.ping_interval or None
        if self.max_size is not None:
            kwargs["max_message_size"] = self.max_size or None
        if check_url(url).secure:
            kwargs["ssl"] = self.ssl_context()
        if self.no_proxy:
            kwargs["proxy"] = None
        elif self.proxy is not None:
            kwargs["proxy"] = self.proxy
        if self.proxy_cacert is not None:
            kwargs["proxy_ssl"] = _context(self.proxy_cacert, "--proxy-cacert")
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``wss://``: ``--cacert`` trusted, nothing checked if ``--insecure``.

        Raises:
            CliError: the CA file can't be loaded (exit code 2).
        """
        context = _context(self.cacert, "--cacert")
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _context(cafile: str | None, option: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        from .errors import CliError, ExitCode

        raise CliError(f"cannot load {option} {cafile}: {exc}", ExitCode.USAGE) from exc


def parse_header(value: str) -> tuple[str, str]:
    """Split ``"Name: value"`` into a header name and value.

    Raises:
        click.BadParameter: no colon, a name that isn't an HTTP token, or CR/LF in the value.
    """
    name, colon, rest = value.partition(":")
    name, rest = name.strip(), rest.strip()
    if not colon or not _TOKEN.match(name):
        raise click.BadParameter(f"{value!r} is not 'Name: value'", param_hint="'-H' / '--header'")
    if "\r" in rest or "\n" in rest:
        raise click.BadParameter("a header value can't contain CR or LF", param_hint="'--header'")
    return name, rest


def client_options(*, compress: bool = True) -> Callable[[F], F]:
    """Decorate a click command with the connection options; it receives ``client=``.

    Args:
        compress: the default of ``--compress/--no-compress``.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["client"] = _settings(kwargs)
            return func(*args, **kwargs)

        command: Callable[..., Any] = wrapper
        for option in reversed(_options(compress)):
            command = option(command)
        return command  # type: ignore[return-value]

    return decorate


def _options(compress: bool) -> list[Callable[[F], F]]:
    return [
        click.option(
            "-H",
            "--header",
            "headers",
            multiple=True,
            metavar="'NAME: VALUE'",
            help="Add a request header (repeatable).",
        ),
        click.option(
            "--subprotocol",
            "subprotocols",
            multiple=True,
            metavar="NAME",
            help="Offer a subprotocol (repeatable, in order of preference).",
        ),
        click.option("--origin", metavar="ORIGIN", help="Send this Origin header."),
        click.option("--token", metavar="TOKEN", help="Send 'Authorization: Bearer TOKEN'."),
        click.option("--insecure", "-k", is_flag=True, help="Don't verify the TLS certificate."),
        click.option(
            "--cacert",
            type=click.Path(exists=True, dir_okay=False),
            metavar="FILE",
            help="Trust the CA certificates in this PEM file (wss://).",
        ),
        click.option(
            "--compress/--no-compress",
            default=compress,
            show_default=True,
            help="Offer permessage-deflate compression.",
        ),
        click.option(
            "--ping-interval",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="Send a keepalive ping this often; 0 disables (default: 20).",
        ),
        click.option(
            "--open-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="Time allowed to connect.",
        ),
        click.option(
            "--max-size",
            **SIZE,
            help="Largest message accepted, e.g. 64k, 16M; 0 for no limit (default: 1M).",
        ),
        click.option(
            "--proxy",
            metavar="URL",
            help="Connect through this proxy: http://[user:password@]host:port, https://..., "
            "socks5://, socks5h://, socks4:// (default: https_proxy, http_proxy, all_proxy "
            "and no_proxy from the environment).",
        ),
        click.option(
            "--no-proxy", is_flag=True, help="Connect directly, ignoring proxy variables."
        ),
        click.option(
            "--proxy-cacert",
            type=click.Path(exists=True, dir_okay=False),
            metavar="FILE",
            help="Trust the CA certificates in this PEM file for an https:// proxy.",
        ),
    ]


def _settings(kwargs: dict[str, Any]) -> ClientSettings:
    headers = [parse_header(value) for value in kwargs.pop("headers")]
    token = kwargs.pop("token")
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    return ClientSettings(
        headers=tuple(headers),
        subprotocols=tuple(kwargs.pop("subprotocols")),
        origin=kwargs.pop("origin"),
        insecure=kwargs.pop("insecure"),
        cacert=kwargs.pop("cacert"),
        compress=kwargs.pop("compress"),
        ping_interval=kwargs.pop("ping_interval"),
        open_timeout=kwargs.pop("open_timeout"),
        max_size=kwargs.pop("max_size"),
        proxy=kwargs.pop("proxy"),
        no_proxy=kwargs.pop("no_proxy"),
        proxy_cacert=kwargs.pop("proxy_cacert"),
    )


@contextlib.asynccontextmanager
async def open_connection(url: str, settings: ClientSettings) -> AsyncIterator[ClientConnection]:
    """Open a connection to ``url``; close it (normally) on the way out.

    Raises:
        CliError: the connection could not be opened (exit code 3, or 4 if the server
            refused the handshake).
    """
    kwargs = settings.connect_kwargs(url)
    try:
        ws = await connect(url, **kwargs)
    except (OSError, WebSocketError) as exc:
        raise open_error(url, exc) from exc
    try:
        yield ws
    finally:
        await ws.close()


def on_stop_signals(callback: Callable[[], object]) -> Callable[[], None]:
    """Call ``callback`` on SIGINT or SIGTERM in the running loop; return an undo function."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            continue
        installed.append(sig)

    def undo() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return undo
