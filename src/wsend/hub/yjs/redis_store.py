"""A :class:`~.store.YStore` in Redis, for Yjs endpoints on several machines.

Keys of a room ``r`` (``prefix`` defaults to ``wsend``; the ``{r}`` hash tag keeps them in one
slot)::

    wsend:yjs:{r}:u    LIST     the room's updates (RPUSH)
    wsend:yjs:{r}:g    STRING   the compaction generation (INCR at each compaction)

A compaction reads the list and its generation in one transaction, merges the updates, then
runs a script that, only if the generation is unchanged, trims the updates it read from the
head of the list and pushes the merged one in their place: updates appended meanwhile (RPUSH,
at the tail) stay, and of two nodes compacting at once, the second one finds the generation
changed and leaves the list alone.

The store is as durable as the Redis server is configured to be (AOF or RDB snapshots).
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..redis_common import SOCKET_TIMEOUT, client_from_url, engine_error
from .store import merge_updates

__all__ = ["RedisStore"]

COMPACT_LUA: Final = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('LPUSH', KEYS[1], ARGV[3])
redis.call('INCR', KEYS[2])
return 1
"""


class RedisStore:
    """Every room's log in a Redis list (see the module docstring).

    Args:
        redis: a client (``redis.asyncio``); closed by :meth:`close`.
        prefix: the keys' prefix (nodes sharing documents must share it).
    """

    def __init__(self, redis: aioredis.Redis, *, prefix: str = "wsend") -> None:
        self.redis = redis
        self.prefix = prefix
        self._compact_script = redis.register_script(COMPACT_LUA)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "wsend") -> RedisStore:
        """A store on the Redis server at ``url`` (the URLs of ``wsend serve --redis``).

        Raises:
            ValueError: the URL is malformed.
        """
        return cls(client_from_url(url, socket_timeout=SOCKET_TIMEOUT), prefix=prefix)

    def _keys(self, room: str) -> tuple[str, str]:
        base = f"{self.prefix}:yjs:{{{room}}}"
        return f"{base}:u", f"{base}:g"

    async def load(self, room: str) -> list[bytes]:
        try:
            updates = await self.redis.lrange(self._keys(room)[0], 0, -1)
        except (RedisError, OSError) as exc:
            raise engine_error(exc) from exc
        return [u if isinstance(u, bytes) else u.encode() for u in updates]

    async def append(self, room: str, update: bytes) -> int:
        try:
            count: int = await self.redis.rpush(self._keys(room)[0], update)
        except (RedisError, OSError) as exc:
            raise engine_error(exc) from exc
        return count

    async def compact(self, room: str) -> int:
        updates_key, generation_key = self._keys(room)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(generation_key)
                pipe.lrange(updates_key, 0, -1)
                generation, updates = await pipe.execute()
            if not updates:
                return 0
            merged = merge_updates(updates)
            keys = [updates_key, generation_key]
            args = [(generation or b"0").decode(), len(updates), merged]
            await self._compact_script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise engine_error(exc) from exc
        return len(merged)

    async def delete(self, room: str) -> None:
        try:
            await self.redis.delete(*self._keys(room))
        except (RedisError, OSError) as exc:
            raise engine_error(exc) from exc

    async def close(self) -> None:
        await self.redis.aclose()
