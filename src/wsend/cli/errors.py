"""Exit codes of the ``wsend`` command and the translation of errors into them.

Every failure a user can cause or meet (a bad URL, a refused connection, a handshake refused
by the server, a connection closed with an error code) ends the command with one line on
stderr, ``error: ...``, and a documented exit code; never with a traceback.
"""

from __future__ import annotations

import enum
import socket
import ssl
from typing import IO, Any

import click

from ..asyncio.client import WebSocketURI, parse_uri
from ..exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidProxy,
    InvalidStatus,
    InvalidURI,
    OpenTimeout,
    ProxyAuthenticationRequired,
    ProxyConnectionError,
    ProxyError,
)

__all__ = ["EXIT_CODES_HELP", "CliError", "ExitCode", "check_url", "open_error"]


class ExitCode(enum.IntEnum):
    """The exit codes shared by every ``wsend`` command."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CONNECT = 3
    HANDSHAKE = 4
    CLOSED = 5
    TIMEOUT = 6
    INTERRUPTED = 130


#: The exit codes as shown in ``--help`` (``\b`` keeps click from rewrapping the lines).
EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  other failure (a benchmark finished with errors, a server could not start)
  2  usage error (bad option, bad URL, invalid JSON), nothing was sent
  3  could not connect (DNS, connection refused, TLS, timeout, no HTTP answer, proxy)
  4  the server refused the WebSocket handshake (the HTTP status is printed)
  5  the connection closed with an error code (code and meaning are printed)
  6  timed out waiting for replies
  130 interrupted (Ctrl-C)"""


class CliError(click.ClickException):
    """A failure reported as one ``error: ...`` line on stderr, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a class default

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message>`` on one line to stderr (or ``file``)."""
        message = " ".join(self.format_message().split())
        click.echo(f"{click.style('error:', fg='red', bold=True)} {message}", file=file, err=True)


def check_url(url: str) -> WebSocketURI:
    """Parse a ``ws://`` or ``wss://`` URL given on the command line.

    Raises:
        CliError: the URL is invalid (exit code 2).
    """
    try:
        return parse_uri(url)
    except InvalidURI as exc:
        raise CliError(f"invalid URL {url!r}: {exc.msg}", ExitCode.USAGE) from exc


def open_error(url: str, exc: BaseException) -> CliError:
    """Describe why opening a connection to ``url`` failed, with the matching exit code.

    Args:
        url: the URL the client tried to open.
        exc: what :func:`wsend.connect` raised: ``OSError`` (including TLS errors),
            :class:`~wsend.OpenTimeout` or :class:`~wsend.InvalidHandshake`.

    Returns:
        A :class:`CliError` with exit code 4 when the server answered the handshake but
        refused it (an HTTP status other than 101, or a wrong 101), 2 for an invalid proxy
        URL, 3 otherwise, including when no HTTP answer came (the connection closed, or the
        reply isn't HTTP) and when a proxy failed.
    """
    if isinstance(exc, InvalidProxy):
        return CliError(f"invalid proxy: {exc}", ExitCode.USAGE)
    if isinstance(exc, ProxyError):
        return CliError(_proxy(exc), ExitCode.CONNECT)
    if isinstance(exc, InvalidStatus):
        return CliError(_refused(exc), ExitCode.HANDSHAKE)
    if isinstance(exc, InvalidMessage):
        # e.g. ws:// to a TLS port: the server hangs up without an HTTP answer.
        hint = "not a WebSocket server?"
        if url.lower().startswith("ws:"):
            hint += " with TLS, use wss://"
        message = f"no HTTP answer to the handshake from {_where(url)}: {exc} ({hint})"
        return CliError(message, ExitCode.CONNECT)
    if isinstance(exc, InvalidHandshake):
        return CliError(f"WebSocket handshake with {url} failed: {exc}", ExitCode.HANDSHAKE)
    if isinstance(exc, OpenTimeout):
        return CliError(f"timed out connecting to {url}", ExitCode.CONNECT)
    return CliError(_network(url, exc), ExitCode.CONNECT)


def _refused(exc: InvalidStatus) -> str:
    from ..protocol.http import Response

    phrase = Response(exc.status_code).reason
    message = f"server refused the WebSocket handshake: HTTP {exc.status_code} {phrase}".rstrip()
    body = exc.body[:200].decode("utf-8", "replace").strip()
    if body and (exc.headers.get("Content-Type") or "").startswith("text/"):
        message += f" ({' '.join(body.split())})"
    return message


def _proxy(exc: ProxyError) -> str:
    if isinstance(exc, ProxyAuthenticationRequired):
        return f"{exc} (give credentials: --proxy http://USER:PASSWORD@HOST:PORT)"
    cause = exc.__cause__
    if isinstance(exc, ProxyConnectionError) and isinstance(cause, ssl.SSLCertVerificationError):
        return f"{exc} (use --proxy-cacert FILE to trust its CA)"
    return str(exc)


def _network(url: str, exc: BaseException) -> str:
    where = _where(url)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed for {where}: {exc.verify_message} "
            "(use --cacert FILE to trust a CA, or --insecure)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where}: {exc.strerror}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, OSError):
        return f"could not connect to {where}: {exc.strerror or exc}"
    return f"could not connect to {where}: {exc}"


def _where(url: str) -> str:
    uri = parse_uri(url)
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"{host}:{uri.port}"
