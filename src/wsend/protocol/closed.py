"""How a connection ended, as both I/O layers report it to the application; no I/O.

The asyncio and the threading connections answer ``close_code``, ``close_reason`` and the
exception raised by using a closed connection from the sans-I/O connection's state, with these
functions.
"""

from __future__ import annotations

from ..exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from .connection import Connection
from .frames import OK_CLOSE_CODES, CloseCode

__all__ = ["close_code", "close_reason", "closed_exception"]


def _close_known(proto: Connection | None, lost: bool) -> bool:
    if lost:
        return True
    return proto is not None and proto.close_rcvd is not None and proto.close_sent is not None


def close_code(proto: Connection | None, lost: bool) -> int | None:
    """The close code received (1005 without code, 1006 if none); ``None`` until the closing
    handshake completed or the connection was ``lost``."""
    if not _close_known(proto, lost):
        return None
    rcvd = proto.close_rcvd if proto else None
    return CloseCode.ABNORMAL_CLOSURE if rcvd is None else rcvd.code


def close_reason(proto: Connection | None, lost: bool) -> str | None:
    """The close reason received; ``None`` until the close code is known."""
    if not _close_known(proto, lost):
        return None
    rcvd = proto.close_rcvd if proto else None
    return "" if rcvd is None else rcvd.reason


def closed_exception(proto: Connection | None) -> ConnectionClosed:
    """The exception for using the closed connection: :class:`ConnectionClosedOK` when both
    close frames carried 1000 or 1001, :class:`ConnectionClosedError` otherwise; the protocol
    error that failed the connection, if any, is its ``__cause__``."""
    rcvd = proto.close_rcvd if proto else None
    sent = proto.close_sent if proto else None
    then = proto.close_rcvd_then_sent if proto else None
    ok = (
        rcvd is not None
        and sent is not None
        and rcvd.code in OK_CLOSE_CODES
        and sent.code in OK_CLOSE_CODES
    )
    cls = ConnectionClosedOK if ok else ConnectionClosedError
    exc = cls(rcvd, sent, then)
    if proto is not None and proto.exc is not None:
        exc.__cause__ = proto.exc
    return exc
