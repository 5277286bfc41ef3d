"""The client tests that any hub passes (:class:`~tests.hub.test_client.TestAnyHub`), run
against the real :class:`~wsend.hub.node.Hub` instead of the scripted double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from wsend.hub.client import HubClient

from . import test_client
from .e2e import run_hub, token


class TestRealHub(test_client.TestAnyHub):
    """Every test of :class:`TestAnyHub`, end to end through a real hub node."""


@pytest.fixture
async def hub_endpoint() -> AsyncIterator[test_client.HubEndpoint]:
    async with run_hub() as running:
        yield test_client.HubEndpoint(running.url, token)


async def test_subscribe_slower_than_the_timeout_is_retried_cleanly() -> None:
    # The hub answers the first subscribe after the client gave up on it: the retry must not
    # meet "already subscribed" (105, which would end the subscription for good).
    calls = 0

    async def slow_once(session: object, channel: str, data: object) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.8)
        return True

    async with run_hub() as running:
        running.hub.on_subscribe_callback(slow_once)
        client = HubClient(running.url, token=token("ann"), timeout=0.3, backoff_min=0.05)
        async with client:
            ended: list[object] = []
            sub = client.subscribe("vip:lounge", on_unsubscribed=lambda *args: ended.append(args))
            await sub.ready(5)
            assert calls >= 2
            await running.hub.publish("vip:lounge", "hello")
            async with asyncio.timeout(5):
                publication = await anext(aiter(sub))
            assert publication.data == "hello"
            assert (sub.state, ended) == ("subscribed", [])
