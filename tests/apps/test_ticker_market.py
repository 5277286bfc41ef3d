"""The ticker's simulated market (pure logic) and its app module."""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
from typing import Any

import pytest

from wsend.apps import ticker
from wsend.apps.ticker_market import SPARK_POINTS, Market
from wsend.hub.codes import HubError
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(300, rng=random.Random(5))


def test_listing_is_stable_and_unique(market: Market) -> None:
    assert len(market.stocks) == 300
    again = Market(300, rng=random.Random(99))
    assert list(again.stocks) == list(market.stocks)  # same symbols on every start
    for symbol, stock in market.stocks.items():
        assert symbol.isalpha()
        assert symbol.isupper()
        assert 2 <= len(symbol) <= 4
        assert stock.name
        assert stock.sector


def test_trades_are_frequent_and_prices_realistic(market: Market) -> None:
    start = {s: st.price for s, st in market.stocks.items()}
    counts: dict[str, int] = {}
    for _ in range(200):  # 10 seconds
        for quote in market.step(0.05):
            counts[quote.symbol] = counts.get(quote.symbol, 0) + 1
            assert quote.price > 0
            assert quote.bid < quote.price < quote.ask
            assert round(quote.price, 2) == quote.price
    per_second = statistics.mean(counts.values()) / 10
    assert 2 < per_second < 6
    moves = [abs(market.stocks[s].price / p - 1) for s, p in start.items()]
    assert 0.0005 < statistics.median(moves) < 0.05  # moving, but not wildly


def test_quotes_and_board(market: Market) -> None:
    quote = market.step(0.05, trade_all=True)[0]
    data = quote.to_json()
    assert set(data) == {"s", "p", "c", "pc", "b", "a", "v", "t"}
    board = market.board()
    assert len(board) == 300
    assert board[0][0] == quote.symbol
    details = market.details(quote.symbol)
    assert len(details["spark"]) == SPARK_POINTS
    assert details["lo"] <= details["p"] <= details["hi"]


async def test_rpc_and_feed() -> None:
    hub = Hub(HubOptions(namespaces=ticker.namespaces()))
    ticker.setup(hub)
    rpc = hub.rpc_handlers
    listing = rpc["ticker.listing"](None, None)
    assert len(listing["symbols"]) == 300
    first = listing["symbols"][0]["s"]
    details = rpc["ticker.details"](None, {"symbols": [first, "NOPE", 3]})
    assert list(details) == [first]
    with pytest.raises(HubError):
        rpc["ticker.details"](None, {"symbols": ["A"] * 100})
    published: list[tuple[str, Any, str | None]] = []
    real_publish = hub.publish

    async def spy(channel: str, data: Any, *, key: str | None = None) -> Any:
        published.append((channel, data, key))
        return await real_publish(channel, data, key=key)

    hub.publish = spy  # type: ignore[method-assign]
    task = asyncio.create_task(ticker.start(hub))
    await asyncio.sleep(0.3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    quotes = [p for p in published if p[0] != ticker.BOARD_CHANNEL]
    assert len(quotes) > 100  # ~1,200 trades a second
    channel, data, key = quotes[0]
    assert channel == f"ticker:{data['s']}"
    assert key == data["s"]
    assert any(p[0] == ticker.BOARD_CHANNEL and p[2] == "board" for p in published)
    await hub.close()
