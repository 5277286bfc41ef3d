"""The hub's runnable examples run and print what the tutorial says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples" / "hub"


def test_chat_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "chat.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert "[alice sees] bob: I'm here" in lines
    assert "[bob sees] alice: hi!" in lines
    assert lines[-1].startswith("history: ")
    history = ast.literal_eval(lines[-1].removeprefix("history: "))
    assert sorted(history) == sorted(["hi!", "anyone here?", "hello alice", "I'm here"])
