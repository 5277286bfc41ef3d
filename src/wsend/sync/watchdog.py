"""One thread per process that enforces deadlines: ``schedule(delay, callback)``.

Used for the close timeout, whose action (dropping a connection) never blocks: callbacks run in
the watchdog's thread one after the other, so they must return at once. Starting the thread
lazily keeps programs that never close a connection from paying for it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Handle", "schedule"]

logger = logging.getLogger("wsend.sync")


class Handle:
    """A scheduled callback; :meth:`cancel` keeps it from running."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Don't run the callback (nothing happens if it ran already)."""
        self.cancelled = True


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Handle]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, delay: float, callback: Callable[[], object]) -> Handle:
        handle = Handle(time.monotonic() + delay, callback)
        with self._cond:
            heapq.heappush(self._heap, (handle.when, next(self._counter), handle))
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="wsend-watchdog", daemon=True)
                self._thread = thread
                thread.start()
            self._cond.notify()
        return handle

    def _run(self) -> None:
        while True:
            handle = self._next()
            if not handle.cancelled:
                try:
                    handle.callback()
                except Exception:
                    logger.exception("deadline callback failed")

    def _next(self) -> Handle:
        with self._cond:
            while True:
                heap = self._heap
                while heap and heap[0][2].cancelled:
                    heapq.heappop(heap)
                if not heap:
                    self._cond.wait()
                    continue
                left = heap[0][0] - time.monotonic()
                if left <= 0:
                    return heapq.heappop(heap)[2]
                self._cond.wait(left)


_watchdog = _Watchdog()


def schedule(delay: float, callback: Callable[[], object]) -> Handle:
    """Run ``callback()`` in the watchdog thread after ``delay`` seconds (it must not block)."""
    return _watchdog.schedule(delay, callback)
