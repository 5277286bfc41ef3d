"""The y-protocols parser and builders (``wsend.hub.yjs.protocol``), and the fuzz harness."""

from __future__ import annotations

import importlib.util
import pathlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsend.exceptions import InvalidYMessage, ProtocolError
from wsend.hub.yjs.protocol import (
    AuthMessage,
    AwarenessEntry,
    AwarenessMessage,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    awareness_message,
    encode_awareness,
    parse_awareness,
    parse_message,
    permission_denied,
    sync_step1,
    sync_step2,
    sync_update,
    var_uint,
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"), (2**53 - 1, None)],
)
def test_var_uint(value: int, encoded: bytes | None) -> None:
    data = var_uint(value)
    if encoded is not None:
        assert data == encoded
    # Read back inside a message: a QueryAwareness can't carry one, an auth message can.
    message = parse_message(b"\x02" + data + b"\x00")
    assert message == AuthMessage(value, "")


def test_var_uint_range() -> None:
    for value in (-1, 2**53):
        with pytest.raises(ValueError, match="out of range"):
            var_uint(value)


def test_round_trips() -> None:
    assert parse_message(sync_step1(b"\x00")) == SyncStep1(b"\x00")
    assert parse_message(sync_step2(b"\x00\x00")) == SyncStep2(b"\x00\x00")
    assert parse_message(sync_update(b"x" * 300)) == SyncUpdate(b"x" * 300)
    assert parse_message(b"\x03") == QueryAwareness()
    assert parse_message(permission_denied("no")) == AuthMessage(0, "no")
    entries = (AwarenessEntry(7, 3, '{"user":{"name":"Ada"}}'), AwarenessEntry(2**40, 0, "null"))
    update = encode_awareness(entries)
    assert parse_message(awareness_message(update)) == AwarenessMessage(update, entries)
    assert entries[1].removed
    assert not entries[0].removed


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (b"", 1002, "truncated varint"),
        (b"\x80", 1002, "truncated varint"),
        (b"\xff" * 9, 1002, "varint too long"),
        (b"\xff\xff\xff\xff\xff\xff\xff\x7f", 1002, "varint too large"),
        (b"\x04", 1002, "unknown message type"),
        (b"\x00\x03\x00", 1002, "unknown sync message type"),
        (b"\x00\x02\x05ab", 1002, "truncated byte array"),
        (b"\x03\x00", 1002, "bytes after the message"),
        (b"\x00\x00\x01\x00\x00", 1002, "bytes after the message"),
        (b"\x01\x08\x02\x01\x01\x04null", 1002, "truncated awareness update"),
        (b"\x01\x06\x01\x01\x01\x02{x", 1007, "not JSON"),
        (b"\x01\x05\x01\x01\x01\x01\xff", 1007, "invalid UTF-8"),
        (b"\x02\x00\x01\xff", 1007, "invalid UTF-8"),
    ],
)
def test_malformed_messages(data: bytes, code: int, reason: str) -> None:
    with pytest.raises(InvalidYMessage, match=reason) as info:
        parse_message(data)
    assert info.value.code == code
    assert isinstance(info.value, ProtocolError)


def test_text_messages_are_refused_with_1003() -> None:
    with pytest.raises(InvalidYMessage) as info:
        parse_message("\x00\x00\x00")
    assert info.value.code == 1003


def test_deeply_nested_awareness_json() -> None:
    state = b"[" * 100_000
    update = var_uint(1) + b"\x01\x01" + var_uint(len(state)) + state
    with pytest.raises(InvalidYMessage) as info:
        parse_awareness(update)
    assert info.value.code == 1007


# The fuzz harness, without atheris

_FUZZ_PATH = pathlib.Path(__file__).parents[3] / "fuzzing" / "fuzz_yjs.py"


def load_fuzz_target():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fuzz_yjs", _FUZZ_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(0, 4)):
        pos = rng.randrange(len(data) + 1)
        op = rng.random()
        if op < 0.3:
            del data[pos : pos + rng.randint(1, 4)]
        elif op < 0.6:
            data[pos:pos] = rng.randbytes(rng.randint(1, 4))
        elif data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
    return bytes(data)


def test_fuzz_target_seeds_and_mutations() -> None:
    fuzz = load_fuzz_target()
    rng = random.Random(1002)
    for seed in fuzz.SEEDS:
        fuzz.TestOneInput(seed)
    for _ in range(3000):
        fuzz.TestOneInput(mutate(rng, rng.choice(fuzz.SEEDS)))


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_fuzz_target_hypothesis(data: bytes) -> None:
    load_fuzz_target.__dict__.setdefault("module", load_fuzz_target())
    load_fuzz_target.__dict__["module"].TestOneInput(data)
