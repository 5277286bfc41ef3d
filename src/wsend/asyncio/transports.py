"""Where connections get their transports: asyncio's own, or aiofastnet's.

`aiofastnet <https://github.com/aio-libs/aiofastnet>`_ reimplements asyncio's socket and TLS
transports in C for any selector event loop (asyncio's or uvloop). wsend's connections are
ordinary :class:`asyncio.BufferedProtocol` objects, so they run unchanged on either; with
aiofastnet a write is one C call and TLS skips asyncio's pure-Python ``SSLProtocol``.

``fast_transport`` (an option of :func:`wsend.serve` and :func:`wsend.connect`) chooses:

- ``None`` (default): aiofastnet when it is installed (``pip install 'wsend[fast]'``), unless
  the environment variable ``WSEND_NO_FAST_TRANSPORT`` is set to a non-empty value;
- ``True``: aiofastnet, or :class:`~wsend.exceptions.UsageError` if it is not installed;
- ``False``: asyncio's own transports.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import asyncio.sslproto
import inspect
import os
from types import ModuleType
from typing import Any

from ..exceptions import UsageError

__all__ = [
    "create_connection",
    "create_server",
    "fast_transport_available",
    "has_vectored_writes",
    "start_tls",
    "use_fast",
]

#: Set to a non-empty value to keep asyncio's transports even when aiofastnet is installed.
DISABLE_ENV = "WSEND_NO_FAST_TRANSPORT"

_module: ModuleType | None = None
_probed = False


def _aiofastnet() -> ModuleType | None:
    global _module, _probed
    if not _probed:
        _probed = True
        try:
            import aiofastnet
        except ImportError:
            _module = None
        else:
            _module = aiofastnet
    return _module


def fast_transport_available() -> bool:
    """Whether aiofastnet is installed."""
    return _aiofastnet() is not None


def use_fast(fast_transport: bool | None) -> bool:
    """Resolve the ``fast_transport`` option to a decision.

    Raises:
        UsageError: ``fast_transport=True`` but aiofastnet is not installed.
    """
    if fast_transport is False:
        return False
    available = fast_transport_available()
    if fast_transport is None:
        return available and not os.environ.get(DISABLE_ENV)
    if not available:
        raise UsageError("fast_transport=True needs aiofastnet: pip install 'wsend[fast]'")
    return True


def has_vectored_writes(transport: asyncio.BaseTransport) -> bool:
    """Whether ``transport.writelines()`` can take a frame's chunks: it writes them without
    joining them first, and pauses the protocol past the high-water mark as ``write()`` does.

    aiofastnet's, uvloop's and the TLS transports do. asyncio's plain socket transport does
    neither before Python 3.12 (the inherited ``writelines`` joins its buffers: a copy of every
    payload). From 3.12 it sends them with one ``sendmsg()``, but its first releases never call
    ``pause_writing()`` from ``writelines`` (CPython gh-127655, advisory PSF-2024-14, fixed in
    later patch releases): the buffer grows without bound and ``send()`` never waits. Whether
    the method pauses is read from its code, whatever the version. Where ``False``, chunks are
    written one ``write()`` at a time, which applies backpressure on every version.

    Returns:
        ``True`` for any transport other than asyncio's plain socket transport, and for that
        one when its ``writelines`` is its own and pauses the protocol.
    """
    # typeshed doesn't describe the private transport: go untyped.
    selector_events: Any = asyncio.selector_events
    cls: Any = type(transport)
    if not issubclass(cls, selector_events._SelectorSocketTransport):
        return True
    code = getattr(cls.writelines, "__code__", None)
    return code is not None and "_maybe_pause_protocol" in code.co_names


async def create_server(fast: bool, factory: Any, path: str | None, **kwargs: Any) -> Any:
    """``loop.create_server`` (or ``create_unix_server`` with ``path``), maybe on aiofastnet."""
    loop = asyncio.get_running_loop()
    module = _aiofastnet() if fast else None
    if path is not None:
        if module is not None:
            return await module.create_unix_server(loop, factory, path, **kwargs)
        return await loop.create_unix_server(factory, path, **kwargs)
    if module is not None:
        return await module.create_server(loop, factory, **kwargs)
    return await loop.create_server(factory, **kwargs)


async def create_connection(fast: bool, factory: Any, path: str | None, **kwargs: Any) -> Any:
    """``loop.create_connection`` (or ``create_unix_connection``), maybe on aiofastnet."""
    loop = asyncio.get_running_loop()
    module = _aiofastnet() if fast else None
    if path is not None:
        if module is not None:
            return await module.create_unix_connection(loop, factory, path, **kwargs)
        return await loop.create_unix_connection(factory, path, **kwargs)
    if module is not None:
        return await module.create_connection(loop, factory, **kwargs)
    return await loop.create_connection(factory, **kwargs)


async def start_tls(
    fast: bool, transport: asyncio.Transport, protocol: Any, context: Any, **kwargs: Any
) -> asyncio.Transport:
    """``loop.start_tls``, maybe on aiofastnet: TLS over an open transport, which may itself be
    a TLS transport (TLS inside TLS, through an ``https://`` proxy).

    As ``loop.start_tls``, this does not call ``protocol.connection_made``: the caller does,
    with the returned transport.
    """
    loop = asyncio.get_running_loop()
    module = _aiofastnet() if fast else None
    if module is not None:
        new: asyncio.Transport | None = await module.start_tls(
            loop, transport, protocol, context, **kwargs
        )
    else:
        _repair_force_close(transport)
        new = await loop.start_tls(transport, protocol, context, **kwargs)
    assert new is not None  # None only from a loop without TLS at all
    return new


def _repair_force_close(transport: asyncio.Transport) -> None:
    """Let asyncio's TLS inside TLS fail cleanly on Python 3.11.

    When the inner TLS session fails (a server certificate that doesn't verify, a fatal
    alert), it closes the outer TLS transport with ``_force_close(exc)``, which on 3.11 calls
    ``SSLProtocol._abort(exc)``, a method taking no argument there: a ``TypeError`` replaces
    the TLS error and the connection is left open. Python 3.12 passes the error along; on
    3.11 this transport gets a ``_force_close`` that does what 3.12's does.
    """
    if not isinstance(transport, asyncio.sslproto._SSLProtocolTransport):
        return
    # typeshed describes 3.12's signature whatever the version: go untyped.
    protocol: Any = transport._ssl_protocol
    fixed = protocol is None or "exc" in inspect.signature(protocol._abort).parameters
    if fixed:  # pragma: no cover - Python 3.12 and later
        return

    def force_close(exc: BaseException | None) -> None:
        transport._closed = True
        protocol._abort()

    setattr(transport, "_force_close", force_close)  # noqa: B010 - replaces a method
