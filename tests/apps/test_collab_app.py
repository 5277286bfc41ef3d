"""The collab app's server side: the welcome text of new pads."""

from __future__ import annotations

import pycrdt

from wsend.apps import collab


def test_new_pads_start_with_the_welcome_text() -> None:
    update = collab.yjs_document("yjs:collab.pad")
    assert update is not None
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.apply_update(update)
    assert str(doc.get("text", type=pycrdt.Text)) == collab.WELCOME
    # The same bytes every time, on every node: applying it twice changes nothing.
    assert collab.yjs_document("yjs:collab.other") == update
    doc.apply_update(update)
    assert str(doc.get("text", type=pycrdt.Text)) == collab.WELCOME


def test_other_rooms_start_empty() -> None:
    assert collab.yjs_document("yjs:notes") is None
    assert collab.yjs_document("team:collab.pad") is None
