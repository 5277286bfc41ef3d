"""Error codes and close codes of the hub protocol (``docs/protocol.md`` sections 7 and 8).

Close codes 4000-4499 tell the client to reconnect; 4500-4999 tell it not to. Error codes carry a
``temporary`` flag saying whether retrying the same command may succeed. This module is the one
place where both tables live.
"""

from __future__ import annotations

import enum

__all__ = ["DisconnectCode", "ErrorCode", "HubError", "should_reconnect"]


class ErrorCode(enum.IntEnum):
    """Error codes in replies."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    NOT_SUBSCRIBED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112

    @property
    def temporary(self) -> bool:
        return self in _TEMPORARY


# 110 answers a subscribe the hub interrupted (it unsubscribed the channel meanwhile):
# subscribing again works.
_TEMPORARY = frozenset({ErrorCode.INTERNAL, ErrorCode.NOT_SUBSCRIBED, ErrorCode.TOO_MANY_REQUESTS})

_MESSAGES = {
    ErrorCode.INTERNAL: "internal error",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.UNKNOWN_CHANNEL: "unknown channel",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.METHOD_NOT_FOUND: "method not found",
    ErrorCode.ALREADY_SUBSCRIBED: "already subscribed",
    ErrorCode.LIMIT_EXCEEDED: "limit exceeded",
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.NOT_AVAILABLE: "not available",
    ErrorCode.TOKEN_EXPIRED: "token expired",
    ErrorCode.NOT_SUBSCRIBED: "not subscribed",
    ErrorCode.TOO_MANY_REQUESTS: "too many requests",
    ErrorCode.UNRECOVERABLE_POSITION: "unrecoverable position",
}


class DisconnectCode(enum.IntEnum):
    """WebSocket close codes the hub uses to end a connection."""

    RECONNECT = 4000
    SHUTDOWN = 4001
    SLOW_CONSUMER = 4002
    SERVER_ERROR = 4003
    TOKEN_EXPIRED = 4004
    INSUFFICIENT_STATE = 4005
    NO_PONG = 4006
    TOO_MANY_REQUESTS = 4007
    BAD_REQUEST = 4500
    UNAUTHORIZED = 4501
    FORBIDDEN = 4502
    CONNECTION_LIMIT = 4503

    @property
    def reconnect(self) -> bool:
        return should_reconnect(self)


def should_reconnect(code: int) -> bool:
    """Whether a client should reconnect after the hub closed with ``code``."""
    if 4000 <= code < 4500:
        return True
    if 4500 <= code < 5000:
        return False
    return code in (1001, 1006, 1011, 1012, 1013, 1014)


class HubError(Exception):
    """An error answered to a command; application handlers (RPC) may raise it too.

    Args:
        code: an :class:`ErrorCode` or an application code (1000 and above).
        message: shown to the client; must not reveal internals.
        temporary: whether retrying may succeed (defaults from the code).
    """

    def __init__(
        self, code: int, message: str | None = None, temporary: bool | None = None
    ) -> None:
        self.code = int(code)
        known = ErrorCode(code) if code in ErrorCode._value2member_map_ else None
        self.message = message or (_MESSAGES[known] if known is not None else "error")
        self.temporary = (
            (known.temporary if known is not None else False) if temporary is None else temporary
        )
        super().__init__(f"{self.code}: {self.message}")
