"""Several worker processes serving one port: ``SO_REUSEPORT`` and a shared engine.

Each worker is a separate process with its own event loop, listening on the same port with
``reuse_port=True``; the kernel spreads new connections over them. Workers don't share memory,
so a hub needs a shared engine (Redis, :func:`wsend.hub.redis.engine_from_url`) for channels,
history and presence to span them.

.. code-block:: python

    def make_hub() -> Hub:
        broker, presence = engine_from_url("redis://127.0.0.1:6379/0")
        return Hub(options, broker=broker, presence=presence)

    def worker(index: int) -> None:
        asyncio.run(serve_hub(make_hub, "0.0.0.0", 8765))

    if __name__ == "__main__":
        sys.exit(run_workers(4, worker))

Linux (and other systems with ``SO_REUSEPORT``) only.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import signal
import time
from collections.abc import Callable
from typing import Any

from ..asyncio.server import serve
from .node import Hub

__all__ = ["run_workers", "serve_hub"]


async def serve_hub(
    make_hub: Callable[[], Hub], host: str, port: int, *, path: str = "/ws", **kwargs: Any
) -> None:
    """Serve the hub ``make_hub()`` on ``host:port`` with ``reuse_port=True`` until cancelled.

    Extra keyword arguments go to :func:`wsend.serve`. The hub is closed on the way out.
    """
    hub = make_hub()
    options = {**hub.serve_kwargs(path=path), **kwargs}
    try:
        async with serve(hub.handler, host, port, reuse_port=True, **options):
            await hub.start()
            await asyncio.Future()
    finally:
        await hub.close()


# Seconds a worker has to shut down gracefully after SIGTERM before it is killed.
STOP_GRACE = 15.0


def run_workers(
    n: int, target: Callable[..., object], *args: Any, start_method: str = "spawn"
) -> int:
    """Run ``target(index, *args)`` in ``n`` processes and wait until they all exit.

    ``target`` typically calls ``asyncio.run(serve_hub(...))``; with the default ``"spawn"``
    start method it must be importable (a module-level function). SIGINT and SIGTERM received
    by this process are passed on to the workers (SIGTERM), and a worker that dies makes the
    others stop too: an incomplete set of workers would serve a part of the traffic only.

    Returns:
        0 if every worker exited with 0 (or was stopped by this function), else the first
        non-zero exit code seen (a worker killed by signal N counts as 128 + N).

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"need at least one worker, got {n}")
    context: Any = multiprocessing.get_context(start_method)
    workers = [
        context.Process(target=target, args=(i, *args), name=f"wsend-worker-{i}", daemon=False)
        for i in range(n)
    ]
    for worker in workers:
        worker.start()

    stopping = False
    stopped_at = 0.0

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping, stopped_at
        if not stopping:
            stopped_at = time.monotonic()
        stopping = True
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = 0
        remaining = list(workers)
        while remaining:
            multiprocessing.connection.wait([w.sentinel for w in remaining], timeout=1.0)
            if stopping and time.monotonic() - stopped_at > STOP_GRACE:
                # A worker that doesn't finish its graceful shutdown in time is killed.
                for worker in remaining:
                    if worker.is_alive():
                        worker.kill()
            for worker in [w for w in remaining if not w.is_alive()]:
                remaining.remove(worker)
                code = worker.exitcode or 0
                code = 128 - code if code < 0 else code
                if stopping and code == 128 + signal.SIGTERM:
                    code = 0  # stopped by us
                if code and not status:
                    status = code
                    stop(signal.SIGTERM, None)
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
