"""The client tests that any hub passes (:class:`~tests.hub.test_client.TestAnyHub`), run
against the real :class:`~wsend.hub.node.Hub` instead of the scripted double."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from . import test_client
from .e2e import run_hub, token


class TestRealHub(test_client.TestAnyHub):
    """Every test of :class:`TestAnyHub`, end to end through a real hub node."""


@pytest.fixture
async def hub_endpoint() -> AsyncIterator[test_client.HubEndpoint]:
    async with run_hub() as running:
        yield test_client.HubEndpoint(running.url, token)
