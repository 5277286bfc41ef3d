"""Collab: a shared plain-text document with live cursors and a presence list.

Convergence: server-sequenced operational transformation (the algorithm of Google Wave and
ot.js; :mod:`.collab_ot` has the operations). The server holds each document and a log of the
edits it applied, numbered 1, 2, 3... (the *revision*).

1. A browser opens a document with RPC ``collab.open`` (``{"doc"}`` -> ``{"text", "revision"}``)
   after subscribing to its channel ``collab:<doc>``.
2. It sends each local edit with RPC ``collab.edit``: ``{"doc", "revision", "op", "author",
   "seq"}``, where ``revision`` is the last server revision the edit is based on, ``author`` a
   random id the page picks once, and ``seq`` counts the page's edits. It has at most one edit
   in flight and composes the keystrokes made meanwhile into the next one.
3. The server transforms the edit against every edit sequenced since ``revision`` (which the
   author hadn't seen), applies it, gives it the next revision and publishes
   ``{"revision", "op", "author", "seq"}`` on ``collab:<doc>``. The author recognizes its own
   edit there (the acknowledgement) and sends its next one; the others transform it against
   their own unconfirmed edits and apply it. Everyone applies the same edits in the same
   order, so every copy converges to the server's.
4. After a reconnect, a page catches up with RPC ``collab.since`` (``{"doc", "revision",
   "epoch"}`` -> ``{"edits": [...]}``, or ``{"text", "revision", "epoch"}`` when the log no
   longer reaches back or the epoch isn't the document's), then resends its edit in flight:
   the server recognizes a resent ``(author, seq)`` and doesn't apply it twice.
5. A server restart loses the documents (they live in memory); each new :class:`Document`
   has a new random ``epoch``. A page coming back to a document of another epoch that nobody
   has edited yet gives it its copy with RPC ``collab.restore`` (``{"doc", "epoch", "text",
   "author", "seq"}``, ``epoch`` being the page's old one): the first page back wins, and
   its copy becomes revision 1, published like any edit. Later ones get ``{"text",
   "revision", "epoch"}`` and reload. So the pad survives a restart while a page has it open.

Cursors travel on ``collab-cursors:<doc>``, published by the browsers themselves with the
revision they refer to (``{"revision", "anchor", "head"}``, conflation key = the client id:
only the latest cursor of each client matters). A receiver moves them through the edits it
applied since that revision (:func:`~.collab_ot.transform_index`). The presence list is the hub's
presence of ``collab:<doc>``, named by the connect data ``{"name": ...}``.

Positions count UTF-16 code units like JavaScript strings (:func:`~.collab_ot.to_units`).
"""

from __future__ import annotations

import re
import secrets
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..hub.codes import ErrorCode, HubError
from ..hub.options import NamespaceOptions
from .collab_ot import Op, apply, from_units, normalize, parse_op, to_units, transform

if TYPE_CHECKING:
    from ..hub.node import Hub
    from ..hub.session import Session

__all__ = ["Document", "Documents", "Edit"]

NAME = "collab"
TITLE = "Collab"
DESCRIPTION = (
    "A shared text pad: everyone types at once, with live cursors and a list of who's here. "
    "Concurrent edits converge with operational transformation."
)
ORDER = 40

#: The longest document, in UTF-16 code units.
MAX_LENGTH: Final = 100_000
#: Edits kept per document to transform late edits and to catch reconnecting pages up.
LOG_SIZE: Final = 2000
#: How many documents the server keeps (``?doc=name`` in the page's URL picks one).
MAX_DOCUMENTS: Final = 100

