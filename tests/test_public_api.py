"""The public API is exactly what ``__all__`` lists, and the protocol core does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import wsend

EXPECTED = {
    "Backoff",
    "ClientConnection",
    "ClientDeflate",
    "ClientDisconnected",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HTTPLimits",
    "Headers",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHost",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidPayload",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "InvalidVersion",
    "NegotiationError",
    "OpenTimeout",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyAuthenticationRequired",
    "ProxyConnectionError",
    "ProxyError",
    "ProxyRefused",
    "Request",
    "RequestRejected",
    "Response",
    "Router",
    "Server",
    "ServerConnection",
    "ServerDeflate",
    "State",
    "TooManyRedirects",
    "UsageError",
    "WebSocketError",
    "__version__",
    "basic_auth",
    "broadcast",
    "connect",
    "serve",
    "tune_allocator",
    "token_auth",
}


def test_all_is_guarded() -> None:
    assert set(wsend.__all__) == EXPECTED
    for name in wsend.__all__:
        assert hasattr(wsend, name), name


#: The hub over ASGI (``wsend.hub.asgi``, docs/hub/asgi.md).
EXPECTED_HUB_ASGI = {
    "ASGIApp",
    "Authenticate",
    "HubApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "api_app",
    "asgi_app",
    "metrics_app",
    "request_from_scope",
    "route_path",
}


def test_hub_asgi_all_is_guarded() -> None:
    from wsend.hub import asgi

    assert set(asgi.__all__) == EXPECTED_HUB_ASGI
    for name in asgi.__all__:
        assert hasattr(asgi, name), name


#: wsend as uvicorn's WebSocket layer (``wsend.asgi``, docs/howto/asgi-server.md).
EXPECTED_ASGI = {"WSendProtocol"}
EXPECTED_ASGI_ADAPTER = {
    "EXTENSIONS",
    "SPEC_VERSION",
    "Denial",
    "accept_options",
    "build_scope",
    "close_options",
    "disconnect_event",
    "message_data",
}


def test_asgi_layer_all_is_guarded() -> None:
    from wsend import asgi
    from wsend.asgi import adapter, uvicorn

    assert set(asgi.__all__) == EXPECTED_ASGI
    assert set(uvicorn.__all__) == EXPECTED_ASGI
    assert set(adapter.__all__) == EXPECTED_ASGI_ADAPTER
    for module in (asgi, uvicorn, adapter):
        for name in module.__all__:
            assert hasattr(module, name), name


#: The threading client and server (``wsend.sync``, docs/howto/threads.md).
EXPECTED_SYNC = {
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "connect",
    "serve",
}

#: The reconnection policy (``wsend.reconnect``, docs/howto/reconnect.md).
EXPECTED_RECONNECT = {
    "Backoff",
    "ProcessException",
    "Reconnector",
    "display_uri",
    "process_exception",
}


def test_sync_and_reconnect_all_are_guarded() -> None:
    from wsend import reconnect, sync

    for module, expected in ((sync, EXPECTED_SYNC), (reconnect, EXPECTED_RECONNECT)):
        assert set(module.__all__) == expected
        for name in module.__all__:
            assert hasattr(module, name), name
    assert wsend.sync is sync
    assert wsend.Backoff is reconnect.Backoff


def test_every_exception_derives_from_the_base() -> None:
    for name in wsend.__all__:
        obj = getattr(wsend, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, wsend.WebSocketError), name


def test_protocol_core_imports_no_io_modules() -> None:
    """The sans-I/O core never imports asyncio, sockets or TLS (checked on its source)."""
    core = Path(wsend.__file__).parent / "protocol"
    for path in core.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"asyncio", "socket", "ssl", "selectors", "trio"}, (path, name)
