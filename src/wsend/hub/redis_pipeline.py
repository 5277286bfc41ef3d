"""Automatic pipelining for the Redis engine: the commands of one turn of the event loop go to
Redis together.

Each command sent on its own costs a node a pool checkout, a write, a wait and a read: about
60 µs of CPU per command with redis-py, whatever its size. Under load, a hub node issues many
commands at once (publications of many clients, history reads of resubscribing ones);
:class:`AutoPipeline` queues the commands issued during one turn of the event loop and sends
them as one pipeline (one write, the replies read in one go) at the end of that turn, which
costs 8 to 15 µs per command. A command issued while nothing else is queued or in flight goes
out at once, alone, as it would without pipelining: pipelines form only under load, when
commands would otherwise queue for the pool's connections.

Commands keep the order in which they were issued within a pipeline; pipelines may be in
flight at the same time on several connections of the pool (a caller that needs the order of
two commands awaits the first, as without pipelining). A command's error (``ResponseError``)
fails that command only; a connection's failure fails every command of its pipeline, as it
would have failed each of them sent alone.

On a Redis Cluster (:class:`ClusterPipelines`) there is one such pipeline per master, fed with
the commands of the channels whose slot that master serves (as the cluster client last saw the
layout). A command that meets a change of layout (``MOVED``, ``ASK``, a master down or
unreachable) is sent again through the cluster client, which follows redirections and asks
for the new layout, as it does for a command sent alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "MAX_BATCH",
    "AutoPipeline",
    "ClusterPipelines",
    "Pipeline",
    "pipeline_for",
    "run_script",
]

#: Commands per pipeline at most; a turn that issued more sends several.
MAX_BATCH: Final = 512


class AutoPipeline:
    """Send the commands issued during one turn of the event loop as one pipeline.

    Args:
        redis: a ``redis.asyncio.Redis`` client (not a cluster's).
        max_batch: commands per pipeline at most.
        alone: sends a command alone (default: ``redis.execute_command``).
    """

    def __init__(
        self,
        redis: Any,
        max_batch: int = MAX_BATCH,
        alone: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self._send_alone = redis.execute_command if alone is None else alone
        #: Pipelines sent, and the commands they carried (their ratio: commands per write).
        self.pipelines = 0
        self.commands = 0
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._alone = 0  # commands in flight sent alone

    @property
    def idle(self) -> bool:
        """Nothing queued or in flight: the next command goes out alone, at once."""
        return not self._pending and not self._tasks and not self._alone

    async def execute(self, *args: Any) -> Any:
        """Run one command (``"PUBLISH", channel, message``); return its reply.

        Raises:
            RedisError, OSError: the command failed, or the connection did.
        """
        if self.idle:
            self._alone += 1
            try:
                return await self._send_alone(*args)
            finally:
                self._alone -= 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    async def script(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered Lua script (``redis.register_script``) with ``EVALSHA``; if Redis
        doesn't know it (restarted, ``SCRIPT FLUSH``), the script loads itself and runs alone.
        """
        if self.idle:
            self._alone += 1
            try:
                return await script(keys, args)
            finally:
                self._alone -= 1
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys, args)

    async def close(self) -> None:
        """Wait for the pipelines in flight (their callers get their replies or errors)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        for start in range(0, len(pending), self.max_batch):
            task = loop.create_task(self._send(pending[start : start + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        self.pipelines += 1
        self.commands += len(batch)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else ConnectionError("pipeline cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


#: What a pipelined command may meet when the cluster's layout changed (a slot moved, a master
#: down or unreachable): it is sent again through the cluster client, which follows the
#: redirection and reads the new layout (``ConnectionError`` and ``TimeoutError`` are
#: redis-py's, which the cluster client retries too).
_SEND_AGAIN: Final = (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    TryAgainError,
    RedisConnectionError,
    RedisTimeoutError,
    RedisClusterException,
    OSError,
)


class ClusterPipelines:
    """An :class:`AutoPipeline` per master of a Redis Cluster, each on a connection pool of its
    own (at most ``max_connections``) to that master.

    Args:
        cluster: the cluster client; it routes what can't be pipelined (a master not known
            yet, a command that met a change of layout) and tells which master serves a key.
        max_connections: connections per master for the pipelines.
        timeout: seconds a command waits for a free connection of a master's pool.
    """

    def __init__(self, cluster: RedisCluster, max_connections: int, timeout: float) -> None:
        self.cluster = cluster
        self.max_connections, self.timeout = max_connections, timeout
        self._by_node: dict[str, AutoPipeline] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def pipelines(self) -> int:
        """Pipelines sent, on every master (see :attr:`AutoPipeline.pipelines`)."""
        return sum(pipeline.pipelines for pipeline in self._by_node.values())

    @property
    def commands(self) -> int:
        """Commands sent in them."""
        return sum(pipeline.commands for pipeline in self._by_node.values())

    def _for(self, key: Any) -> AutoPipeline | None:
        """The pipeline of the master serving ``key`` (``None``: not known yet)."""
        try:
            node = self.cluster.get_node_from_key(key)
        except _SEND_AGAIN:
            return None
        if node is None:
            return None
        pipeline = self._by_node.get(node.name)
        if pipeline is None:
            pool = aioredis.BlockingConnectionPool(
                connection_class=node.connection_class,
                max_connections=self.max_connections,
                timeout=self.timeout,
                **node.connection_kwargs,
            )
            # A command alone goes through the cluster client, whose connections are ready.
            client = aioredis.Redis.from_pool(pool)
            alone = self.cluster.execute_command
            pipeline = self._by_node[node.name] = AutoPipeline(client, alone=alone)
        return pipeline

    def _drop(self, pipeline: AutoPipeline) -> None:
        """Forget a master's pipeline after a failure (the master may be gone for good)."""
        for name, known in list(self._by_node.items()):
            if known is pipeline:
                del self._by_node[name]
                task = asyncio.get_running_loop().create_task(_close(pipeline))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def execute(self, *args: Any) -> Any:
        """Run one command whose key is its first argument (``"SPUBLISH", channel, message``)."""
        return await self._route(
            args[1],
            lambda pipeline: pipeline.execute(*args),
            lambda: self.cluster.execute_command(*args),
        )

    async def script(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a Lua script registered on the cluster client."""
        return await self._route(
            keys[0],
            lambda pipeline: pipeline.script(script, keys, args),
            lambda: script(keys, args),
        )

    async def _route(
        self,
        key: Any,
        pipelined: Callable[[AutoPipeline], Awaitable[Any]],
        direct: Callable[[], Awaitable[Any]],
    ) -> Any:
        """Run a command through the pipeline of ``key``'s master; if it was pipelined and met
        a change of layout, again ``direct`` (through the cluster client)."""
        pipeline = self._for(key)
        if pipeline is not None:
            queued = not pipeline.idle  # else it goes alone, through the cluster client
            try:
                return await pipelined(pipeline)
            except _SEND_AGAIN as exc:
                if not queued:
                    raise
                if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
                    self._drop(pipeline)
        return await direct()

    async def close(self) -> None:
        """Close every master's pipeline and pool."""
        pipelines, self._by_node = list(self._by_node.values()), {}
        for pipeline in pipelines:
            await _close(pipeline)
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def _close(pipeline: AutoPipeline) -> None:
    await pipeline.close()
    await pipeline.redis.aclose()


#: What the engine pipelines its commands with (``None``: each command sent alone).
Pipeline = AutoPipeline | ClusterPipelines | None


async def run_script(
    pipeline: Pipeline, script: Any, keys: Sequence[Any], args: Sequence[Any]
) -> Any:
    """Run a registered Lua script through ``pipeline``, or alone when it is ``None``."""
    if pipeline is None:
        return await script(keys, args)
    return await pipeline.script(script, keys, args)


def pipeline_for(redis: Any, max_connections: int, timeout: float) -> Pipeline:
    """The pipelining of the engine's client ``redis`` (a cluster's, or a single Redis's)."""
    if isinstance(redis, RedisCluster):
        return ClusterPipelines(redis, max_connections, timeout)
    return AutoPipeline(redis)
