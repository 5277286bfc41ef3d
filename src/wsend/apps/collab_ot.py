"""Operational transformation for plain text: the convergence core of the collab app.

An operation (``Op``) walks over the whole document from start to end. It's a list of
components:

- a positive ``int`` n: *retain* (skip over) n characters;
- a negative ``int`` -n: *delete* the next n characters;
- a non-empty ``str``: *insert* it here.

So ``[5, "ab", -2, 3]``, applied to a 10-character document, keeps the first 5 characters,
inserts "ab", deletes the next 2 and keeps the last 3. An operation must cover the document
exactly: the sum of its retains and deletes is the length of the document it applies to
(:func:`base_length`).

Operations are kept *normalized*: no zero or empty components, no two neighbours of the same
kind, an insert never directly after a delete (``[-2, "x"]`` is written ``["x", -2]``). Then two
operations that do the same thing are equal lists, and the JavaScript twin of this module
(``web/collab/ot.js``) produces exactly the same lists, which the tests check.

The three functions that make convergence work:

- :func:`apply` runs an operation on a string.
- :func:`transform` takes two operations ``a`` and ``b`` made concurrently on the same document
  and returns ``(a2, b2)`` with ``apply(apply(doc, a), b2) == apply(apply(doc, b), a2)``: each
  side applies the other's operation adjusted for its own. When both insert at the same place,
  ``a``'s text goes first. The server and the clients always pass the *client's* operation as
  ``a`` and the server's (already sequenced) one as ``b``, so both sides break ties the same
  way.
- :func:`compose` merges two consecutive operations into one (a client buffers its keystrokes
  that way while waiting for the server).

Lengths count *characters of the string type the operation runs on*. The collab app runs the
algorithm on UTF-16 code units, like JavaScript strings (see :func:`to_units`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

__all__ = [
    "Op",
    "apply",
    "base_length",
    "compose",
    "from_units",
    "normalize",
    "parse_op",
    "target_length",
    "to_units",
    "transform",
    "transform_index",
]

Component: TypeAlias = int | str
Op: TypeAlias = list[Component]


def _is_retain(c: Component) -> bool:
    return isinstance(c, int) and c > 0


def _is_delete(c: Component) -> bool:
    return isinstance(c, int) and c < 0


def _push(op: Op, c: Component) -> None:
    """Append ``c`` to the normalized ``op``, keeping it normalized."""
    if c == 0 or c == "":
        return
    if not op:
        op.append(c)
        return
    last = op[-1]
    if isinstance(c, str):
        if isinstance(last, str):
            op[-1] = last + c
        elif _is_delete(last):
            # Insert before delete: [.., "ab", -2] rather than [.., -2, "ab"].
            if len(op) >= 2 and isinstance(op[-2], str):
                op[-2] = op[-2] + c
            else:
                op.insert(len(op) - 1, c)
        else:
            op.append(c)
    elif isinstance(last, int) and (last > 0) == (c > 0):
        op[-1] = last + c
    else:
        op.append(c)


def normalize(components: Iterable[Component]) -> Op:
    """The normalized form of a list of components."""
    op: Op = []
    for c in components:
        _push(op, c)
    return op


def base_length(op: Sequence[Component]) -> int:
    """The length of the documents ``op`` applies to."""
    return sum(abs(c) for c in op if isinstance(c, int))


def target_length(op: Sequence[Component]) -> int:
    """The length of the documents ``op`` produces."""
    return sum(c if isinstance(c, int) and c > 0 else 0 for c in op) + sum(
        len(c) for c in op if isinstance(c, str)
    )


def parse_op(value: Any, *, max_insert: int = 1 << 20) -> Op:
    """Validate an operation received from a client (decoded JSON) and normalize it.

    Raises:
        ValueError: not a list of non-zero ints and non-empty strings, or inserting more than
            ``max_insert`` characters.
    """
    if not isinstance(value, list):
        raise ValueError("an operation is a list")
    inserted = 0
    for c in value:
        if isinstance(c, bool) or not isinstance(c, int | str) or c == 0 or c == "":
            raise ValueError(f"bad component {c!r}")
        if isinstance(c, str):
            inserted += len(c)
    if inserted > max_insert:
        raise ValueError("insert too large")
    return normalize(value)


def apply(doc: str, op: Sequence[Component]) -> str:
    """Run ``op`` on ``doc``.

    Raises:
        ValueError: ``op`` doesn't cover ``doc`` exactly.
    """
    if base_length(op) != len(doc):
        raise ValueError(f"operation for length {base_length(op)} applied to length {len(doc)}")
    parts: list[str] = []
    pos = 0
    for c in op:
        if isinstance(c, str):
            parts.append(c)
        elif c > 0:
            parts.append(doc[pos : pos + c])
            pos += c
        else:
            pos -= c
    return "".join(parts)


class _Reader:
    """Reads an operation component by component, splitting ints and strings on demand."""

    __slots__ = ("i", "op", "rest")

    def __init__(self, op: Sequence[Component]) -> None:
        self.op = op
        self.i = 0
        self.rest: Component | None = op[0] if op else None

    def peek(self) -> Component | None:
        return self.rest

    def take(self, n: int | None = None) -> Component:
        """Take the whole current component, or its first ``n`` units (retain/delete/insert)."""
        c = self.rest
        assert c is not None
        size = len(c) if isinstance(c, str) else abs(c)
        if n is None or n >= size:
            self.i += 1
            self.rest = self.op[self.i] if self.i < len(self.op) else None
            return c
        if isinstance(c, str):
            self.rest = c[n:]
            return c[:n]
        sign = 1 if c > 0 else -1
        self.rest = c - sign * n
        return sign * n


def _size(c: Component) -> int:
    return len(c) if isinstance(c, str) else abs(c)


def compose(a: Sequence[Component], b: Sequence[Component]) -> Op:
    """One operation doing ``a`` then ``b``: ``apply(apply(d, a), b) == apply(d, compose(a, b))``.

    Raises:
        ValueError: ``b`` doesn't apply to ``a``'s result.
    """
    if target_length(a) != base_length(b):
        raise ValueError("compose: the second operation doesn't follow the first")
    out: Op = []
    ra, rb = _Reader(a), _Reader(b)
    while True:
        ca, cb = ra.peek(), rb.peek()
        if ca is None and cb is None:
            return out
        if ca is not None and _is_delete(ca):
            _push(out, ra.take())  # a's deletes happen regardless of b
        elif cb is not None and isinstance(cb, str):
            _push(out, rb.take())  # b's inserts happen regardless of a
        else:
            assert ca is not None  # the lengths match
            assert cb is not None
            n = min(_size(ca), _size(cb))
            xa, xb = ra.take(n), rb.take(n)
            if isinstance(xa, str):
                if _is_retain(xb):
                    _push(out, xa)  # b keeps what a inserted
                # else b deletes what a inserted: nothing remains
            elif _is_retain(xb):
                _push(out, xa)  # retain, retain
            else:
                _push(out, xb)  # a retained, b deletes


def transform(a: Sequence[Component], b: Sequence[Component]) -> tuple[Op, Op]:
    """Transform concurrent ``a`` and ``b`` (same base document) against each other.

    Returns ``(a2, b2)`` with ``apply(apply(d, a), b2) == apply(apply(d, b), a2)``. Inserts at
    the same position: ``a``'s goes first.

    Raises:
        ValueError: ``a`` and ``b`` don't apply to the same length.
    """
    if base_length(a) != base_length(b):
        raise ValueError("transform: operations on different lengths")
    a2: Op = []
    b2: Op = []
    ra, rb = _Reader(a), _Reader(b)
    while True:
        ca, cb = ra.peek(), rb.peek()
        if ca is None and cb is None:
            return a2, b2
        if ca is not None and isinstance(ca, str):
            text = ra.take()
            assert isinstance(text, str)
            _push(a2, text)
            _push(b2, len(text))
        elif cb is not None and isinstance(cb, str):
            text = rb.take()
            assert isinstance(text, str)
            _push(a2, len(text))
            _push(b2, text)
        else:
            assert ca is not None
            assert cb is not None
            n = min(_size(ca), _size(cb))
            xa, xb = ra.take(n), rb.take(n)
            assert isinstance(xa, int)
            assert isinstance(xb, int)
            if xa > 0 and xb > 0:
                _push(a2, n)
                _push(b2, n)
            elif xa < 0 and xb > 0:
                _push(a2, -n)  # a deletes what b kept
            elif xa > 0 and xb < 0:
                _push(b2, -n)  # b deletes what a kept
            # both delete the same characters: nothing left to do for either


def transform_index(op: Sequence[Component], index: int) -> int:
    """Where position ``index`` of a document moves when ``op`` runs on it (for cursors).

    Text inserted exactly at ``index`` pushes it right.
    """
    new = index
    pos = 0
    for c in op:
        if pos > index:
            break
        if isinstance(c, str):
            new += len(c)
        elif c > 0:
            pos += c
        else:
            new -= min(index - pos, -c)
            pos -= c
    return new


def to_units(text: str) -> str:
    """``text`` with each UTF-16 code unit as one character, as JavaScript counts.

    Browsers measure string positions in UTF-16 code units: an emoji is 2. The server runs
    OT on strings in this form so that every position agrees with the browsers'.
    """
    if text.isascii() or all(ord(ch) < 0x10000 for ch in text):
        return text
    raw = text.encode("utf-16-le", "surrogatepass")
    return "".join(chr(raw[i] | raw[i + 1] << 8) for i in range(0, len(raw), 2))


def from_units(units: str) -> str:
    """The inverse of :func:`to_units`: pair surrogates back into characters.

    A lone surrogate (a document edited in the middle of a pair) becomes U+FFFD.
    """
    if all(ch < "\ud800" or ch > "\udfff" for ch in units):
        return units
    raw = units.encode("utf-16-le", "surrogatepass")
    return raw.decode("utf-16-le", "replace")


class ClientState:
    """A client's side of server-sequenced OT: what ``web/collab/collab.js`` does, in Python.

    The client has the document as of server revision :attr:`revision`, plus its own edits the
    server hasn't confirmed: at most one operation in flight (:attr:`sent`) and the edits made
    since, composed into one (:attr:`buffer`). The visible document is the server's revision
    with ``sent`` then ``buffer`` applied.

    - :meth:`edit`: a local edit; returns the operation to send now, if nothing is in flight.
    - :meth:`ack`: the server sequenced our ``sent``; returns the buffer to send next, if any.
    - :meth:`receive`: another client's operation, as sequenced by the server; transforms it
      past our unconfirmed edits (and them past it) and returns what to apply to the visible
      document.
    """

    __slots__ = ("buffer", "doc", "revision", "sent")

    def __init__(self, doc: str = "", revision: int = 0) -> None:
        self.doc = doc
        self.revision = revision
        self.sent: Op | None = None
        self.buffer: Op | None = None

    def edit(self, op: Op) -> Op | None:
        self.doc = apply(self.doc, op)
        if self.sent is None:
            self.sent = op
            return op
        self.buffer = op if self.buffer is None else compose(self.buffer, op)
        return None

    def ack(self) -> Op | None:
        self.revision += 1
        self.sent, self.buffer = self.buffer, None
        return self.sent

    def receive(self, op: Op) -> Op:
        self.revision += 1
        if self.sent is not None:
            self.sent, op = transform(self.sent, op)
        if self.buffer is not None:
            self.buffer, op = transform(self.buffer, op)
        self.doc = apply(self.doc, op)
        return op
