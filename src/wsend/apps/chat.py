"""The chat demo: rooms, presence, join/leave notices, history, typing indicators.

Everything real-time happens in the hub; this module only says what each namespace allows.
The page (``wsend/web/chat/``) does the rest with ``wsend.js``:

- A room ``lobby`` is the channel ``chat:lobby``. Clients publish their messages there
  (``{"text": ..., "name": ...}``); the hub keeps the last :data:`HISTORY_SIZE` for
  :data:`HISTORY_TTL` seconds, so a newcomer sees the conversation so far (``history``) and a
  client that lost its connection gets what it missed when it comes back (recovery). Presence
  lists who is in the room; join/leave pushes announce arrivals and departures.
- Typing indicators go to ``chat-typing:lobby``: ephemeral events (``{"name": ...}``) with no
  history and no recovery, so they never clutter the room's history or a reconnect.
- Message size: the page refuses messages longer than :data:`MAX_TEXT` characters; the hub
  refuses (error 106) any publication larger than its ``max_publication_size`` (64 KiB by
  default; :data:`MAX_PUBLICATION` is enough for a chat of its own).

Copy it: a chat in your own server is ``Hub(HubOptions(namespaces=namespaces(),
allow_anonymous=True))`` plus this page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hub.options import NamespaceOptions

if TYPE_CHECKING:
    from ..hub.node import Hub

NAME = "chat"
TITLE = "Chat"
DESCRIPTION = (
    "Rooms with a presence list, join and leave notices, history for newcomers, typing "
    "indicators, and messages that survive a dropped connection."
)
ORDER = 10

#: Messages kept per room, and for how long (seconds): a day of a lively room.
HISTORY_SIZE = 200
HISTORY_TTL = 24 * 3600.0
#: The longest message the page sends, in characters.
MAX_TEXT = 2000
#: The largest publication (encoded bytes) the hub accepts: MAX_TEXT characters of up to
#: 4 UTF-8 bytes each, plus the name and JSON punctuation.
MAX_PUBLICATION = 4 * MAX_TEXT + 512


def namespaces() -> dict[str, NamespaceOptions]:
    """The chat's namespaces: ``chat`` for rooms, ``chat-typing`` for typing events."""
    return {
        "chat": NamespaceOptions(
            subscribe="anyone",
            publish=True,  # clients post directly; no backend round trip
            presence=True,
            join_leave=True,
            history_size=HISTORY_SIZE,
            history_ttl=HISTORY_TTL,
            recovery=True,
        ),
        "chat-typing": NamespaceOptions(
            subscribe="anyone",
            publish=True,
            # No history: a typing event is worthless a few seconds later.
        ),
    }


def setup(hub: Hub) -> None:
    """Register ``chat.rooms``: the rooms with people in them, for the room picker."""

    @hub.rpc("chat.rooms")
    async def rooms(session: Any, data: Any) -> dict[str, Any]:
        counts = {}
        for room in ROOMS:
            stats = await hub.presence_stats(f"chat:{room}")
            counts[room] = stats.num_clients
        return {"rooms": counts}


#: The rooms suggested on the page (any other name works too).
ROOMS = ("lobby", "python", "random")


async def start(hub: Hub) -> None:
    """Nothing runs in the background: the chat is all client publications."""
    return None
