"""A clock the tests move by hand, for sessions and hubs built with ``clock=``."""

from __future__ import annotations

#: Where every test clock starts (a fixed instant, so token times are easy to write).
T0 = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
