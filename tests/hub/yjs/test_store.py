"""The contract every :class:`~wsend.hub.yjs.store.YStore` passes: memory, SQLite, Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from wsend.hub.codes import HubError
from wsend.hub.yjs import MemoryStore, SQLiteStore, YStore, merge_updates
from wsend.hub.yjs.redis_store import RedisStore

from ..redis_server import RedisServer, running


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running()


def edits(count: int, client_id: int) -> list[bytes]:
    """``count`` updates of one writer: inserts, then a deletion of some of them."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    text = doc.get("text", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        text.insert(len(text), f"{client_id}:{i} ")
    del text[0:3]
    return updates


def text_of(updates: list[bytes]) -> str:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("text", type=pycrdt.Text))


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[YStore]]:
    """Two stores sharing their data, as two processes or nodes do (one for memory)."""
    made: list[YStore]
    if request.param == "memory":
        memory = MemoryStore()
        made = [memory, memory]
    elif request.param == "sqlite":
        made = [SQLiteStore(tmp_path), SQLiteStore(tmp_path)]
    else:
        url = request.getfixturevalue("redis_server").url
        prefix = f"t{uuid.uuid4().hex[:6]}"
        made = [RedisStore.from_url(url, prefix=prefix), RedisStore.from_url(url, prefix=prefix)]
    yield made
    for store in made:
        await store.close()


async def test_append_load_compact_delete(stores: list[YStore]) -> None:
    store = stores[0]
    assert isinstance(store, YStore)
    assert await store.load("yjs:a") == []
    assert await store.compact("yjs:a") == 0
    updates = edits(20, 1)
    for i, update in enumerate(updates, 1):
        assert await store.append("yjs:a", update) == i
    assert await store.load("yjs:a") == updates
    expected = text_of(updates)
    size = await store.compact("yjs:a")
    stored = await store.load("yjs:a")
    assert len(stored) == 1
    assert size == len(stored[0])
    assert text_of(stored) == expected
    assert await store.load("yjs:b") == []  # rooms are apart
    await store.delete("yjs:a")
    assert await store.load("yjs:a") == []


async def test_appends_during_compactions_are_kept(stores: list[YStore]) -> None:
    """Two writers append while both compact, over and over: nothing is lost."""
    first, second = stores
    a, b = edits(60, 1), edits(60, 2)

    async def write(store: YStore, updates: list[bytes]) -> None:
        for i, update in enumerate(updates):
            await store.append("yjs:r", update)
            if i % 10 == 0:
                await store.compact("yjs:r")

    await asyncio.gather(write(first, a), write(second, b))
    assert text_of(await first.load("yjs:r")) == text_of(a + b)
    await second.compact("yjs:r")
    assert text_of(await first.load("yjs:r")) == text_of(a + b)


def test_merge_updates_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="decode"):
        merge_updates([b"\xff\xff"])


async def test_redis_store_errors_are_hub_errors() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        for call in (
            store.load("yjs:x"),
            store.append("yjs:x", b"\x00\x00"),
            store.compact("yjs:x"),
            store.delete("yjs:x"),
        ):
            with pytest.raises(HubError) as info:
                await call
            assert info.value.temporary
    finally:
        await store.close()
