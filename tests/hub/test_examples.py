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


async def test_fastapi_example_authenticates_with_its_cookie() -> None:
    import importlib.util

    import httpx

    from wsend.hub.client import HubClient

    from .asgi_apps import run_uvicorn

    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLES / "fastapi_app.py")
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    async with run_uvicorn(example.app) as (port, _):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            cookie = (await http.post("/login", params={"user": "alice"})).cookies["session"]
            headers = {"Cookie": f"session={cookie}"}
            url = f"ws://127.0.0.1:{port}/ws/"
            async with HubClient(url, ws_options={"headers": headers}) as alice:
                sub = alice.subscribe("chat:lobby")
                await sub.ready()
                body = {"channel": "chat:lobby", "data": {"text": "from the backend"}}
                reply = await http.post(
                    "/api/publish", json=body, headers={"X-API-Key": "change-me"}
                )
                assert reply.status_code == 200
                assert (await anext(sub)).data == {"text": "from the backend"}
                presence = await alice.presence("chat:lobby")
                assert [p.info for p in presence.values()] == [{"name": "alice"}]
