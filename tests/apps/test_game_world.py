"""The game's world (pure logic) and its app module (RPC handlers, the tick loop)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import Any

import pytest

from wsend.apps import game
from wsend.apps.game_world import (
    COIN_RADIUS,
    COINS,
    HEIGHT,
    MAX_PLAYERS,
    PLAYER_RADIUS,
    SPEED,
    WIDTH,
    WINNING_SCORE,
    Coin,
    World,
)
from wsend.hub.codes import HubError
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions


def make_world() -> World:
    return World(rng=random.Random(3))


def test_players_accelerate_and_stay_inside() -> None:
    world = make_world()
    player = world.join("a", "Ada")
    world.coins.clear()
    world.steer("a", 1, 0)
    x0 = player.x
    world.step(1 / 30)
    assert 0 < player.x - x0 < SPEED / 30  # accelerating, not at top speed at once
    for _ in range(200):
        world.step(1 / 30)
    assert player.x == pytest.approx(WIDTH - PLAYER_RADIUS, abs=SPEED / 30)
    assert PLAYER_RADIUS <= player.y <= HEIGHT - PLAYER_RADIUS


def test_steer_is_clamped_and_normalized() -> None:
    world = make_world()
    player = world.join("a", "Ada")
    world.steer("a", 5, 5, rtt=42.4)
    assert math.hypot(player.dx, player.dy) == pytest.approx(1)
    assert player.rtt == 42
    world.steer("a", float("nan"), -3)
    assert (player.dx, player.dy) == (0, -1)
    world.steer("ghost", 1, 1)  # unknown players are ignored


def test_collecting_coins_and_winning_a_round() -> None:
    world = make_world()
    player = world.join("a", "Ada")
    assert len(world.coins) == COINS
    world.coins = {99: Coin(99, player.x + PLAYER_RADIUS + COIN_RADIUS - 1, player.y, 5)}
    events = world.step(0.001)
    assert player.score == 5
    assert {k: events[0][k] for k in ("type", "player", "value")} == {
        "type": "coin",
        "player": "a",
        "value": 5,
    }
    assert len(world.coins) == COINS  # respawned
    player.score = WINNING_SCORE - 1
    world.coins = {100: Coin(100, player.x, player.y, 1)}
    events = world.step(0.001)
    assert world.winner == "Ada"
    assert any(e["type"] == "win" for e in events)
    world.step(1.0)  # paused: nobody moves, the score stays
    assert player.score == WINNING_SCORE
    events = world.step(5.0)
    assert world.round == 2
    assert world.winner is None
    assert player.score == 0
    assert events == [{"type": "round", "round": 2}]


def test_players_push_each_other_apart() -> None:
    world = make_world()
    a, b = world.join("a", "A"), world.join("b", "B")
    a.x, a.y, b.x, b.y = 300.0, 300.0, 305.0, 300.0
    world.step(0.001)
    assert math.dist((a.x, a.y), (b.x, b.y)) == pytest.approx(2 * PLAYER_RADIUS, abs=0.5)


def test_join_twice_leave_and_capacity() -> None:
    world = make_world()
    first = world.join("a", "Ada")
    assert world.join("a", "Ada L.") is first
    assert first.name == "Ada L."
    world.leave("a")
    world.leave("a")
    assert not world.players
    for i in range(MAX_PLAYERS):
        world.join(str(i), f"p{i}")
    assert len({p.color for p in world.players.values()}) >= 12
    with pytest.raises(OverflowError):
        world.join("late", "Late")


def test_snapshot_is_compact() -> None:
    world = make_world()
    world.join("a", "Ada")
    snap = world.snapshot()
    assert set(snap) == {"t", "round", "winner", "players", "coins"}
    assert snap["players"][0][:3] == ["a", "Ada", world.players["a"].color]
    assert len(snap["coins"]) == COINS


class FakeSession:
    def __init__(self, client: str, name: str | None = None) -> None:
        self.client = client
        self.user = ""
        self.info: Any = {"name": name} if name else None


async def test_rpc_handlers() -> None:
    hub = Hub(HubOptions(namespaces=game.namespaces()))
    game.setup(hub)
    rpc = hub.rpc_handlers
    joined = rpc["game.join"](FakeSession("c1", "Ada"), {})
    assert joined["id"] == "c1"
    assert joined["width"] == WIDTH
    arena = game.world(hub)
    assert arena.players["c1"].name == "Ada"
    rpc["game.join"](FakeSession("c1", "Ada"), {"name": "  Grace\n"})
    assert arena.players["c1"].name == "Grace"
    rpc["game.join"](FakeSession("c2"), None)
    assert arena.players["c2"].name.startswith("player-")
    rpc["game.input"](FakeSession("c1"), {"dx": 1, "dy": 0, "rtt": 12})
    assert arena.players["c1"].dx == 1
    assert arena.players["c1"].rtt == 12
    for bad in (None, {"dx": "left"}, {"dx": True}):
        with pytest.raises(HubError):
            rpc["game.input"](FakeSession("c1"), bad)
    rpc["game.leave"](FakeSession("c1"), None)
    assert "c1" not in arena.players
    await hub.close()


async def test_tick_loop_publishes_state_and_drops_absent_players() -> None:
    hub = Hub(HubOptions(namespaces=game.namespaces()))
    game.setup(hub)
    arena = game.world(hub)
    arena.join("gone", "Gone")  # not in the channel's presence: dropped within a second
    published: list[tuple[str, Any, str | None]] = []
    real_publish = hub.publish

    async def spy(channel: str, data: Any, *, key: str | None = None) -> Any:
        published.append((channel, data, key))
        return await real_publish(channel, data, key=key)

    hub.publish = spy  # type: ignore[method-assign]
    task = asyncio.create_task(game.start(hub))
    await asyncio.sleep(0.4)
    assert published
    channel, data, key = published[0]
    assert (channel, key) == (game.CHANNEL, "state")
    assert {"players", "coins", "events", "t"} <= data.keys()
    await asyncio.sleep(0.8)
    assert "gone" not in arena.players
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await hub.close()
