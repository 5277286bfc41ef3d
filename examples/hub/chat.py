"""A chat on the wsend hub: a server with a Hub and two clients with HubClient.

Run it with ``python examples/hub/chat.py``: it starts a hub on a free port, connects Alice and
Bob, exchanges a few messages through the ``chat:lobby`` channel, prints them and exits.
"""

import asyncio

import wsend
from wsend.hub.auth import make_token
from wsend.hub.client import HubClient
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions, JwtOptions, NamespaceOptions

SECRET = "change-me-to-a-long-random-secret"
chat = NamespaceOptions(publish=True, presence=True, history_size=50, recovery=True)
options = HubOptions(namespaces={"": NamespaceOptions(), "chat": chat}, jwt=JwtOptions(SECRET))


async def person(url: str, name: str, lines: list[str], everyone_in: asyncio.Barrier) -> None:
    async with HubClient(url, token=make_token(SECRET, name)) as client:
        room = client.subscribe("chat:lobby")
        await room.ready()
        await everyone_in.wait()  # both are subscribed: nobody misses a line
        for text in lines:
            await client.publish("chat:lobby", {"from": name, "text": text})
        async for pub in room:
            print(f"[{name} sees] {pub.data['from']}: {pub.data['text']}")
            if pub.offset == 4:  # all four lines have arrived
                break


async def main() -> None:
    hub = Hub(options)
    async with wsend.serve(hub.handler, "127.0.0.1", 0, **hub.serve_kwargs()) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        everyone_in = asyncio.Barrier(2)
        await asyncio.gather(
            person(url, "alice", ["hi!", "anyone here?"], everyone_in),
            person(url, "bob", ["hello alice", "I'm here"], everyone_in),
        )
        history = await hub.history("chat:lobby")
        print("history:", [p.data["text"] for p in history.publications])
        await hub.close()


if __name__ == "__main__":
    asyncio.run(main())
