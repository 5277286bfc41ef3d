"""Worker processes sharing one port (SO_REUSEPORT), each a hub node on one Redis."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator

import pytest

from wsend.hub.client import HubClient, Publication
from wsend.hub.workers import run_workers, serve_hub

from .contract import wait_until
from .node_proc import make_hub
from .redis_server import RedisServer, free_port, running

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running()


def _worker(index: int, port: int, url: str) -> None:
    asyncio.run(serve_hub(lambda: make_hub(url, "workers"), "127.0.0.1", port))


def _run(port: int, url: str, result: multiprocessing.SimpleQueue[int]) -> None:
    result.put(run_workers(2, _worker, port, url))


async def test_two_workers_share_a_port_and_channels(redis_server: RedisServer) -> None:
    port = free_port()
    context = multiprocessing.get_context("spawn")
    result: multiprocessing.SimpleQueue[int] = context.SimpleQueue()
    parent = context.Process(target=_run, args=(port, redis_server.url, result))
    parent.start()
    clients: list[HubClient] = []
    try:
        await wait_until(lambda: len(set(_listeners(port))) == 2, 20)
        received: list[list[Publication]] = []
        for _ in range(10):  # the kernel spreads them over both workers
            client = HubClient(f"ws://127.0.0.1:{port}/ws", backoff_min=0.05)
            clients.append(client)
            await client.connect()
            got: list[Publication] = []
            await client.subscribe("chat:w", on_publication=got.append).ready(5)
            received.append(got)
        await clients[0].publish("chat:w", "hello")
        await wait_until(lambda: all(len(got) == 1 for got in received))
    finally:
        for client in clients:
            await client.close()
        assert parent.pid is not None
        os.kill(parent.pid, signal.SIGTERM)
        await asyncio.to_thread(parent.join, 10)
    assert await asyncio.to_thread(result.get) == 0


def _listeners(port: int) -> Iterator[int]:
    """The processes listening on ``port`` (matched through /proc/net/tcp socket inodes)."""
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if links & inodes:
            yield int(pid)


def test_needs_one_worker() -> None:
    with pytest.raises(ValueError, match="worker"):
        run_workers(0, print)
