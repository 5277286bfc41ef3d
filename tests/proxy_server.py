"""Real proxy processes for tests, each on a free loopback port:

- :class:`ProxyServer`: pproxy (PyPI, in the test extra): HTTP CONNECT, SOCKS4 and SOCKS5,
  Basic and SOCKS5 username/password authentication, and TLS listeners (HTTPS proxies);
- :class:`TinyProxy`: tinyproxy (Debian), an HTTP proxy that answers refusals with a status
  (403 for a port its rules forbid, 407 with a body, 500 when the server can't be reached);
- :class:`MicroSocks`: microsocks (Debian), a SOCKS5 server that reports failures with RFC
  1928 reply codes and RFC 1929 authentication status.

``scripts/test`` installs them (pip, and apt-get when run as root on Debian). When one is
missing its tests are skipped with a reason, or fail when ``CI`` is set.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import pytest

__all__ = ["MicroSocks", "ProxyServer", "TinyProxy", "closed_port", "require_pproxy"]

# pproxy switches to uvloop when it is importable, and then asks for the current event loop
# the pre-3.10 way, which uvloop refuses: run it on asyncio's own loop, set beforehand.
_LAUNCHER = """\
import asyncio, sys
sys.modules["uvloop"] = None
asyncio.set_event_loop(asyncio.new_event_loop())
from pproxy.server import main
sys.argv[0] = "pproxy"
main()
"""


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_pproxy() -> None:
    """Skip the test (fail under CI) when pproxy isn't installed."""
    if importlib.util.find_spec("pproxy") is None:
        _missing("pproxy is not installed (pip install -e '.[test]')")


def _require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (Debian: apt-get install {name})")
    assert path is not None
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port() -> int:
    """A loopback port where nothing listens (connections are refused)."""
    return _free_port()


class ProxyServer:
    """One pproxy process listening on ``127.0.0.1``.

    Args:
        protocols: pproxy's protocols for the listener, e.g. ``"http+socks4+socks5"``.
        auth: ``"user:password"`` required from clients, or ``None``.
        certfile, keyfile: serve over TLS with this certificate (an ``https://`` proxy).

    Attributes:
        port: the listening port.
        url: the proxy URL for wsend, without credentials, e.g. ``http://127.0.0.1:1234``.

    A proxy often outlives a test (module-scoped fixtures) while the servers it tunnels to
    don't, and a later test's server may get a port an earlier one had: :meth:`tunnels` only
    reports what was logged since :meth:`forget`, which an autouse fixture of the suite's
    conftest calls on every live proxy as each test starts.
    """

    live: ClassVar[set[ProxyServer]] = set()

    def __init__(
        self,
        protocols: str = "http+socks4+socks5",
        *,
        auth: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        require_pproxy()
        self.port = _free_port()
        secure = certfile is not None
        listen = f"{protocols}{'+ssl' if secure else ''}://127.0.0.1:{self.port}/"
        if auth is not None:
            listen += f"#{auth}"
        # --auth 0: ask every connection for credentials (pproxy otherwise trusts an address
        # for 30 days once it has authenticated).
        args = ["-l", listen, "-v", "--auth", "0"]
        if secure:
            args += ["--ssl", f"{certfile},{keyfile}"]
        self.url = f"{'https' if secure else 'http'}://127.0.0.1:{self.port}"
        self._log = Path(tempfile.mkstemp(prefix="pproxy-", suffix=".log")[1])
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-u", "-c", _LAUNCHER, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._since = 0
        self._wait_listening()
        ProxyServer.live.add(self)

    def forget(self) -> None:
        """Ignore the tunnels logged so far (see the class docstring)."""
        self._since = len(self.log())

    def _wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pproxy exited: {self.log()}")
            if "Serving on" in self.log():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"pproxy did not start: {self.log()}")

    def log(self) -> str:
        """Everything pproxy printed so far (with ``-v``, a line per tunnel: ``http
        127.0.0.1:50000 -> 127.0.0.1:8765``)."""
        return self._log.read_text(errors="replace")

    def tunnels(self) -> list[str]:
        """The destinations of the tunnels opened since :meth:`forget`, as pproxy logged them."""
        lines = self.log()[self._since :].splitlines()
        return [line.rsplit(" -> ", 1)[1] for line in lines if " -> " in line]

    def stop(self) -> None:
        ProxyServer.live.discard(self)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.unlink(missing_ok=True)


class _Process:
    """A proxy process whose output goes to a log file; ``stop()`` ends it."""

    process: subprocess.Popen[bytes]

    def __init__(self, args: list[str], log: Path) -> None:
        self._log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def _wait_port(self, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.process.args} exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.process.args} did not start: {self.log()}")

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def stop(self) -> None:
        ProxyServer.live.discard(self)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class TinyProxy(_Process):
    """One tinyproxy process on ``127.0.0.1``.

    Args:
        auth: ``(user, password)`` for Basic authentication, or ``None``.
        connect_ports: the only ports CONNECT may reach (others get 403); all if empty.
    """

    def __init__(
        self, *, auth: tuple[str, str] | None = None, connect_ports: tuple[int, ...] = ()
    ) -> None:
        binary = _require_binary("tinyproxy")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="tinyproxy-"))
        self._dir.chmod(0o777)  # tinyproxy drops root privileges to write its log here
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            "MaxClients 50",
            "LogLevel Info",
            f'LogFile "{self._dir / "tinyproxy.log"}"',
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
            *(f"ConnectPort {port}" for port in connect_ports),
        ]
        if auth is not None:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        if os.geteuid() == 0:
            lines += ["User nobody", "Group nogroup"]
        config = self._dir / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        super().__init__([binary, "-d", "-c", str(config)], self._dir / "output.log")
        self._wait_port(self.port)

    def log(self) -> str:
        path = self._dir / "tinyproxy.log"
        return path.read_text(errors="replace") if path.exists() else super().log()

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class MicroSocks(_Process):
    """One microsocks (SOCKS5) process on ``127.0.0.1``.

    Args:
        auth: ``(user, password)`` required from clients (RFC 1929), or ``None``.
    """

    def __init__(self, *, auth: tuple[str, str] | None = None) -> None:
        binary = _require_binary("microsocks")
        self.port = _free_port()
        self.url = f"socks5://127.0.0.1:{self.port}"
        args = [binary, "-i", "127.0.0.1", "-p", str(self.port)]
        if auth is not None:
            args += ["-u", auth[0], "-P", auth[1]]
        log = Path(tempfile.mkstemp(prefix="microsocks-", suffix=".log")[1])
        super().__init__(args, log)
        self._wait_port(self.port)

    def stop(self) -> None:
        super().stop()
        self._log.unlink(missing_ok=True)
