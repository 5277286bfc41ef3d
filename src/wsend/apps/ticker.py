"""Ticker: a simulated market feed of 300 symbols, several trades a second each.

The channel design, chosen to keep the browser fast:

- One channel per symbol, ``ticker:<SYMBOL>``, each trade published with the conflation key
  ``<SYMBOL>``. A page subscribes only to the symbols on its watchlist, so it receives (and
  parses) a few dozen updates a second, not the whole market's ~1,200. The hub does the
  filtering, for free: publishing to a channel nobody watches costs next to nothing.
- One overview channel, ``ticker-board:all``: once a second the price and change of every
  symbol in one publication (key ``"board"``), for the heat map and the symbol picker.
- Both namespaces conflate: when a tab is slow (a phone on a bad network, a busy laptop), its
  queue on the hub keeps only the latest quote per symbol and the latest board, so it shows
  the current market instead of replaying a stale backlog.
- The board offers delta compression (the page asks for it): each second's board goes out as
  a Fossil delta against the previous one when that is smaller. The quotes don't: a quote is
  a ~100-byte object whose fields mostly change from one trade to the next, so a delta is
  rarely smaller, and a delta subscription's JSON payloads travel as escaped strings (about
  15% larger). ``bench/results/delta.md`` has the numbers.
- Static data comes by RPC: ``ticker.listing`` (symbols, names, sectors) and
  ``ticker.details`` ``{"symbols": [...]}`` (quote, day range and the last two minutes of
  prices for the sparklines).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any, Final

from ..hub.codes import ErrorCode, HubError
from ..hub.options import NamespaceOptions
from .ticker_market import Market

if TYPE_CHECKING:
    from ..hub.node import Hub
    from ..hub.session import Session

NAME = "ticker"
TITLE = "Stock ticker"
DESCRIPTION = (
    "A simulated market of 300 symbols ticking several times a second. Pick a watchlist; "
    "conflation keeps a slow tab current instead of lagging behind."
)
ORDER = 30

#: Market steps per second (each symbol trades 1-7 times a second on average).
STEP_RATE: Final = 20
BOARD_CHANNEL: Final = "ticker-board:all"
#: The most symbols ``ticker.details`` answers at once.
MAX_DETAILS: Final = 60

_markets: weakref.WeakKeyDictionary[Hub, Market] = weakref.WeakKeyDictionary()


def namespaces() -> dict[str, NamespaceOptions]:
    return {
        "ticker": NamespaceOptions(slow_consumer="conflate"),
        "ticker-board": NamespaceOptions(slow_consumer="conflate", delta=True),
    }


def market(hub: Hub) -> Market:
    """The market of ``hub`` (one per hub)."""
    m = _markets.get(hub)
    if m is None:
        m = _markets[hub] = Market()
    return m


def setup(hub: Hub) -> None:
    feed = market(hub)

    @hub.rpc("ticker.listing")
    def listing(session: Session, data: Any) -> dict[str, Any]:
        return {"symbols": feed.listing(), "board": feed.board()}

    @hub.rpc("ticker.details")
    def details(session: Session, data: Any) -> dict[str, Any]:
        symbols = data.get("symbols") if isinstance(data, dict) else None
        if not isinstance(symbols, list) or len(symbols) > MAX_DETAILS:
            raise HubError(ErrorCode.BAD_REQUEST, f"symbols: a list of at most {MAX_DETAILS}")
        return {s: feed.details(s) for s in symbols if isinstance(s, str) and s in feed.stocks}


async def start(hub: Hub) -> None:
    """The feed: step the market, publish each trade on its symbol's channel, and the board."""
    feed = market(hub)
    dt = 1 / STEP_RATE
    next_step = time.monotonic()
    last_board = 0.0
    while True:
        next_step += dt
        for quote in feed.step(dt):
            await hub.publish(f"ticker:{quote.symbol}", quote.to_json(), key=quote.symbol)
        if feed.now - last_board >= 1.0:
            last_board = feed.now
            await hub.publish(BOARD_CHANNEL, {"board": feed.board()}, key="board")
        delay = next_step - time.monotonic()
        if delay < -1.0:
            next_step = time.monotonic()
        await asyncio.sleep(max(0.0, delay))
