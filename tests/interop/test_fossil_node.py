"""wsend's Fossil deltas against another implementation: the npm package ``fossil-delta``.

Deltas made by :func:`wsend.hub.fossil.create` are applied by ``fossil-delta``'s
``applyDelta`` in Node (which checks sizes and the checksum), and deltas made by its
``createDelta`` are applied by :func:`wsend.hub.fossil.apply`, for random and typical pairs.
Needs Node.js and ``npm ci`` in ``tests/interop/node`` (run when missing); skipped without
Node, except under CI where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from wsend.hub.fossil import apply, create

NODE_DIR = Path(__file__).parent / "node"


def _node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "Node.js and npm are needed for the fossil-delta cross-check"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    assert node is not None
    assert npm is not None
    if not (NODE_DIR / "node_modules" / "fossil-delta" / "package.json").is_file():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}")
    return node


def _pairs() -> list[tuple[bytes, bytes, bool]]:
    rng = random.Random(1971)
    pairs: list[tuple[bytes, bytes, bool]] = []
    for _ in range(150):
        source = bytes(
            rng.choice(b"abcdef{}[],:0123456789\x00\xff") for _ in range(rng.randrange(600))
        )
        target = bytearray(source)
        for _ in range(rng.randrange(5)):
            at = rng.randrange(len(target) + 1)
            target[at : at + rng.randrange(40)] = rng.randbytes(rng.randrange(20))
        pairs.append((source, bytes(target), rng.random() < 0.5))
    for _ in range(20):
        pairs.append((rng.randbytes(rng.randrange(300)), rng.randbytes(rng.randrange(300)), False))
    book = {
        "bids": [[100 + i / 100, i] for i in range(60)],
        "asks": [[101 + i / 100, 2] for i in range(60)],
    }
    before = json.dumps(book).encode()
    book["bids"][7][1] = 12
    pairs.append((before, json.dumps(book).encode(), True))
    text = ("prix: 10 € — état: fermé; " * 20).encode()
    pairs.append((text, text.replace("10 €".encode(), "11 €".encode()), True))
    pairs += [(b"", b"", False), (b"", b"abc", False), (b"abc", b"", False)]
    return pairs


def test_fossil_delta_package_agrees() -> None:
    node = _node()
    pairs = _pairs()
    ours = [create(source, target, text=text) for source, target, text in pairs]
    cases = [
        {
            "source": base64.b64encode(source).decode(),
            "target": base64.b64encode(target).decode(),
            "delta": base64.b64encode(delta).decode(),
        }
        for (source, target, _), delta in zip(pairs, ours, strict=True)
    ]
    done = subprocess.run(
        [node, "fossil_check.mjs"],
        cwd=NODE_DIR,
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert len(results) == len(pairs)
    for (source, target, _), result in zip(pairs, results, strict=True):
        assert result["error"] is None, result["error"]
        assert base64.b64decode(result["applied"]) == target  # ours, applied by fossil-delta
        theirs = base64.b64decode(result["delta"])
        assert apply(source, theirs) == target  # fossil-delta's, applied by ours
