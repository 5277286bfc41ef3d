"""A hub node on the Redis engine, in its own process (for tests that SIGKILL a node).

Usage: ``python -m tests.hub.node_proc PORT REDIS_URL [PREFIX [PRESENCE_TTL]]``; prints
``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import sys

import wsend
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions, NamespaceOptions
from wsend.hub.redis import RedisBroker, RedisClusterBroker, RedisPresence


def options() -> HubOptions:
    """Anonymous clients; namespace ``chat`` with history, recovery, presence, join/leave."""
    chat = NamespaceOptions(
        publish=True,
        presence=True,
        join_leave=True,
        history_size=1000,
        history_ttl=300.0,
        recovery=True,
    )
    return HubOptions(allow_anonymous=True, namespaces={"": NamespaceOptions(), "chat": chat})


def make_hub(
    url: str,
    prefix: str = "wsend",
    fast: bool = True,
    presence_ttl: float = 60.0,
    broker_class: type[RedisBroker] | None = None,
) -> Hub:
    """A hub on ``url``; ``fast`` shortens the engine's timeouts for fault tests;
    ``broker_class`` is a :class:`RedisBroker` or a test's subclass of it (by default the
    cluster's for a ``redis+cluster://`` URL)."""
    if broker_class is None:
        broker_class = RedisClusterBroker if "+cluster:" in url else RedisBroker
    timeouts = {"health_interval": 0.2, "health_timeout": 1.0, "socket_timeout": 1.0}
    broker = broker_class(url, prefix=prefix, **(timeouts if fast else {}))  # type: ignore[arg-type]
    presence = RedisPresence(
        url, prefix=prefix, ttl=presence_ttl, socket_timeout=1.0 if fast else 5.0
    )
    return Hub(options(), broker=broker, presence=presence)


async def main(port: int, url: str, prefix: str, presence_ttl: float) -> None:
    hub = make_hub(url, prefix, presence_ttl=presence_ttl)
    async with wsend.serve(hub.handler, "127.0.0.1", port, **hub.serve_kwargs()):
        await hub.start()
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    args = sys.argv[1:]
    prefix = args[2] if len(args) > 2 else "wsend"
    asyncio.run(main(int(args[0]), args[1], prefix, float(args[3]) if len(args) > 3 else 60.0))
