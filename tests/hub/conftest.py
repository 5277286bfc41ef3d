"""Fixtures of the hub's tests: a Redis Cluster shared by the tests that don't break it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redis_cluster import Cluster, running_cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """3 masters and 3 replicas, started once; tests keep their keys apart with a prefix and
    must leave every node running."""
    yield from running_cluster()
