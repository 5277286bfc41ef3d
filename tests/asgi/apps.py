"""A FastAPI application with WebSocket endpoints, for the tests of wsend's uvicorn layer.

Importable as ``tests.asgi.apps:app``, so that the launcher tests can serve it from a real
``python -m wsend.asgi`` (or ``uvicorn``) process. Endpoints:

- ``/items/{item_id}?q=...`` (``item_id`` an int, a ``token`` query parameter or cookie
  required): sends the item, the query and the user, then echoes JSON objects with a count;
- ``/chat``: a room; every text message goes to every member, as JSON;
- ``/proto``: accepts with the ``chat.v2`` subprotocol when offered, refuses (1008) otherwise;
- ``/echo``: sends back every message, text or binary, with its type;
- ``/hello``: a plain HTTP route beside them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import (
    Cookie,
    Depends,
    FastAPI,
    Query,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
    status,
)

TOKENS = {"secret": "ann", "other": "ben"}


async def current_user(
    websocket: WebSocket,
    session: Annotated[str | None, Cookie()] = None,
    token: Annotated[str | None, Query()] = None,
) -> str:
    """The user of the token (query) or session (cookie); 1008 before accepting otherwise."""
    user = TOKENS.get(token or session or "")
    if user is None:
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="who are you?")
    return user


class Room:
    """The members of the chat room."""

    def __init__(self) -> None:
        self.members: list[WebSocket] = []

    async def join(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.members.append(websocket)

    async def say(self, message: dict[str, Any]) -> None:
        for member in list(self.members):
            await member.send_json(message)


def create_app() -> FastAPI:
    app = FastAPI()
    room = Room()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.websocket("/items/{item_id}")
    async def items(
        websocket: WebSocket,
        item_id: int,
        user: Annotated[str, Depends(current_user)],
        q: int | None = None,
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"item_id": item_id, "q": q, "user": user})
        count = 0
        try:
            while True:
                data = await websocket.receive_json()
                count += 1
                await websocket.send_json({"count": count, "data": data})
        except WebSocketDisconnect:
            pass

    @app.websocket("/chat")
    async def chat(websocket: WebSocket, name: str) -> None:
        await room.join(websocket)
        await room.say({"joined": name})
        try:
            async for text in websocket.iter_text():
                await room.say({"from": name, "text": text})
        finally:
            room.members.remove(websocket)
            await room.say({"left": name})

    @app.websocket("/proto")
    async def proto(websocket: WebSocket) -> None:
        if "chat.v2" not in websocket.scope["subprotocols"]:
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
        await websocket.accept(subprotocol="chat.v2")
        await websocket.send_text(websocket.scope["scheme"])
        await websocket.close(code=4000, reason="done")

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])

    return app


app = create_app()
