"""End to end: ``/metrics`` serves Prometheus text whose numbers follow the traffic."""

from __future__ import annotations

import re

from wsend.hub.client import HubClient

from .e2e import API_KEY, Running, http, raw, run_hub, token

NAMES = [
    "wsend_hub_connections",
    "wsend_hub_subscriptions",
    "wsend_hub_channels",
    "wsend_hub_messages_received_total",
    "wsend_hub_messages_sent_total",
    "wsend_hub_bytes_received_total",
    "wsend_hub_bytes_sent_total",
    "wsend_hub_publications_total",
]


async def scrape(running: Running) -> dict[str, float]:
    status, text = await http(f"{running.base}/metrics", method="GET", key=None)
    assert status == 200
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)", line)
        if match:
            values[match[1]] = float(match[2])
    return values


async def test_metrics_follow_traffic() -> None:
    async with run_hub(api_key=API_KEY) as running:
        before = await scrape(running)
        assert before["wsend_hub_connections"] == 0
        async with HubClient(running.url, token=token("ann")) as client:
            sub = client.subscribe("chat:room")
            await sub.ready()
            await client.publish("chat:room", "hi")
            assert (await anext(sub)).data == "hi"
            await client.ping()
            during = await scrape(running)
            assert during["wsend_hub_connections"] == 1
            assert during["wsend_hub_subscriptions"] == 1
            assert during["wsend_hub_channels"] == 1
            for name in NAMES[3:]:
                assert during[name] > before.get(name, 0), name
            for method in ("connect", "subscribe", "publish", "ping"):
                key = f'wsend_hub_command_seconds_count{{method="{method}"}}'
                assert during[key] == 1, method
        async with raw(running.url, token("ben")) as client:
            await client.call("nope")  # a bad frame counts nowhere but doesn't break anything
            await client.close()
        await http(f"{running.base}/api/publish", {"channel": "chat:room", "data": 1})
        after = await scrape(running)
        assert after["wsend_hub_connections"] == 0
        assert after["wsend_hub_subscriptions"] == 0
        assert after['wsend_hub_disconnects_total{code="1000"}'] == 2
        assert after['wsend_hub_api_requests_total{method="publish",status="200"}'] == 1
