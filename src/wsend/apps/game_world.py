"""The game's world: players steering dots, coins to collect, rounds (pure logic, no I/O).

The server owns the world (it is *authoritative*): clients only say which way they want to go
(:meth:`World.steer`), and :meth:`World.step` moves everyone, picks up coins and keeps score.
:meth:`World.snapshot` is what the server publishes each tick, a compact JSON-friendly dict.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["Coin", "Player", "World"]

WIDTH: Final = 1200.0
HEIGHT: Final = 720.0
PLAYER_RADIUS: Final = 16.0
COIN_RADIUS: Final = 9.0
#: Top speed, in world units per second, and how fast players reach it.
SPEED: Final = 300.0
ACCELERATION: Final = 1800.0
#: Coins on the field at once, and the chance that a new coin is a gold one (worth 5).
COINS: Final = 14
GOLD_CHANCE: Final = 0.08
#: The first to this many points wins the round; the next starts after a short pause.
WINNING_SCORE: Final = 50
PAUSE: Final = 4.0
MAX_PLAYERS: Final = 24

PALETTE: Final = (
    "#ff6b6b", "#4dabf7", "#51cf66", "#fcc419", "#cc5de8", "#ff922b",
    "#22b8cf", "#f06595", "#94d82d", "#845ef7", "#20c997", "#ffa8a8",
)  # fmt: skip


@dataclass(slots=True)
class Player:
    id: str
    name: str
    color: str
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    # The direction asked for: each of -1, 0 or 1 (normalized on diagonals).
    dx: float = 0.0
    dy: float = 0.0
    score: int = 0
    rtt: int | None = None
    seen: float = 0.0


@dataclass(slots=True)
class Coin:
    id: int
    x: float
    y: float
    value: int


@dataclass
class World:
    """The arena. ``now`` is the simulation time in seconds (advanced by :meth:`step`)."""

    rng: random.Random = field(default_factory=random.Random)
    now: float = 0.0
    players: dict[str, Player] = field(default_factory=dict)
    coins: dict[int, Coin] = field(default_factory=dict)
    round: int = 1
    # After a round is won: who won, and when the next round starts.
    winner: str | None = None
    resume_at: float = 0.0
    _next_coin: int = 0

    def __post_init__(self) -> None:
        while len(self.coins) < COINS:
            self._spawn_coin()

    # -- players -------------------------------------------------------------------------------

    def join(self, id: str, name: str) -> Player:
        """Add (or return) the player ``id``, placed where no one else is."""
        player = self.players.get(id)
        if player is not None:
            player.name = name
            return player
        if len(self.players) >= MAX_PLAYERS:
            raise OverflowError("the arena is full")
        used = {p.color for p in self.players.values()}
        color = next((c for c in PALETTE if c not in used), self.rng.choice(PALETTE))
        x, y = self._free_spot()
        player = Player(id, name, color, x, y, seen=self.now)
        self.players[id] = player
        return player

    def leave(self, id: str) -> None:
        self.players.pop(id, None)

    def steer(self, id: str, dx: float, dy: float, rtt: float | None = None) -> None:
        """Set the direction player ``id`` wants to go (each component clamped to -1..1)."""
        player = self.players.get(id)
        if player is None:
            return
        dx, dy = _clamp(dx, -1, 1), _clamp(dy, -1, 1)
        norm = math.hypot(dx, dy)
        if norm > 1:
            dx, dy = dx / norm, dy / norm
        player.dx, player.dy = dx, dy
        if rtt is not None:
            player.rtt = round(_clamp(rtt, 0, 10_000))
        player.seen = self.now

    # -- simulation ----------------------------------------------------------------------------

    def step(self, dt: float) -> list[dict[str, Any]]:
        """Advance the world by ``dt`` seconds; return the events that happened (pickups, wins)."""
        self.now += dt
        events: list[dict[str, Any]] = []
        if self.winner is not None:
            if self.now < self.resume_at:
                return events
            self._new_round()
            events.append({"type": "round", "round": self.round})
        for player in self.players.values():
            self._move(player, dt)
        self._separate()
        for player in self.players.values():
            for coin in list(self.coins.values()):
                if math.dist((player.x, player.y), (coin.x, coin.y)) < PLAYER_RADIUS + COIN_RADIUS:
                    del self.coins[coin.id]
                    player.score += coin.value
                    events.append(
                        {"type": "coin", "player": player.id, "value": coin.value,
                         "x": round(coin.x), "y": round(coin.y)}
                    )  # fmt: skip
            if player.score >= WINNING_SCORE and self.winner is None:
                self.winner = player.name
                self.resume_at = self.now + PAUSE
                events.append({"type": "win", "player": player.id, "name": player.name})
        while len(self.coins) < COINS:
            self._spawn_coin()
        return events

    def _move(self, p: Player, dt: float) -> None:
        # Accelerate towards the wanted velocity: smooth starts and stops, no instant turns.
        want_x, want_y = p.dx * SPEED, p.dy * SPEED
        ddx, ddy = want_x - p.vx, want_y - p.vy
        change = math.hypot(ddx, ddy)
        limit = ACCELERATION * dt
        if change > limit:
            ddx, ddy = ddx * limit / change, ddy * limit / change
        p.vx += ddx
        p.vy += ddy
        p.x += p.vx * dt
        p.y += p.vy * dt
        # Bounce off the walls, losing some speed.
        r = PLAYER_RADIUS
        if p.x < r or p.x > WIDTH - r:
            p.x = _clamp(p.x, r, WIDTH - r)
            p.vx = -p.vx * 0.5
        if p.y < r or p.y > HEIGHT - r:
            p.y = _clamp(p.y, r, HEIGHT - r)
            p.vy = -p.vy * 0.5

    def _separate(self) -> None:
        """Push overlapping players apart, half each (players are solid)."""
        players = list(self.players.values())
        for i, a in enumerate(players):
            for b in players[i + 1 :]:
                dx, dy = b.x - a.x, b.y - a.y
                dist = math.hypot(dx, dy)
                overlap = 2 * PLAYER_RADIUS - dist
                if overlap <= 0:
                    continue
                if dist == 0:
                    dx, dy, dist = 1.0, 0.0, 1.0
                push_x, push_y = dx / dist * overlap / 2, dy / dist * overlap / 2
                a.x, a.y = a.x - push_x, a.y - push_y
                b.x, b.y = b.x + push_x, b.y + push_y

    def _new_round(self) -> None:
        self.round += 1
        self.winner = None
        self.coins.clear()
        for player in self.players.values():
            player.score = 0
            player.x, player.y = self._free_spot()
            player.vx = player.vy = 0.0
        while len(self.coins) < COINS:
            self._spawn_coin()

    def _spawn_coin(self) -> None:
        margin = 40.0
        for _ in range(20):  # avoid spawning right under a player
            x = self.rng.uniform(margin, WIDTH - margin)
            y = self.rng.uniform(margin, HEIGHT - margin)
            if all(math.dist((x, y), (p.x, p.y)) > 80 for p in self.players.values()):
                break
        value = 5 if self.rng.random() < GOLD_CHANCE else 1
        self.coins[self._next_coin] = Coin(self._next_coin, x, y, value)
        self._next_coin += 1

    def _free_spot(self) -> tuple[float, float]:
        best = (WIDTH / 2, HEIGHT / 2)
        best_distance = -1.0
        for _ in range(12):
            x = self.rng.uniform(60, WIDTH - 60)
            y = self.rng.uniform(60, HEIGHT - 60)
            distance = min((math.dist((x, y), (p.x, p.y)) for p in self.players.values()),
                           default=math.inf)  # fmt: skip
            if distance > best_distance:
                best, best_distance = (x, y), distance
        return best

    # -- what clients see ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The world as published each tick (positions rounded to 0.1 to keep it small)."""
        return {
            "t": round(self.now * 1000),
            "round": self.round,
            "winner": self.winner,
            "players": [
                [p.id, p.name, p.color, round(p.x, 1), round(p.y, 1), p.score, p.rtt]
                for p in self.players.values()
            ],
            "coins": [[c.id, round(c.x), round(c.y), c.value] for c in self.coins.values()],
        }


def _clamp(value: float, low: float, high: float) -> float:
    if not math.isfinite(value):
        return 0.0
    return max(low, min(high, value))
