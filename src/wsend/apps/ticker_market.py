"""A simulated stock market: a few hundred symbols ticking several times a second (no I/O).

Prices follow a geometric random walk with a shared market factor: each symbol's return is
``beta * market + own noise``, so on a bad minute most of the board turns red together, as real
boards do. Each symbol trades at its own pace (a Poisson process of 1 to 7 trades a second);
each trade moves the price by the walk accumulated since its last trade, rounded to the cent.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["Market", "Quote", "Stock"]

SECTORS: Final = (
    "Tech", "Energy", "Health", "Finance", "Retail", "Industry", "Media", "Utilities",
    "Materials", "Transport",
)  # fmt: skip
#: Volatility per square root of a second: livelier than a real market, to make a good show.
BASE_VOLATILITY: Final = 6e-4
#: Samples of each symbol's price kept for sparklines, one a second.
SPARK_POINTS: Final = 120

_CONSONANTS = "BCDFGHJKLMNPRSTVWXZ"
_VOWELS = "AEIOUY"
_SYLLABLES = ("tron", "ex", "ia", "on", "ar", "ix", "ol", "um", "yn", "era", "ova", "ent")
_SUFFIXES = ("Corp", "Inc", "Group", "Labs", "Systems", "Holdings", "Industries", "Networks")


@dataclass(slots=True)
class Stock:
    symbol: str
    name: str
    sector: str
    price: float
    open: float
    beta: float
    volatility: float
    rate: float  # trades per second
    volume: int = 0
    high: float = 0.0
    low: float = 0.0
    # The log-return accumulated since the last trade (the walk goes on between trades).
    drift: float = 0.0
    spark: deque[float] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))

    @property
    def change(self) -> float:
        return self.price - self.open

    @property
    def percent(self) -> float:
        return 100.0 * (self.price - self.open) / self.open


@dataclass(frozen=True, slots=True)
class Quote:
    """One trade, as published: compact keys keep the stream small."""

    symbol: str
    price: float
    change: float
    percent: float
    bid: float
    ask: float
    volume: int
    time: float

    def to_json(self) -> dict[str, Any]:
        return {
            "s": self.symbol,
            "p": self.price,
            "c": round(self.change, 2),
            "pc": round(self.percent, 2),
            "b": self.bid,
            "a": self.ask,
            "v": self.volume,
            "t": round(self.time * 1000),
        }


class Market:
    """The market: ``stocks`` by symbol; :meth:`step` advances it and returns the trades."""

    def __init__(self, size: int = 300, *, seed: int = 7, rng: random.Random | None = None) -> None:
        # The listing is the same on every start (seeded); prices then move at random.
        listing = random.Random(seed)
        self.rng = rng or random.Random()
        self.stocks: dict[str, Stock] = {}
        while len(self.stocks) < size:
            symbol, name = _company(listing)
            if symbol in self.stocks:
                continue
            price = round(math.exp(listing.uniform(math.log(8), math.log(900))), 2)
            self.stocks[symbol] = Stock(
                symbol=symbol,
                name=name,
                sector=listing.choice(SECTORS),
                price=price,
                open=price,
                beta=listing.uniform(0.4, 1.6),
                volatility=BASE_VOLATILITY * listing.uniform(0.5, 2.5),
                rate=listing.uniform(1.0, 7.0),
                volume=listing.randrange(10_000, 2_000_000),
                high=price,
                low=price,
            )
        self.now = 0.0
        self._last_sample = 0.0
        # Start with a full sparkline: two minutes of made-up past.
        for _ in range(SPARK_POINTS):
            self.step(1.0, trade_all=True)
            self._sample()
        for stock in self.stocks.values():
            stock.open = stock.spark[0]
            stock.high, stock.low = max(stock.spark), min(stock.spark)

    def step(self, dt: float, *, trade_all: bool = False) -> list[Quote]:
        """Advance ``dt`` seconds; return the trades made meanwhile (at most one per symbol)."""
        self.now += dt
        rng = self.rng
        market = rng.gauss(0.0, BASE_VOLATILITY * 0.8 * math.sqrt(dt))
        quotes = []
        for stock in self.stocks.values():
            own = rng.gauss(0.0, stock.volatility * math.sqrt(dt))
            # A gentle pull back towards the open keeps a long-running demo from drifting off.
            pull = -0.002 * math.log(stock.price / stock.open) * dt
            stock.drift += stock.beta * market + own + pull
            if not trade_all and rng.random() >= stock.rate * dt:
                continue
            price = max(0.01, round(stock.price * math.exp(stock.drift), 2))
            stock.drift = 0.0
            stock.price = price
            stock.high = max(stock.high, price)
            stock.low = min(stock.low, price)
            stock.volume += int(rng.expovariate(1 / 300)) + 1
            quotes.append(self.quote(stock))
        if not trade_all and self.now - self._last_sample >= 1.0:
            self._sample()
        return quotes

    def _sample(self) -> None:
        self._last_sample = self.now
        for stock in self.stocks.values():
            stock.spark.append(stock.price)

    def quote(self, stock: Stock) -> Quote:
        half_spread = max(0.01, round(stock.price * 0.0002, 2))
        return Quote(
            symbol=stock.symbol,
            price=stock.price,
            change=stock.change,
            percent=stock.percent,
            bid=round(stock.price - half_spread, 2),
            ask=round(stock.price + half_spread, 2),
            volume=stock.volume,
            time=self.now,
        )

    def board(self) -> list[list[Any]]:
        """Every symbol's price and change: ``[[symbol, price, percent], ...]``."""
        return [[s.symbol, s.price, round(s.percent, 2)] for s in self.stocks.values()]

    def listing(self) -> list[dict[str, Any]]:
        """The symbols with their names and sectors (static)."""
        return [{"s": s.symbol, "n": s.name, "x": s.sector} for s in self.stocks.values()]

    def details(self, symbol: str) -> dict[str, Any]:
        """A symbol's quote plus its name, day range and sparkline."""
        stock = self.stocks[symbol]
        return {
            **self.quote(stock).to_json(),
            "n": stock.name,
            "x": stock.sector,
            "o": stock.open,
            "hi": stock.high,
            "lo": stock.low,
            "spark": list(stock.spark),
        }


def _company(rng: random.Random) -> tuple[str, str]:
    """A made-up company and its ticker symbol ("Zoltrix Labs", "ZLTX")."""
    stem = rng.choice(_CONSONANTS) + rng.choice(_VOWELS).lower()
    stem += rng.choice(_CONSONANTS).lower() + rng.choice(_SYLLABLES)
    name = f"{stem} {rng.choice(_SUFFIXES)}"
    letters = [ch for ch in stem.upper() if ch not in _VOWELS]
    symbol = "".join(letters[: rng.choice((3, 4, 4))]) if len(letters) >= 3 else stem[:4].upper()
    return symbol, name
