"""Fossil deltas (``wsend.hub.fossil``): round trips, the format, hostile deltas, the fuzz harness.

The format is checked against Fossil's own description (a hand-made delta from the format
document's grammar applies); compatibility with another implementation (the npm package
``fossil-delta``, in Node) is checked in ``tests/interop/test_fossil_node.py``.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsend.exceptions import WebSocketError
from wsend.hub.fossil import DEFAULT_MAX_SIZE, DeltaError, apply, checksum, create


def test_checksum_is_a_sum_of_big_endian_words() -> None:
    assert checksum(b"") == 0
    assert checksum(b"\x00\x00\x00\x01\x00\x00\x00\x02") == 3
    assert checksum(b"\x01") == 0x01000000  # padded with zeros to a whole word
    assert checksum(b"\x01\x02\x03") == 0x01020300
    assert checksum(b"\xff\xff\xff\xff\x00\x00\x00\x02") == 1  # modulo 2**32


def test_a_hand_made_delta_applies() -> None:
    source = b"The quick brown fox jumps over the lazy dog"
    target = b"The quick red fox jumps over the lazy cat!"
    # In decimal: size 42; copy 10 bytes from 0 ("The quick "); insert "red"; copy 25 bytes
    # from 15 (" fox jumps over the lazy "); insert "cat!"; then the checksum.
    delta = b"f\nA@0,3:redP@F,4:cat!" + _b64(checksum(target)) + b";"
    assert apply(source, delta) == target
    assert _b64(42) == b"f"
    assert _b64(10) == b"A"
    assert _b64(25) == b"P"
    assert _b64(15) == b"F"


def _b64(value: int) -> bytes:
    digits = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
    out = b""
    while True:
        out = digits[value & 63 : (value & 63) + 1] + out
        value >>= 6
        if not value:
            return out


def test_round_trips_of_typical_payloads() -> None:
    book = {"bids": [[100 + i / 100, i] for i in range(50)], "asks": [[101, 1]] * 50, "seq": 1}
    source = json.dumps(book).encode()
    book["bids"][3][1] = 999
    book["seq"] = 2
    target = json.dumps(book).encode()
    delta = create(source, target, text=True)
    assert apply(source, delta) == target
    assert len(delta) < len(target) // 20  # two small changes in 1.4 kB
    for source, target in [
        (b"", b""),
        (b"", b"new"),
        (b"old", b""),
        (b"short", b"short!"),
        (b"x" * 1000, b"x" * 1000),
        (b"x" * 1000, b"x" * 999 + b"y"),
        (bytes(range(256)) * 4, bytes(range(255, -1, -1)) * 4),
    ]:
        assert apply(source, create(source, target)) == target
    identical = create(source, source)
    assert len(identical) < 20  # one copy of everything


def test_text_mode_keeps_characters_whole() -> None:
    source = ("prix: 10 € — état: fermé; " * 8).encode()
    target = source.replace("10 €".encode(), "12 €".encode()).replace(b"ferm", b"ouv")
    delta = create(source, target, text=True)
    delta.decode()  # valid UTF-8: no character split between a copy and an insert
    assert apply(source, delta) == target
    # Without text mode the same pair may split characters; the delta is still correct.
    assert apply(source, create(source, target)) == target
    # A match made only of continuation bytes shrinks to nothing in text mode: inserted.
    source, target = b"\x80" * 16 + b"A" * 16, b"Z" + b"\x80" * 16 + b"Q"
    assert b"@" in create(source, target)
    delta = create(source, target, text=True)
    assert b"@" not in delta
    assert apply(source, delta) == target


@given(st.binary(max_size=600), st.binary(max_size=600))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_pair_round_trips(source: bytes, target: bytes) -> None:
    assert apply(source, create(source, target)) == target


@st.composite
def related(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A source and a version of it with a few insertions, deletions and replacements."""
    alphabet = draw(st.sampled_from([b"ab", b'abcdefgh{}":,0123456789', bytes(range(256))]))
    source = bytes(draw(st.lists(st.sampled_from(alphabet), max_size=2000)))
    target = bytearray(source)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(target)))
        cut = draw(st.integers(0, 40))
        insert = draw(st.binary(max_size=30))
        target[at : at + cut] = insert
    return source, bytes(target)


