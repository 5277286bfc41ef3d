"""Fuzz the Fossil delta codec (``wsend.hub.fossil``).

The first input byte picks the test; the rest splits into a source and a second string:

- ``apply(source, data)``: hostile deltas. Oracle: returns bytes no longer than the declared
  size (and ``max_size``), or raises :class:`DeltaError`, never anything else.
- ``create(source, target)`` then ``apply``: round trip. Oracle: the target comes back; in text
  mode, a delta of valid UTF-8 is valid UTF-8.
- a round trip whose delta is then damaged (one byte changed): ``apply`` returns the target
  anyway (a harmless change, such as an equivalent digit) or raises :class:`DeltaError`.

Run with atheris::

    python fuzzing/fuzz_fossil.py -atheris_runs=100000

``TestOneInput`` needs no atheris, so the test suite also calls it with random inputs.
"""

from __future__ import annotations

import contextlib
import sys

from wsend.hub.fossil import DeltaError, apply, create

#: The output limit of the hostile-delta test: small, so that declared sizes exceed it.
MAX_SIZE = 1 << 16

SEEDS = [
    b"\x00abcdefghijklmnopqrstuvwxyz\xff3\n3@0,2M;",
    b"\x00\xff1\n0:Z;",
    b"\x01" + b"0123456789abcdef" * 4 + b"\xff" + b"0123456789abcdef" * 3 + b"XYZ",
    b"\x02" + "héllo wörld, ünïcødé ✓".encode() * 3 + b"\xff" + "héllo wörld ✓".encode() * 3,
]


def _split(data: bytes) -> tuple[bytes, bytes]:
    head, _, tail = data.partition(b"\xff")
    return head, tail


def _hostile(source: bytes, delta: bytes) -> None:
    try:
        out = apply(source, delta, max_size=MAX_SIZE)
    except DeltaError:
        return
    assert isinstance(out, bytes)
    assert len(out) <= MAX_SIZE


def _round_trip(source: bytes, target: bytes, text: bool) -> None:
    delta = create(source, target, text=text)
    assert apply(source, delta) == target
    if text:
        try:
            target.decode()
        except UnicodeDecodeError:
            return
        delta.decode()  # raises if a copy split a character
    if len(delta) > 1:
        position = len(target) % (len(delta) - 1)
        damaged = bytearray(delta)
        damaged[position] ^= 0x01 + (len(source) % 0x7F)
        with contextlib.suppress(DeltaError):
            assert apply(source, bytes(damaged)) == target


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    source, other = _split(rest)
    if mode == 0:
        _hostile(source, other)
    else:
        _round_trip(source, other, text=mode == 2)


def main() -> None:  # pragma: no cover - needs atheris
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()
