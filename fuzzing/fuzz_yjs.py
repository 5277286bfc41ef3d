"""Fuzz the y-protocols parser of the Yjs endpoint, :func:`wsend.hub.yjs.protocol.parse_message`,
and pycrdt behind it.

Oracle: for any bytes, ``parse_message`` returns one of the message types or raises
:class:`~wsend.exceptions.InvalidYMessage` with a close code of 1002, 1003 or 1007; nothing
else. A parsed message re-encodes to the same bytes. An update or a state vector it carries,
handed to a pycrdt ``Doc`` the way a room does, is applied (or answered), or refused with
``ValueError``: the room closes the connection with 1007 for that.

Run with atheris::

    python fuzzing/fuzz_yjs.py -atheris_runs=1000000

``TestOneInput`` needs no atheris, so the test suite also calls it with random inputs.
"""

from __future__ import annotations

import contextlib
import sys

import pycrdt

from wsend.exceptions import InvalidYMessage
from wsend.hub.yjs.protocol import (
    AuthMessage,
    AwarenessMessage,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    awareness_message,
    encode_awareness,
    parse_message,
    sync_step1,
    sync_step2,
    sync_update,
)


def _seed_update() -> bytes:
    doc: pycrdt.Doc = pycrdt.Doc(client_id=42)
    text = doc.get("text", type=pycrdt.Text)
    text += "hello 🙂"
    del text[0:2]
    return doc.get_update()


SEEDS = [
    sync_step1(b"\x01\x2a\x05"),
    sync_step2(_seed_update()),
    sync_update(_seed_update()),
    awareness_message(b'\x01\xd2\x09\x03\x0f{"user":{"n":1}}'),
    awareness_message(b"\x01\x01\x02\x04null"),
    b"\x03",
    b"\x02\x00\x06denied",
    b"\x00\x00\x00",
]


def TestOneInput(data: bytes) -> None:
    try:
        message = parse_message(data)
    except InvalidYMessage as exc:
        code = exc.code
        if code not in (1002, 1003, 1007):
            raise AssertionError(f"unexpected close code {code}") from exc
        return
    if isinstance(message, SyncStep1):
        assert sync_step1(message.state_vector) == data
        doc: pycrdt.Doc = pycrdt.Doc()
        with contextlib.suppress(ValueError):
            doc.get_update(message.state_vector)
    elif isinstance(message, SyncStep2 | SyncUpdate):
        encode = sync_step2 if isinstance(message, SyncStep2) else sync_update
        assert encode(message.update) == data
        with contextlib.suppress(ValueError):
            pycrdt.Doc().apply_update(message.update)
    elif isinstance(message, AwarenessMessage):
        assert awareness_message(message.update) == data
        assert encode_awareness(message.entries) == message.update or _overlong(message)
    else:
        assert isinstance(message, QueryAwareness | AuthMessage)


def _overlong(message: AwarenessMessage) -> bool:
    """Whether the update had varints with redundant bytes (``0x80 0x00``): lib0 reads them,
    so they re-encode shorter."""
    return len(encode_awareness(message.entries)) < len(message.update)


def main() -> None:  # pragma: no cover - needs atheris
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()