DOC_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_LONE_SURROGATE = re.compile(
    r"[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)

WELCOME = """Welcome to the shared pad!

Everything you type here appears in every other browser looking at this page, as you type it.
Open this page in a second window (or send the link to a friend) and type in both at once:
the text converges, and you see each other's cursors.

Try it below this line.
------------------------------------------------------------

"""


def namespaces() -> dict[str, NamespaceOptions]:
    return {
        # The edits: only the server publishes them; none may be dropped, so a client that
        # can't keep up is disconnected (and catches up with collab.since).
        "collab": NamespaceOptions(presence=True, join_leave=True),
        # Cursors: published by the browsers, and only the latest per client matters.
        "collab-cursors": NamespaceOptions(publish=True, slow_consumer="conflate"),
    }


@dataclass(frozen=True, slots=True)
class Edit:
    """An edit as the server applied it: the ``revision`` it created."""

    revision: int
    op: Op
    author: str
    seq: int

    def to_json(self) -> dict[str, Any]:
        op = [from_units(c) if isinstance(c, str) else c for c in self.op]
        return {"revision": self.revision, "op": op, "author": self.author, "seq": self.seq}


class Document:
    """One document and the log of its recent edits (no I/O: easy to test and to reuse)."""

    def __init__(self, text: str = "", *, log_size: int = LOG_SIZE) -> None:
        self.text = to_units(text)
        self.revision = 0
        #: Changes whenever the document is created anew (e.g. after a server restart).
        self.epoch = secrets.token_hex(4)
        self.log: deque[Edit] = deque(maxlen=log_size)
        # The last edit of each author, to recognize an edit resent after a reconnect.
        self._last: dict[str, Edit] = {}

    def submit(self, revision: int, op: Op, author: str, seq: int) -> tuple[Edit, bool]:
        """Sequence an edit based on ``revision``; return it as applied and whether it's new.

        Raises:
            HubError: ``BAD_REQUEST`` when the edit doesn't fit the document at ``revision``,
                when ``revision`` is in the future or too old for the log (the client must
                reload), or when the document would grow too long.
        """
        last = self._last.get(author)
        if last is not None and seq <= last.seq:
            if seq == last.seq:
                return last, False  # resent after a reconnect: already applied
            raise HubError(ErrorCode.BAD_REQUEST, "stale edit")
        if not 0 <= revision <= self.revision:
            raise HubError(ErrorCode.BAD_REQUEST, "unknown revision")
        missed = self.revision - revision
        if missed > len(self.log):
            raise HubError(ErrorCode.BAD_REQUEST, "revision too old: reload")
        try:
            # Transform against every edit the author hadn't seen, oldest first.
            for i in range(len(self.log) - missed, len(self.log)):
                op, _ = transform(op, self.log[i].op)
            text = apply(self.text, op)
        except ValueError:
            raise HubError(ErrorCode.BAD_REQUEST, "edit doesn't fit the document") from None
        if len(text) > MAX_LENGTH and len(text) > len(self.text):
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "document too long")
        if _LONE_SURROGATE.search(text):
            raise HubError(ErrorCode.BAD_REQUEST, "edit splits a character")
        self.text = text
        self.revision += 1
        edit = Edit(self.revision, op, author, seq)
        self.log.append(edit)
        self._last[author] = edit
        return edit, True

    def since(self, revision: int) -> list[Edit] | None:
        """The edits after ``revision``, or ``None`` if the log doesn't reach back that far."""
        missed = self.revision - revision
        if not 0 <= missed <= len(self.log):
            return None
        return list(self.log)[len(self.log) - missed :]

    def restore(self, epoch: str, text: str, author: str, seq: int) -> Edit | None:
        """Replace the text of a document that nobody has edited since it was created with
        ``text``, a page's copy of an older document of the same name (of ``epoch``).

        Returns:
            The edit that replaced the text (revision 1), or ``None`` when it is too late
            (someone edited the document already, or the page's copy is of this epoch).

        Raises:
            HubError: ``LIMIT_EXCEEDED`` for a text longer than :data:`MAX_LENGTH`;
                ``BAD_REQUEST`` for a text splitting a character.
        """
        if epoch == self.epoch or self.revision != 0:
            return None
        units = to_units(text)
        if len(units) > MAX_LENGTH:
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "document too long")
        op = normalize([-len(self.text), units])
        edit, _ = self.submit(0, op, author, seq)
        return edit

    def snapshot(self) -> dict[str, Any]:
        return {"text": from_units(self.text), "revision": self.revision, "epoch": self.epoch}


class Documents:
    """The server's documents by name, created on first use."""

    def __init__(self, max_documents: int = MAX_DOCUMENTS) -> None:
        self.max_documents = max_documents
        self.docs: dict[str, Document] = {}

    def get(self, name: Any) -> Document:
        if not isinstance(name, str) or not DOC_NAME.fullmatch(name):
            raise HubError(ErrorCode.BAD_REQUEST, "bad document name")
        doc = self.docs.get(name)
        if doc is None:
            if len(self.docs) >= self.max_documents:
                raise HubError(ErrorCode.LIMIT_EXCEEDED, "too many documents")
            doc = self.docs[name] = Document(WELCOME)
        return doc


_documents: weakref.WeakKeyDictionary[Hub, Documents] = weakref.WeakKeyDictionary()


def documents(hub: Hub) -> Documents:
    """The documents of ``hub`` (one set per hub)."""
    docs = _documents.get(hub)
    if docs is None:
        docs = _documents[hub] = Documents()
    return docs


def _field(data: Any, name: str, kind: type) -> Any:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise HubError(ErrorCode.BAD_REQUEST, f"{name} must be a {kind.__name__}")
    return value


def setup(hub: Hub) -> None:
    docs = documents(hub)

    @hub.rpc("collab.open")
    def open_doc(session: Session, data: Any) -> dict[str, Any]:
        return docs.get(_field(data, "doc", str)).snapshot()

    @hub.rpc("collab.since")
    def since(session: Session, data: Any) -> dict[str, Any]:
        doc = docs.get(_field(data, "doc", str))
        epoch = data.get("epoch")  # absent: the page trusts its revision
        edits = doc.since(_field(data, "revision", int)) if epoch in (None, doc.epoch) else None
        if edits is None:
            return doc.snapshot()
        return {"edits": [edit.to_json() for edit in edits]}

    @hub.rpc("collab.edit")
    async def edit(session: Session, data: Any) -> dict[str, Any]:
        name = _field(data, "doc", str)
        doc = docs.get(name)
        try:
            op = parse_op(_field(data, "op", list), max_insert=MAX_LENGTH)
        except ValueError as exc:
            raise HubError(ErrorCode.BAD_REQUEST, str(exc)) from None
        op = [to_units(c) if isinstance(c, str) else c for c in op]
        author = _field(data, "author", str)[:64]
        revision, seq = _field(data, "revision", int), _field(data, "seq", int)
        applied, new = doc.submit(revision, op, author, seq)
        if new:
            await hub.publish(f"collab:{name}", applied.to_json())
        return {"revision": applied.revision}

    @hub.rpc("collab.restore")
    async def restore(session: Session, data: Any) -> dict[str, Any]:
        name = _field(data, "doc", str)
        doc = docs.get(name)
        text = _field(data, "text", str)
        author, seq = _field(data, "author", str)[:64], _field(data, "seq", int)
        applied = doc.restore(_field(data, "epoch", str), text, author, seq)
        if applied is None:
            return doc.snapshot()  # too late: reload this
        await hub.publish(f"collab:{name}", applied.to_json())
        return {"revision": applied.revision, "epoch": doc.epoch}
