"""Game: a real-time multiplayer arena. Steer your dot, grab the coins, first to 50 wins.

How it works:

- The server runs the world (:mod:`.game_world`) in a loop at :data:`TICK_RATE` steps per
  second and publishes the whole world after each step on ``game:arena`` with the conflation
  key ``"state"``. A browser that falls behind (a slow network, a busy laptop) doesn't get an
  ever-growing backlog of stale frames: the hub keeps only the newest state in its queue.
- Browsers join with RPC ``game.join`` (their name comes from the connect data) and send their
  direction with RPC ``game.input`` ``{"dx", "dy", "rtt"}`` whenever a key changes (and once a
  second with their measured round-trip time, shown on the score board). The server alone
  moves players and counts points, so nobody can teleport.
- Browsers draw what they receive about 100 ms in the past, interpolating between the two
  states around that moment: motion stays smooth although states arrive in bursts.
- A player leaves with RPC ``game.leave`` or by closing the page: each second the loop drops
  players who aren't in the channel's presence anymore.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any, Final

from ..hub.codes import ErrorCode, HubError
from ..hub.options import NamespaceOptions
from . import clean_name
from .game_world import HEIGHT, PLAYER_RADIUS, WIDTH, WINNING_SCORE, World

if TYPE_CHECKING:
    from ..hub.node import Hub
    from ..hub.session import Session

NAME = "game"
TITLE = "Arena"
DESCRIPTION = (
    "A multiplayer game: steer your dot with the arrow keys and race the others for coins. "
    "The server simulates the world 30 times a second and streams it with conflation."
)
ORDER = 20

CHANNEL: Final = "game:arena"
TICK_RATE: Final = 30
#: Players who haven't touched a key for this long are dropped.
IDLE_TIMEOUT: Final = 300.0

_worlds: weakref.WeakKeyDictionary[Hub, World] = weakref.WeakKeyDictionary()


def namespaces() -> dict[str, NamespaceOptions]:
    # The state is "latest wins": conflate it for slow clients. Presence tells the loop who
    # is still connected.
    return {"game": NamespaceOptions(presence=True, slow_consumer="conflate")}


def world(hub: Hub) -> World:
    """The world of ``hub`` (one per hub)."""
    w = _worlds.get(hub)
    if w is None:
        w = _worlds[hub] = World()
    return w


def _name(session: Session, data: Any) -> str:
    """The name asked for in ``data``, else the connection's (from its connect data)."""
    info = session.info if isinstance(session.info, dict) else {}
    asked = clean_name(data.get("name")) if isinstance(data, dict) else None
    name = asked or clean_name(info.get("name")) or f"player-{session.client[:4]}"
    return name[:20]


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HubError(ErrorCode.BAD_REQUEST, f"{key} must be a number")
    return float(value)


def setup(hub: Hub) -> None:
    arena = world(hub)

    @hub.rpc("game.join")
    def join(session: Session, data: Any) -> dict[str, Any]:
        try:
            player = arena.join(session.client, _name(session, data))
        except OverflowError:
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "the arena is full", temporary=True) from None
        return {
            "id": player.id,
            "color": player.color,
            "width": WIDTH,
            "height": HEIGHT,
            "radius": PLAYER_RADIUS,
            "tickRate": TICK_RATE,
            "winningScore": WINNING_SCORE,
        }

    @hub.rpc("game.input")
    def steer(session: Session, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise HubError(ErrorCode.BAD_REQUEST, "expected {dx, dy}")
        rtt = data.get("rtt")
        arena.steer(
            session.client,
            _number(data, "dx"),
            _number(data, "dy"),
            _number(data, "rtt") if rtt is not None else None,
        )
        return {}

    @hub.rpc("game.leave")
    def leave(session: Session, data: Any) -> dict[str, Any]:
        arena.leave(session.client)
        return {}


async def start(hub: Hub) -> None:
    """The tick loop: step, publish, and once a second drop players who left."""
    arena = world(hub)
    dt = 1 / TICK_RATE
    next_tick = time.monotonic()
    last_prune = 0.0
    ticks = 0
    while True:
        next_tick += dt
        events = arena.step(dt)
        ticks += 1
        # Nobody playing: a slow heartbeat is enough for spectators.
        if arena.players or events or ticks % TICK_RATE == 0:
            state = arena.snapshot()
            state["events"] = events
            await hub.publish(CHANNEL, state, key="state")
        if arena.now - last_prune >= 1.0:
            last_prune = arena.now
            present = await hub.presence_of(CHANNEL)
            for player in list(arena.players.values()):
                if player.id not in present or arena.now - player.seen > IDLE_TIMEOUT:
                    arena.leave(player.id)
        delay = next_tick - time.monotonic()
        if delay < -1.0:  # far behind (the machine was asleep): don't try to catch up
            next_tick = time.monotonic()
        await asyncio.sleep(max(0.0, delay))
