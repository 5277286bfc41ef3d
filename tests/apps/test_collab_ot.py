"""The OT core of the collab app: operations, and convergence of simulated concurrent editors."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsend.apps.collab import Document
from wsend.apps.collab_ot import (
    ClientState,
    Op,
    apply,
    base_length,
    compose,
    from_units,
    normalize,
    parse_op,
    target_length,
    to_units,
    transform,
    transform_index,
)

OT_JS = Path(__file__).resolve().parents[2] / "src" / "wsend" / "web" / "collab" / "ot.js"

# -- strategies ------------------------------------------------------------------------------

texts = st.text(alphabet="abcxyz \n", max_size=12)


@st.composite
def docs_and_ops(draw: st.DrawFn, count: int = 1) -> tuple[str, list[Op]]:
    """A document and ``count`` random operations on it."""
    doc = draw(texts)
    return doc, [draw(ops_for(doc)) for _ in range(count)]


@st.composite
def ops_for(draw: st.DrawFn, doc: str) -> Op:
    """A random operation on ``doc``: a mix of retains, deletes and inserts."""
    components: list[int | str] = []
    left = len(doc)
    while left or draw(st.booleans()):
        kind = draw(st.sampled_from(["retain", "delete", "insert"] if left else ["insert"]))
        if kind == "insert":
            components.append(draw(st.text(alphabet="ABC123", min_size=1, max_size=4)))
            if not left:
                break
        else:
            n = draw(st.integers(1, left))
            components.append(n if kind == "retain" else -n)
            left -= n
    return normalize(components)


def random_op(rng: random.Random, doc: str) -> Op:
    """A random edit like a keystroke or paste: replace a stretch at a random place."""
    pos = rng.randint(0, len(doc))
    delete = rng.randint(0, min(3, len(doc) - pos)) if rng.random() < 0.4 else 0
    insert = "".join(rng.choice("abc de") for _ in range(rng.randint(0, 3)))
    if not insert and not delete:
        insert = "x"
    return normalize([pos, insert, -delete, len(doc) - pos - delete])


# -- operations ------------------------------------------------------------------------------


def test_apply_examples() -> None:
    assert apply("hello world", [6, "brave ", 5]) == "hello brave world"
    assert apply("hello", [-1, "J", 4]) == "Jello"
    assert apply("", ["abc"]) == "abc"
    with pytest.raises(ValueError, match="length"):
        apply("abc", [2])


def test_normalize_merges_and_orders() -> None:
    assert normalize([1, 2, "a", "b", -1, -2, 0, ""]) == [3, "ab", -3]
    assert normalize([2, -1, "x", 1]) == [2, "x", -1, 1]  # insert before delete
    assert normalize([-1, "x", -1]) == ["x", -2]


def test_transform_tie_breaks_for_the_first_argument() -> None:
    a2, b2 = transform(["A", 1], ["B", 1])
    assert apply(apply("z", ["A", 1]), b2) == "ABz"
    assert apply(apply("z", ["B", 1]), a2) == "ABz"


def test_transform_both_delete_the_same_text() -> None:
    a2, b2 = transform([1, -2, 1], [1, -1, 2])
    doc = "abcd"
    assert apply(apply(doc, [1, -2, 1]), b2) == apply(apply(doc, [1, -1, 2]), a2) == "ad"


def test_transform_index() -> None:
    assert transform_index([2, "xy", 3], 1) == 1
    assert transform_index([2, "xy", 3], 2) == 4  # an insert at the caret pushes it
    assert transform_index([1, -3, 1], 3) == 1  # inside a deleted stretch: to its start
    assert transform_index([1, -3, 1], 5) == 2


def test_parse_op_rejects_bad_input() -> None:
    assert parse_op([1, 2, "a"]) == [3, "a"]
    for bad in ("x", [0], [""], [True], [1.5], [None], [["a"]]):
        with pytest.raises(ValueError, match=r"list|component"):
            parse_op(bad)
    with pytest.raises(ValueError, match="too large"):
        parse_op(["abcdef"], max_insert=5)


def test_units_count_like_javascript() -> None:
    text = "a👍b"
    units = to_units(text)
    assert len(units) == 4  # the emoji is a surrogate pair, as in a JS string
    assert from_units(units) == text
    assert from_units(units[:2]) == "a\ufffd"  # half an emoji: a replacement character
    assert to_units("plain") == "plain"


@given(docs_and_ops(2))
def test_compose_is_sequential_application(case: tuple[str, list[Op]]) -> None:
    doc, (a, _) = case
    middle = apply(doc, a)
    rng = random.Random(len(doc))
    b = random_op(rng, middle)
    assert apply(doc, compose(a, b)) == apply(middle, b)
    assert compose(a, b) == normalize(compose(a, b))


@given(docs_and_ops(2))
def test_transform_converges(case: tuple[str, list[Op]]) -> None:
    doc, (a, b) = case
    a2, b2 = transform(a, b)
    assert apply(apply(doc, a), b2) == apply(apply(doc, b), a2)
    assert base_length(a2) == target_length(b)
    assert base_length(b2) == target_length(a)


@given(docs_and_ops(1))
def test_normalize_is_idempotent(case: tuple[str, list[Op]]) -> None:
    _, (op,) = case
    assert normalize(op) == op
    assert parse_op(json.loads(json.dumps(op))) == op


# -- many editors: a server Document and ClientStates, with arbitrary message interleavings ----


class Sim:
    """Clients and a server exchanging messages through queues the test delivers in any order.

    Each client has an outbox (its edit on the way to the server) and an inbox (edits the
    server broadcast, in order). ``reconnect`` loses a client's inbox and maybe its edit in
    flight, then catches up with ``Document.since`` and resends, as the page does.
    """

    def __init__(self, doc: str, n: int) -> None:
        self.server = Document(doc)
        self.clients = [ClientState(doc, 0) for _ in range(n)]
        self.seqs = [0] * n  # seq of each client's edit in flight
        self.outbox: list[list[tuple[int, Op, int]]] = [[] for _ in range(n)]
        self.inbox: list[list[Any]] = [[] for _ in range(n)]

    def edit(self, i: int, op: Op) -> None:
        to_send = self.clients[i].edit(op)
        if to_send is not None:
            self._send(i, to_send)

    def _send(self, i: int, op: Op) -> None:
        self.seqs[i] += 1
        self.outbox[i].append((self.clients[i].revision, op, self.seqs[i]))

    def to_server(self, i: int) -> None:
        if not self.outbox[i]:
            return
        revision, op, seq = self.outbox[i].pop(0)
        edit, new = self.server.submit(revision, op, f"c{i}", seq)
        if new:
            for inbox in self.inbox:
                inbox.append(edit)

    def to_client(self, i: int) -> None:
        if self.inbox[i]:
            self._receive(i, self.inbox[i].pop(0))

    def _receive(self, i: int, edit: Any) -> None:
        client = self.clients[i]
        if edit.revision <= client.revision:
            return  # already seen (after a catch-up)
        assert edit.revision == client.revision + 1
        if edit.author == f"c{i}" and edit.seq == self.seqs[i] and client.sent is not None:
            following = client.ack()
            if following is not None:
                self._send(i, following)
        else:
            client.receive(edit.op)

    def reconnect(self, i: int, lose_edit: bool) -> None:
        if not lose_edit:
            self.to_server(i)  # it reached the server; the answer is lost with the connection
        self.outbox[i].clear()
        self.inbox[i].clear()
        edits = self.server.since(self.clients[i].revision)
        assert edits is not None
        for edit in edits:
            self._receive(i, edit)
        if self.clients[i].sent is not None:  # not confirmed: send it again, same seq
            self.outbox[i].append((self.clients[i].revision, self.clients[i].sent, self.seqs[i]))

    def settle(self) -> None:
        while any(self.outbox) or any(self.inbox):
            for i in range(len(self.clients)):
                self.to_server(i)
                while self.inbox[i]:
                    self.to_client(i)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=texts,
    n=st.integers(2, 4),
    seed=st.integers(0, 2**32),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["edit", "edit", "server", "client", "reconnect"]), st.integers(0, 3)
        ),
        max_size=60,
    ),
)
def test_concurrent_editors_converge(start: str, n: int, seed: int, steps: list[Any]) -> None:
    rng = random.Random(seed)
    sim = Sim(start, n)
    for action, who in steps:
        i = who % n
        if action == "edit":
            sim.edit(i, random_op(rng, sim.clients[i].doc))
        elif action == "server":
            sim.to_server(i)
        elif action == "client":
            sim.to_client(i)
        else:
            sim.reconnect(i, lose_edit=rng.random() < 0.5)
    sim.settle()
    for client in sim.clients:
        assert client.doc == sim.server.text
        assert client.revision == sim.server.revision
        assert client.sent is None
        assert client.buffer is None


def test_many_random_sessions_converge() -> None:
    """Longer runs than hypothesis explores: 80 sessions of 300 random steps, 5 editors."""
    for seed in range(80):
        rng = random.Random(seed)
        sim = Sim("shared text", 5)
        for _ in range(300):
            i = rng.randrange(5)
            roll = rng.random()
            if roll < 0.45:
                sim.edit(i, random_op(rng, sim.clients[i].doc))
            elif roll < 0.7:
                sim.to_server(i)
            elif roll < 0.98:
                sim.to_client(i)
            else:
                sim.reconnect(i, lose_edit=rng.random() < 0.5)
        sim.settle()
        assert {c.doc for c in sim.clients} == {sim.server.text}, seed


# -- the JavaScript twin ----------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run ot.js")
def test_javascript_twin_agrees() -> None:
    """ot.js (run by node) computes exactly the same operations as this module."""
    rng = random.Random(1)
    cases = []
    for _ in range(400):
        doc = "".join(rng.choice("ab \n") for _ in range(rng.randint(0, 10)))
        a, b = random_op(rng, doc), random_op(rng, doc)
        c = random_op(rng, apply(doc, a))
        index = rng.randint(0, len(doc))
        cases.append({"doc": doc, "a": a, "b": b, "c": c, "index": index})
    script = f"""
    import * as ot from {json.dumps(OT_JS.as_uri())};
    const cases = JSON.parse(require_input());
    function require_input() {{ return {json.dumps(json.dumps(cases))}; }}
    const out = cases.map(({{doc, a, b, c, index}}) => ({{
      apply: ot.apply(doc, a),
      transform: ot.transform(a, b),
      compose: ot.compose(a, c),
      index: ot.transformIndex(a, index),
      diff: ot.diff(doc, ot.apply(doc, a)),
    }}));
    console.log(JSON.stringify(out));
    """
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for case, js in zip(cases, json.loads(result.stdout), strict=True):
        doc, a, b, c = case["doc"], case["a"], case["b"], case["c"]
        assert js["apply"] == apply(doc, a)
        assert js["transform"] == [list(x) for x in transform(a, b)]
        assert js["compose"] == compose(a, c)
        assert js["index"] == transform_index(a, case["index"])
        # The diff may pick another op than `a`, but it must do the same thing.
        assert apply(doc, js["diff"]) == apply(doc, a)
