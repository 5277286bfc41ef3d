"""The peers of test_interop.py (servers and clients on websockets, aiohttp and Node's ws),
shared with the threading implementation's interoperability tests."""

from .test_interop import compression, node, peer_client, peer_server  # noqa: F401
