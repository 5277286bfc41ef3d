"""Collab: a shared plain-text document with live cursors and a list of who's here.

The page (``web/collab/``) is a Yjs application: unmodified ``yjs`` and ``y-websocket``
(bundled in ``web/collab/yjs.js``) edit a ``Y.Text`` named ``text`` in the room
``collab.<doc>`` of the hub's y-websocket endpoint (``/yjs/collab.<doc>``, the channel
``yjs:collab.<doc>``; see :mod:`wsend.hub.yjs`). The endpoint keeps the document (pycrdt,
stored on disk), relays updates between pages and nodes, and sends late joiners the whole
document; Yjs, a CRDT, makes concurrent edits converge. Names, colors and cursors travel as
Yjs awareness (cursors as relative positions, so they stay on their character whatever
others type), which the endpoint also shows in the hub's presence of the channel.

This module gives new documents their welcome text (:func:`yjs_document`): written by a fixed
Yjs client id, it is the same update whichever node creates the document, so two nodes
creating it at once don't write it twice.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import pycrdt

__all__ = ["WELCOME", "yjs_document"]

NAME = "collab"
TITLE = "Collab"
DESCRIPTION = (
    "A shared text pad: everyone types at once, with live cursors and a list of who's here. "
    "Built with Yjs: concurrent edits converge, and the document is kept on the server's disk."
)
ORDER = 40

#: The room prefix of the pads: ``?doc=name`` opens the room ``collab.name``.
ROOM_PREFIX: Final = "yjs:collab."
#: The Yjs client id of the welcome text (any fixed id: the update must be the same bytes on
#: every node).
WELCOME_CLIENT: Final = 1

WELCOME = """Welcome to the shared pad!

Everything you type here appears in every other browser looking at this page, as you type it.
Open this page in a second window (or send the link to a friend) and type in both at once:
the text converges, and you see each other's cursors.

Try it below this line.
------------------------------------------------------------

"""


@cache
def _welcome() -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=WELCOME_CLIENT)
    text = doc.get("text", type=pycrdt.Text)
    text += WELCOME
    return doc.get_update()


def yjs_document(room: str) -> bytes | None:
    """The first update of a new document in ``room``: the welcome text for the pads."""
    return _welcome() if room.startswith(ROOM_PREFIX) else None
