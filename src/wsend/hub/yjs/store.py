"""Where the Yjs endpoint keeps documents: the :class:`YStore` interface and its stores.

A store keeps, per room, a log of Yjs updates. Updates commute and applying one twice changes
nothing, so the log needs no order and no deduplication: a document is every update of its
log applied in any order. The log is compacted into one update (the document's state) once it
grows, and whenever a room is unloaded.

Stores:

- :class:`SQLiteStore` (the default of ``wsend serve``): one SQLite file in a data directory.
  Several processes may share it (``wsend serve --workers``, or nodes on one machine): appends
  and compactions are transactions, and a compaction merges the rows it read, so an update
  appended by another process meanwhile is never lost.
- :class:`MemoryStore`: a dict, for tests and for servers that may forget.
- :class:`~.redis_store.RedisStore`: a Redis list per room, for nodes on several machines.

Every store passes the contract tests of ``tests/hub/yjs/test_store.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

import pycrdt

__all__ = ["MemoryStore", "SQLiteStore", "YStore", "merge_updates"]

T = TypeVar("T")

#: The SQLite file's name in the data directory.
SQLITE_NAME: Final = "yjs.sqlite3"
# Seconds a writer waits for another process's transaction on the same file (SQLite's
# busy_timeout; Django's default is 5 s as well).
_BUSY_TIMEOUT_MS: Final = 5000


@runtime_checkable
class YStore(Protocol):
    """A log of Yjs updates per room (room names are the hub's channel names)."""

    async def load(self, room: str) -> list[bytes]:
        """Every update stored for ``room`` (an empty list for a new room)."""

    async def append(self, room: str, update: bytes) -> int:
        """Store ``update`` for ``room``; return how many updates the room's log now holds."""

    async def compact(self, room: str) -> int:
        """Replace the updates of ``room``'s log with one update of the same document (those
        appended meanwhile, by another process or node, stay); return its size in bytes."""

    async def delete(self, room: str) -> None:
        """Forget ``room``'s document."""

    async def close(self) -> None:
        """Release resources (pending writes are done first)."""


def merge_updates(updates: list[bytes]) -> bytes:
    """One update equal to ``updates`` applied together, garbage-collected as a document is
    (deleted text leaves only its identifiers): what compaction stores.

    Raises:
        ValueError: an update can't be decoded.
    """
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    with doc.transaction():
        for update in updates:
            doc.apply_update(update)
    return doc.get_update()


class MemoryStore:
    """Keeps every room's log in memory: for tests, or a server that may forget on restart."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[bytes]] = {}

    async def load(self, room: str) -> list[bytes]:
        return list(self.rooms.get(room, ()))

    async def append(self, room: str, update: bytes) -> int:
        log = self.rooms.setdefault(room, [])
        log.append(update)
        return len(log)

    async def compact(self, room: str) -> int:
        log = self.rooms.get(room)
        if not log:
            return 0
        merged = merge_updates(log)
        self.rooms[room] = [merged]
        return len(merged)

    async def delete(self, room: str) -> None:
        self.rooms.pop(room, None)

    async def close(self) -> None:
        pass


class SQLiteStore:
    """Keeps every room's log in one SQLite file, ``<directory>/yjs.sqlite3``.

    The file is in WAL mode with ``synchronous=NORMAL``: a commit doesn't wait for the disk
    (a power cut may lose the last updates, never corrupt the file; an application crash
    loses nothing). The calls run in one worker thread, in order.

    Args:
        directory: the data directory (created if missing).

    Raises:
        OSError: the directory can't be created.
        sqlite3.Error: the file can't be opened (on the first call).
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / SQLITE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wsend-yjs-store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, function, *args)

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        if self._db is None:
            self._db = self._open()
        return function(self._db, *args)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        _use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS updates"
            " (id INTEGER PRIMARY KEY AUTOINCREMENT, room TEXT NOT NULL, data BLOB NOT NULL)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS updates_room ON updates (room, id)")
        return db

    async def load(self, room: str) -> list[bytes]:
        rows = await self._run(_select, room)
        return [data for _, data in rows]

    async def append(self, room: str, update: bytes) -> int:
        return await self._run(_append, room, update)

    async def compact(self, room: str) -> int:
        return await self._run(_compact, room)

    async def delete(self, room: str) -> None:
        await self._run(_delete, room)

    async def close(self) -> None:
        """Close the file (idempotent; the store opens it again if used afterwards)."""

        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        executor = self._executor
        await asyncio.get_running_loop().run_in_executor(executor, close)
        # A fresh executor starts no thread until it is used.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wsend-yjs-store")
        executor.shutdown(wait=True)


def _use_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode (a setting of the file, kept once made).

    SQLite answers a change of journal mode with "database is locked" at once, without
    waiting as the busy timeout does for reads and writes, while another connection holds a
    lock, as when several processes open a new file together: the change is retried for up to
    the busy timeout. A file already in WAL mode needs none.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _select(db: sqlite3.Connection, room: str) -> list[tuple[int, bytes]]:
    cursor = db.execute("SELECT id, data FROM updates WHERE room = ? ORDER BY id", (room,))
    return [(int(row[0]), bytes(row[1])) for row in cursor]


def _append(db: sqlite3.Connection, room: str, update: bytes) -> int:
    with _transaction(db):
        db.execute("INSERT INTO updates (room, data) VALUES (?, ?)", (room, update))
        row = db.execute("SELECT count(*) FROM updates WHERE room = ?", (room,)).fetchone()
    return int(row[0])


def _compact(db: sqlite3.Connection, room: str) -> int:
    with _transaction(db):
        rows = _select(db, room)
        if not rows:
            return 0
        merged = merge_updates([data for _, data in rows])
        db.execute("DELETE FROM updates WHERE room = ? AND id <= ?", (room, rows[-1][0]))
        db.execute("INSERT INTO updates (room, data) VALUES (?, ?)", (room, merged))
    return len(merged)


def _delete(db: sqlite3.Connection, room: str) -> None:
    with _transaction(db):
        db.execute("DELETE FROM updates WHERE room = ?", (room,))


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): other processes wait."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
