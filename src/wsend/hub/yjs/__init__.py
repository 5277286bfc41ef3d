"""The hub's y-websocket endpoint: Yjs documents kept by the hub (``docs/hub/yjs.md``).

- :mod:`.protocol`: the y-protocols messages (sans-I/O parser and builders).
- :mod:`.store`: where documents are kept (:class:`YStore`; SQLite, memory, Redis).
- :mod:`.room`: one document on one node.
- :mod:`.server`: the endpoint (:class:`YjsServer`): auth, limits, rooms, presence.

Needs pycrdt: ``pip install 'wsend[hub]'``.
"""

from __future__ import annotations

from .server import CanWrite, YjsOptions, YjsServer
from .store import MemoryStore, SQLiteStore, YStore, merge_updates

__all__ = [
    "CanWrite",
    "MemoryStore",
    "SQLiteStore",
    "YStore",
    "YjsOptions",
    "YjsServer",
    "merge_updates",
]
