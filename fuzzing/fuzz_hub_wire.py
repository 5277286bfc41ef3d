"""Fuzz the hub's wire codecs (``wsend.hub.wire``) and their scanners (``wsend.hub.scan``).

The first input byte picks the codec (JSON or MessagePack) and whether the rest is decoded as
one message or wrapped in a batch; the rest is the message.

Oracle: ``Codec.decode_commands`` never raises and returns at least one item, each a command
or a ``BadFrame`` whose id, when set, is an integer in [1, 2**53); a message is never split
into more than ``MAX_BATCH`` items. The scanners never raise, and where msgspec can decode the
same input, they agree with it: the elements they find are the array's elements and the id
they find is the object's ``id``.

Run with atheris::

    python fuzzing/fuzz_hub_wire.py -atheris_runs=100000

``TestOneInput`` needs no atheris, so the test suite also calls it with random inputs.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from wsend.hub import scan
from wsend.hub.wire import JSON, MAX_BATCH, MSGPACK, BadFrame, Codec

SEEDS = [
    b'\x00{"id":1,"method":"ping"}',
    b'\x00[{"id":1,"method":"ping"},{"id":2,"method":"publish","channel":"a","data":[1]}]',
    b'\x00{"data":' + b"[" * 1200 + b"]" * 1200 + b',"id":3,"method":"publish","channel":"x"}',
    b"\x01" + msgspec.msgpack.encode({"id": 1, "method": "ping"}),
    b"\x01" + msgspec.msgpack.encode([{"id": 1, "method": "ping"}, {"id": 2}]),
    b"\x01\x84\xa2id\x05\xa6method\xa7publish\xa7channel\xa1x\xa4data" + b"\x91" * 1200 + b"\xc0",
]


def _decoded(codec: Codec, data: bytes) -> tuple[bool, Any]:
    try:
        if codec is JSON:
            return True, msgspec.json.decode(data)
        return True, msgspec.msgpack.decode(data)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return False, None


def check_scanners(codec: Codec, data: bytes) -> None:
    """The scanners never raise and agree with msgspec where it decodes ``data``."""
    elements_of = scan.json_elements if codec is JSON else scan.msgpack_elements
    id_of = scan.json_id if codec is JSON else scan.msgpack_id
    elements = elements_of(data)
    found_id = id_of(data)
    ok, value = _decoded(codec, data)
    if not ok:
        return
    if isinstance(value, list):
        assert elements is not None
        assert [_decoded(codec, element) for element in elements] == [(True, v) for v in value]
    elif isinstance(value, dict) and "id" in value and type(value["id"]) is int:
        assert found_id == value["id"], (found_id, value["id"])


def check_decode(codec: Codec, message: str | bytes) -> None:
    """``decode_commands`` keeps its contract on ``message``."""
    items = codec.decode_commands(message)
    assert 1 <= len(items) <= MAX_BATCH
    for item in items:
        if isinstance(item, BadFrame) and item.id is not None:
            assert type(item.id) is int
            assert 1 <= item.id < 2**53


def TestOneInput(data: bytes) -> None:
    """Run one input (see the module docstring)."""
    if not data:
        return
    mode, body = data[0], data[1:]
    codec: Codec = JSON if mode & 1 == 0 else MSGPACK
    if mode & 2:
        body = (b"[" + body + b"]") if codec is JSON else (b"\x91" + body)
    check_scanners(codec, body)
    if codec is JSON:
        try:
            check_decode(codec, body.decode())
        except UnicodeDecodeError:
            check_decode(codec, body)  # JSON in a binary frame must still be UTF-8
    else:
        check_decode(codec, body)


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
