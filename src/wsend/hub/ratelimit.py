"""Rate limiting with an injected clock (``docs/protocol.md`` section 10).

:class:`TokenBucket` admits ``rate`` events per second on average and ``burst`` at once;
:class:`RejectionWindow` counts a run of refusals, so that a client that keeps exceeding its
limit is disconnected (4007) at once instead of answered forever.
"""

from __future__ import annotations

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
    """Counts a run of events; says when it reaches ``limit``.

    A run is a sequence of events none of which came more than ``window`` seconds after the
    previous one: a client refused steadily, however slowly, reaches the limit at its
    ``limit``-th refusal, while one refused now and then (a pause of ``window`` seconds
    between refusals) starts again from zero. Memory is constant.
    """

    __slots__ = ("_clock", "_count", "_last", "limit", "window")

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._count = 0
        self._last = 0.0

    def record(self) -> bool:
        """Record one event now; return True when the run reaches ``limit`` events."""
        now = self._clock()
        if self._count and now - self._last > self.window:
            self._count = 0
        self._count += 1
        self._last = now
        return self._count >= self.limit
