"""Tests of the scanners that answer frames too deep to decode (``wsend.hub.scan``)."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsend.hub import scan
from wsend.hub.wire import JSON, MSGPACK, BadFrame, PingCommand

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=40,
)


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_msgpack(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


# -- agreement with msgspec where it decodes ---------------------------------------------------


@settings(max_examples=200)
@given(st.lists(json_values, max_size=6), st.sampled_from([b"", b" ", b"\n\t "]))
def test_json_elements_are_the_arrays_elements(values: list[Any], space: bytes) -> None:
    encoded = [msgspec.json.encode(value) for value in values]
    data = space + b"[" + (b"," + space).join(encoded) + space + b"]" + space
    found = scan.json_elements(data)
    assert found is not None
    assert [msgspec.json.decode(element) for element in found] == values


@settings(max_examples=200)
@given(st.lists(msgpack_values, max_size=20))
def test_msgpack_elements_are_the_arrays_elements(values: list[Any]) -> None:
    found = scan.msgpack_elements(msgspec.msgpack.encode(values))
    assert found is not None
    assert [msgspec.msgpack.decode(element) for element in found] == values


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=4), json_values), st.integers(1, 2**53 - 1))
def test_ids_are_found_among_other_members(members: dict[str, Any], id: int) -> None:
    members["id"] = id
    assert scan.json_id(msgspec.json.encode(members)) == id
    assert scan.msgpack_id(msgspec.msgpack.encode(members)) == id


# -- what the decoder can't reach --------------------------------------------------------------


def test_ids_beside_data_deeper_than_the_decoder_goes() -> None:
    for data in (b'{"data":' + deep_json(30_000) + b',"id":7}', b'{ "id" : 7, "x": "]\\"["}'):
        assert scan.json_id(data) == 7
    escaped = b'{"\\u0069d": 8, "data": ' + deep_json(5_000) + b"}"
    assert scan.json_id(escaped) == 8
    packed = b"\x82\xa4data" + deep_msgpack(30_000) + b"\xa2id\x07"
    assert scan.msgpack_id(packed) == 7


def test_batch_with_a_deep_element_is_split() -> None:
    data = b'[{"id":1}, ' + deep_json(30_000) + b', {"id":2}]'
    found = scan.json_elements(data)
    assert found is not None
    assert [len(e) for e in found] == [8, 60_000, 8]
    packed = b"\x93\x81\xa2id\x01" + deep_msgpack(30_000) + b"\x81\xa2id\x02"
    found = scan.msgpack_elements(packed)
    assert found is not None
    assert [len(e) for e in found] == [5, 30_001, 5]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[",
        b'{"id": 1',
        b'{"id": "unterminated}',
        b'{"id": 1} trailing',
        b'x{"id": 1}',
        b"[1, 2",
        b"[] []",
        b'"\\"' * 20_000,  # escaped quotes, never closed: linear, not quadratic
        deep_json(30_000)[:-1],
    ],
)
def test_malformed_json_gives_nothing(data: bytes) -> None:
    assert scan.json_id(data) is None
    assert scan.json_elements(data) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x91",  # an array missing its element
        b"\xdd\xff\xff\xff\xff\xc0",  # four billion elements announced, one given
        b"\xdf\xff\xff\xff\xff",
        b"\xc6\xff\xff\xff\xff",  # a bin longer than the message
        deep_msgpack(30_000)[:-1],
        b"\x81\xa2id\x01\xc0",  # a byte after the map
        b"\x81\xa2id\xc1",
    ],
)
def test_malformed_msgpack_gives_nothing(data: bytes) -> None:
    assert scan.msgpack_id(data) is None
    assert scan.msgpack_elements(data) in (None, [])


def test_wrong_kinds_give_nothing() -> None:
    assert scan.json_elements(b'{"id": 1}') is None
    assert scan.json_id(b"[1]") is None
    assert scan.json_elements(b"[]") == []
    assert scan.msgpack_elements(b"\x81\xa2id\x01") is None
    assert scan.msgpack_id(b"\x91\x01") is None
    assert scan.json_id(b'{"data": 1}') is None
    # Deeper than msgspec decodes on any Python version (3.13 takes 10,000 levels).
    assert scan.json_id(b'{"id": ' + deep_json(30_000) + b"}") is None
    assert scan.msgpack_id(b"\x81\xa2id" + deep_msgpack(30_000)) is None


# -- the codecs answer what is too deep --------------------------------------------------------


def test_codecs_answer_frames_too_deep_to_decode() -> None:
    message = '{"id":5,"method":"publish","channel":"x","data":' + "[" * 30_000 + "]" * 30_000 + "}"
    assert JSON.decode_commands(message) == [BadFrame(5, JSON.decode_commands(message)[0].reason)]
    batch = '[{"id":1,"method":"ping"},' + message + ',{"id":2,"method":"ping"}]'
    first, bad, last = JSON.decode_commands(batch)
    assert (first, last) == (PingCommand(id=1), PingCommand(id=2))
    assert isinstance(bad, BadFrame)
    assert bad.id == 5
    head = msgspec.msgpack.encode({"id": 6, "method": "publish", "channel": "x"})
    packed = b"\x84" + head[1:] + b"\xa4data" + deep_msgpack(30_000)  # a fourth key: data
    [bad] = MSGPACK.decode_commands(packed)
    assert isinstance(bad, BadFrame)
    assert bad.id == 6
    items = MSGPACK.decode_commands(b"\x92" + packed + b"\x81\xa2id\x09")
    assert [(type(item), item.id) for item in items] == [(BadFrame, 6), (BadFrame, 9)]
    [bad] = MSGPACK.decode_commands(b"\x93" + packed + b"\x81\xa2id\x09")  # one is missing
    assert isinstance(bad, BadFrame)
    assert bad.id is None


# -- the fuzz harness, without atheris ---------------------------------------------------------

_FUZZ_PATH = Path(__file__).parents[2] / "fuzzing" / "fuzz_hub_wire.py"


def _fuzz_target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_hub_wire", _FUZZ_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = _fuzz_target()


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(0, 4)):
        pos = rng.randrange(1, len(data) + 1)
        op = rng.random()
        if op < 0.3:
            del data[pos : pos + rng.randint(1, 8)]
        elif op < 0.7:
            data[pos:pos] = rng.randbytes(rng.randint(1, 4))
        else:
            data[pos:pos] = rng.choice([b"[", b"]", b'"', b"\\", b",", b"\x91", b"\xdc\xff"])
    return bytes(data)


def test_fuzz_target_seeds_and_mutations() -> None:
    rng = random.Random(7692)
    for seed in FUZZ.SEEDS:
        FUZZ.TestOneInput(seed)
    for _ in range(300):
        FUZZ.TestOneInput(_mutate(rng, rng.choice(FUZZ.SEEDS)))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_target_hypothesis(data: bytes) -> None:
    FUZZ.TestOneInput(data)


# -- depth of decoded values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("[[[", 0),
        ([], 1),
        ({"a": 1}, 1),
        ([[1], {"a": [2]}], 3),
        ({("k", ("t",)): 1}, 3),  # MessagePack map keys decode as tuples
        ([[0] * 10] * 1_000, 2),  # wide, not deep
    ],
)
def test_check_depth(value: object, depth: int) -> None:
    scan.check_depth(value, depth)
    if depth:
        with pytest.raises(ValueError, match=f"more than {depth - 1} levels"):
            scan.check_depth(value, depth - 1)


def test_check_depth_takes_any_depth_without_recursion() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(ValueError, match="more than 512 levels"):
        scan.check_depth(value, 512)
    scan.check_depth(value, 100_001)
