"""Real ``redis-server`` processes for tests: started on a free port in a temporary directory.

Never the system's Redis. When ``redis-server`` is not installed the tests are skipped with a
reason, or fail when the ``CI`` environment variable is set (CI must run them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "free_port", "require", "sentinel_available"]


def require(binary: str = "redis-server") -> str:
    """The path of ``binary``; skip the test (fail under CI) when it is missing."""
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def sentinel_available() -> bool:
    return shutil.which("redis-sentinel") is not None or shutil.which("redis-server") is not None


_given: set[int] = set()


def free_port() -> int:
    """A port free on loopback now, and never handed out before in this process (the kernel
    may give a just-closed port again: a cluster's node and bus ports must not meet)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:  # it could not bind (another process took the port)
            raise RuntimeError(f"redis on port {port} exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith((b"+PONG", b"-LOADING")):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"redis on port {port} did not start")


class RedisServer:
    """One ``redis-server`` (or sentinel) process that a test may kill, restart or pause.

    Args:
        appendonly: keep an AOF (``appendfsync always``) so that data survives a restart.
        port: a fixed port (default: a free one).
        extra: more configuration arguments (``["--replicaof", "127.0.0.1", "7000"]``).
        sentinel: run ``--sentinel`` with ``config`` as its configuration file.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        port: int | None = None,
        extra: list[str] | None = None,
        sentinel_config: str | None = None,
    ) -> None:
        self.binary = require()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra = extra or []
        self.sentinel_config = sentinel_config
        self.dir = Path(tempfile.mkdtemp(prefix="wsend-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        if self.sentinel_config is not None:
            config = self.dir / "sentinel.conf"
            config.write_text(self.sentinel_config)
            return [self.binary, str(config), "--sentinel", "--port", str(self.port)]
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--dir", str(self.dir), "--daemonize", "no"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args + self.extra

    def start(self) -> RedisServer:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait_port(self.port, self.process)
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies at once, without saving anything."""
        if self.process is not None:
            self.resume()
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Kill, then start again on the same port (an AOF, if any, is reloaded)."""
        self.kill()
        deadline = time.monotonic() + 5
        while True:
            try:
                self.start()
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise

    def pause(self) -> None:
        """SIGSTOP: the server stops answering, connections stay open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server; returns its output."""
        cli = shutil.which("redis-cli") or "redis-cli"
        command = [cli, "-p", str(self.port), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def running(**kwargs: object) -> Iterator[RedisServer]:
    """A generator for fixtures: a started server, stopped afterwards."""
    server = RedisServer(**kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
