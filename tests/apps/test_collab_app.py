"""The collab app's server side: documents, the RPC handlers, publications."""

from __future__ import annotations

from typing import Any

import pytest

from wsend.apps import collab
from wsend.apps.collab import Document, Documents
from wsend.hub.codes import HubError
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions


class FakeSession:
    def __init__(self, client: str = "c1", name: str = "Ada") -> None:
        self.client = client
        self.user = ""
        self.info: Any = {"name": name}


def test_submit_transforms_against_missed_edits() -> None:
    doc = Document("abc")
    first, new = doc.submit(0, ["X", 3], "alice", 1)
    assert new
    assert first.revision == 1
    # Bob's edit was based on revision 0: it is moved past Alice's insert.
    second, _ = doc.submit(0, [3, "Y"], "bob", 1)
    assert second.op == [4, "Y"]
    assert doc.text == "XabcY"
    assert doc.revision == 2


def test_resent_edit_is_not_applied_twice() -> None:
    doc = Document("")
    edit, new = doc.submit(0, ["hi"], "alice", 1)
    again, new_again = doc.submit(0, ["hi"], "alice", 1)
    assert new
    assert not new_again
    assert again == edit
    assert doc.text == "hi"
    with pytest.raises(HubError, match="stale"):
        doc.submit(1, [2, "!"], "alice", 0)


def test_bad_edits_are_refused() -> None:
    doc = Document("abc", log_size=2)
    with pytest.raises(HubError, match="fit"):
        doc.submit(0, [5], "a", 1)
    with pytest.raises(HubError, match="unknown revision"):
        doc.submit(3, [3], "a", 1)
    for seq in range(1, 4):
        doc.submit(doc.revision, [len(doc.text), "x"], "a", seq)
    with pytest.raises(HubError, match="too old"):
        doc.submit(0, [3, "y"], "b", 1)
    assert doc.since(0) is None
    assert [e.revision for e in doc.since(1) or []] == [2, 3]
    assert doc.since(3) == []


def test_documents_are_counted_in_utf16_units() -> None:
    doc = Document("👍")
    assert len(doc.text) == 2
    doc.submit(0, [2, "é"], "a", 1)
    assert doc.snapshot() == {"text": "👍é", "revision": 1, "epoch": doc.epoch}
    with pytest.raises(HubError, match="splits"):
        doc.submit(1, [1, "x", 2], "a", 2)  # between the halves of the emoji


def test_document_names_and_limit() -> None:
    docs = Documents(max_documents=2)
    assert docs.get("pad") is docs.get("pad")
    assert docs.get("pad").text.startswith("Welcome")
    for bad in ("", "a b", "x" * 33, 7, None):
        with pytest.raises(HubError):
            docs.get(bad)
    docs.get("other")
    with pytest.raises(HubError, match="too many"):
        docs.get("third")


async def test_rpc_handlers_publish_edits() -> None:
    hub = Hub(HubOptions(namespaces=collab.namespaces()))
    collab.setup(hub)
    handlers = hub.rpc_handlers
    session = FakeSession()
    opened = handlers["collab.open"](session, {"doc": "t1"})
    assert opened["revision"] == 0
    length = len(opened["text"])
    edit = {"doc": "t1", "revision": 0, "op": [length, "👋"], "author": "p1", "seq": 1}
    assert await handlers["collab.edit"](session, edit) == {"revision": 1}
    history = await hub.history("collab:t1")  # no history kept: nothing stored
    assert history.publications == []
    since = handlers["collab.since"](session, {"doc": "t1", "revision": 0})
    assert since["edits"] == [{"revision": 1, "op": [length, "👋"], "author": "p1", "seq": 1}]
    assert handlers["collab.open"](session, {"doc": "t1"})["text"].endswith("👋")
    with pytest.raises(HubError):
        await handlers["collab.edit"](session, {**edit, "op": "nope", "seq": 2})
    with pytest.raises(HubError):
        await handlers["collab.edit"](session, {**edit, "revision": "1", "seq": 2})
    await hub.close()


def test_restore_after_a_restart() -> None:
    old, new = Document("hello"), Document("welcome")
    assert old.epoch != new.epoch
    assert new.restore(new.epoch, "mine", "a", 1) is None  # same epoch: nothing to restore
    edit = new.restore(old.epoch, "hello 👋", "a", 1)
    assert edit is not None
    assert (edit.revision, edit.op) == (1, ["hello \ud83d\udc4b", -7])
    assert new.snapshot()["text"] == "hello 👋"
    # Only the first page back restores: the others reload the restored document.
    assert new.restore(old.epoch, "something else", "b", 1) is None
    assert new.snapshot()["text"] == "hello 👋"
    fresh = Document("")
    with pytest.raises(HubError, match="too long"):
        fresh.restore(old.epoch, "x" * (collab.MAX_LENGTH + 1), "a", 1)


async def test_restore_rpc_publishes_the_restored_text() -> None:
    hub = Hub(HubOptions(namespaces=collab.namespaces()))
    collab.setup(hub)
    handlers = hub.rpc_handlers
    session = FakeSession()
    opened = handlers["collab.open"](session, {"doc": "r1"})
    request = {"doc": "r1", "epoch": "old", "text": "kept", "author": "p1", "seq": 1}
    result = await handlers["collab.restore"](session, request)
    assert result == {"revision": 1, "epoch": opened["epoch"]}
    since = handlers["collab.since"](session, {"doc": "r1", "revision": 0})
    assert since["edits"][0]["op"] == ["kept", -len(opened["text"])]
    late = await handlers["collab.restore"](session, {**request, "author": "p2"})
    assert late == {"text": "kept", "revision": 1, "epoch": opened["epoch"]}
    # A page of an older epoch asking for edits gets the snapshot, never edits of another
    # document that happen to have the revision numbers it expects.
    since = handlers["collab.since"](session, {"doc": "r1", "revision": 0, "epoch": "old"})
    assert since == late
    await hub.close()
