"""`wsend serve --redis URL --workers N`: several processes on one port, sharing the hub."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from wsend.hub.client import HubClient

from .redis_cluster import Cluster
from .redis_server import free_port, running

pytestmark = pytest.mark.timeout(90)


def _post(url: str, body: dict[str, object], key: str) -> dict[str, object]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"X-API-Key": key}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A single Redis of its own, or the shared Redis Cluster (``redis+cluster://``)."""
    if request.param == "cluster":
        cluster: Cluster = request.getfixturevalue("redis_cluster")
        yield cluster.url
    else:
        for server in running():
            yield server.url


@pytest.mark.parametrize("redis_url", ["redis", "cluster"], indirect=True)
async def test_two_workers_share_channels_through_redis(redis_url: str) -> None:
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, read in a thread
        [
            sys.executable,
            "-m",
            "wsend.cli",
            "serve",
            "--port",
            str(port),
            "--redis",
            redis_url,
            "--workers",
            "2",
            "--api-key",
            "k",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.to_thread(proc.stderr.readline)
        assert "2 workers" in line
        assert f"http://127.0.0.1:{port}/" in line
        # Several clients: SO_REUSEPORT spreads them over both workers.
        clients = [HubClient(f"ws://127.0.0.1:{port}/ws", data={"name": f"u{i}"}) for i in range(6)]
        for client in clients:
            await client.connect()
        subs = [client.subscribe("chat:lobby") for client in clients]
        for sub in subs:
            await sub.ready()
        result = await asyncio.to_thread(
            _post,
            f"http://127.0.0.1:{port}/api/publish",
            {"channel": "chat:lobby", "data": {"text": "hello workers"}},
            "k",
        )
        assert "result" in result
        for sub in subs:
            async with asyncio.timeout(20):
                publication = await anext(aiter(sub))
            assert publication.data == {"text": "hello workers"}
        # One presence list across the workers.
        stats = await clients[0].presence_stats("chat:lobby")
        assert stats.num_clients == 6
        for client in clients:
            await client.close()
    finally:
        proc.terminate()
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, proc.stderr.read()  # the workers' log says what held them


def test_workers_without_redis_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsend.cli", "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--workers needs --redis" in result.stderr