@given(related())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_related_pairs_round_trip(pair: tuple[bytes, bytes]) -> None:
    source, target = pair
    delta = create(source, target)
    assert apply(source, delta) == target
    assert apply(source, create(source, target, text=True)) == target


@given(st.text(max_size=300), st.text(max_size=300), st.integers(0, 5))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_text_deltas_of_text_are_text(base: str, change: str, repeat: int) -> None:
    source = (base * repeat + change).encode()
    target = (change + base * repeat + base).encode()
    delta = create(source, target, text=True)
    assert apply(source, delta) == target
    delta.decode()


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        (b"", "newline"),
        (b"3", "newline"),
        (b"3\n", "ends without a checksum"),
        (b"3\n3@0,", "ends without a checksum"),
        (b"3\n3@0", "not ended by ','"),
        (b"3\n3@0;", "not ended by ','"),
        (b"3\n3@5,", "past the end of the source"),
        (b"3\n5:abc", "past the end of the delta"),
        (b"3\n4:abcd", "more bytes than it declares"),
        (b"3\n2@0,2@0,", "more bytes than it declares"),
        (b"3\n2@0,0;", "produced 2 bytes"),
        (b"3\n3@0,0;", "checksum mismatch"),
        (b"3\n3@0,X;", "checksum mismatch"),
        (b"3\n3#0,", "unknown command"),
        (b"3\n3@0,\x00", "unknown command"),
        (b"1234567\n", "number too large"),
        (b"3\n3@1234567,", "number too large"),
        (b"zzzzzz\n", "over the limit"),
    ],
)
def test_hostile_deltas_are_refused_clearly(delta: bytes, message: str) -> None:
    with pytest.raises(DeltaError, match=message) as info:
        apply(b"abcd", delta)
    assert isinstance(info.value, WebSocketError)
    assert isinstance(info.value, ValueError)


def test_bytes_after_the_checksum_are_refused() -> None:
    delta = create(b"abcd" * 10, b"abcd" * 11)
    assert apply(b"abcd" * 10, delta) == b"abcd" * 11
    with pytest.raises(DeltaError, match="after the checksum"):
        apply(b"abcd" * 10, delta + b"x")


def test_the_size_limit_bounds_memory() -> None:
    # A few bytes of delta could ask for gigabytes by copying the source over and over: the
    # declared size is checked first, and every copy against it.
    source = b"x" * 1000
    copies = b"Fd@0," * 1000  # 1000 copies of 1000 bytes
    delta = _b64(1_000_000) + b"\n" + copies + _b64(checksum(b"x" * 1_000_000)) + b";"
    assert len(apply(source, delta)) == 1_000_000
    with pytest.raises(DeltaError, match="over the limit"):
        apply(source, delta, max_size=999_999)
    assert DEFAULT_MAX_SIZE == 64 << 20


@given(st.binary(max_size=64), st.binary(max_size=200))
@settings(max_examples=500)
def test_random_deltas_raise_only_delta_error(source: bytes, delta: bytes) -> None:
    try:
        out = apply(source, delta, max_size=4096)
    except DeltaError:
        return
    assert len(out) <= 4096


# -- the fuzz harness, without atheris ---------------------------------------------------------

_FUZZ_PATH = Path(__file__).parents[2] / "fuzzing" / "fuzz_fossil.py"


def _fuzz_target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_fossil", _FUZZ_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_harness_on_seeds_and_random_inputs() -> None:
    fuzz = _fuzz_target()
    for seed in fuzz.SEEDS:
        fuzz.TestOneInput(seed)
    rng = random.Random(20240530)
    for _ in range(2000):
        mode = bytes([rng.randrange(3)])
        base = rng.randbytes(rng.randrange(0, 300))
        if rng.random() < 0.5:
            other = bytearray(base)
            for _ in range(rng.randrange(4)):
                at = rng.randrange(len(other) + 1)
                other[at : at + rng.randrange(20)] = rng.randbytes(rng.randrange(10))
            data = mode + base.replace(b"\xff", b"") + b"\xff" + bytes(other)
        else:
            data = mode + rng.randbytes(rng.randrange(0, 200))
        fuzz.TestOneInput(data)
