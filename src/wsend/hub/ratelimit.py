"""Rate limiting with an injected clock (``docs/protocol.md`` section 10).

:class:`TokenBucket` admits ``rate`` events per second on average and ``burst`` at once;
:class:`RejectionWindow` counts refusals in a sliding window, so that a client that keeps
exceeding its limit can be disconnected (4007) instead of answered forever.
"""

from __future__ import annotations

from collections import deque

from .broker import Clock

__all__ = ["RejectionWindow", "TokenBucket"]


class TokenBucket:
    """A token bucket: holds up to ``burst`` tokens, refilled at ``rate`` per second.

    Args:
        rate: tokens added per second (> 0).
        burst: capacity, and the initial number of tokens (>= 1).
        clock: the current time in seconds (monotonic or wall clock; only differences count,
            and a clock going backwards adds nothing).

    Raises:
        ValueError: for a non-positive ``rate`` or a ``burst`` below 1.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    @property
    def tokens(self) -> float:
        """The tokens available now."""
        self._refill()
        return self._tokens

    def take(self, count: float = 1.0) -> bool:
        """Take ``count`` tokens if available; return whether they were (nothing taken if not)."""
        self._refill()
        if self._tokens < count:
            return False
        self._tokens -= count
        return True

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now


class RejectionWindow:
    """Counts events within the last ``window`` seconds; says when ``limit`` is reached.

    Memory is bounded by ``limit``: older events beyond it are dropped.
    """

    __slots__ = ("_clock", "_times", "limit", "window")

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque(maxlen=limit)

    def record(self) -> bool:
        """Record one event now; return True when ``limit`` events fell within the window."""
        now = self._clock()
        self._times.append(now)
        return len(self._times) == self.limit and now - self._times[0] < self.window
