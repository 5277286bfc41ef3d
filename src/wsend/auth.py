"""Authentication hooks for :func:`wsend.serve` (``process_request=``).

Each helper returns a hook ``hook(ws, request)`` that refuses the opening handshake with 401
when the credentials are missing or wrong, and otherwise stores who the peer is in ``ws.user``.
Browsers can't set headers on a WebSocket, so :func:`token_auth` also reads a query parameter
or a cookie; a cookie also needs an Origin check (``origins=``) against cross-site hijacking.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import InvalidHeader
from .protocol.handshake import parse_basic_auth, parse_bearer
from .protocol.http import Headers, Request, Response

if TYPE_CHECKING:
    from .asyncio.server import ServerConnection

__all__ = ["basic_auth", "token_auth"]

Hook = Callable[["ServerConnection", Request], Awaitable[Response | None]]


def _unauthorized(challenge: str, message: str) -> Response:
    return Response.text(401, message + "\n", Headers({"WWW-Authenticate": challenge}))


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    result = func(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def basic_auth(
    realm: str = "wsend",
    *,
    credentials: Mapping[str, str] | None = None,
    check_credentials: Callable[[str, str], bool | Awaitable[bool]] | None = None,
) -> Hook:
    """HTTP Basic authentication (RFC 7617); ``ws.user`` becomes the username.

    Args:
        realm: the protection space named in the ``WWW-Authenticate`` challenge.
        credentials: a mapping of usernames to passwords (compared in constant time).
        check_credentials: ``f(username, password) -> bool``, sync or async, instead.
    """
    if (credentials is None) == (check_credentials is None):
        raise TypeError("pass exactly one of credentials or check_credentials")
    challenge = f'Basic realm="{realm}", charset="UTF-8"'

    async def check(user: str, password: str) -> bool:
        if check_credentials is not None:
            return bool(await _call(check_credentials, user, password))
        assert credentials is not None
        expected = credentials.get(user)
        # Compare against something even for unknown users so timing tells nothing.
        ok = hmac.compare_digest(password.encode(), (expected or "\0" * 16).encode())
        return ok and expected is not None

    async def hook(ws: ServerConnection, request: Request) -> Response | None:
        value = request.headers.get("Authorization")
        if value is None:
            return _unauthorized(challenge, "Missing credentials")
        try:
            user, password = parse_basic_auth(value)
        except InvalidHeader:
            return _unauthorized(challenge, "Unsupported credentials")
        if not await check(user, password):
            return _unauthorized(challenge, "Invalid credentials")
        ws.user = user
        return None

    return hook


def token_auth(
    check_token: Callable[[str], Any | Awaitable[Any]],
    *,
    header: bool = True,
    query_param: str | None = "token",
    cookie: str | None = None,
    realm: str = "wsend",
) -> Hook:
    """Bearer-token authentication from a header, a query parameter or a cookie.

    The token is looked for, in order, in ``Authorization: Bearer <token>`` (if ``header``),
    the query parameter ``query_param`` and the cookie ``cookie``.

    Args:
        check_token: ``f(token) -> user``, sync or async; ``None`` or ``False`` refuses the
            token (401), any other value is stored in ``ws.user``. To refuse with another
            status, raise :class:`wsend.RequestRejected`.
    """
    challenge = f'Bearer realm="{realm}"'

    def find(request: Request) -> str | None:
        if header and "Authorization" in request.headers:
            try:
                return parse_bearer(request.headers["Authorization"])
            except InvalidHeader:
                pass  # another scheme (Basic from a proxy...): look further
        if query_param is not None:
            values = request.query.get(query_param)
            if values:
                return values[0]
        if cookie is not None:
            return request.cookies.get(cookie)
        return None

    async def hook(ws: ServerConnection, request: Request) -> Response | None:
        token = find(request)
        if not token:
            return _unauthorized(challenge, "Missing token")
        user = await _call(check_token, token)
        if user is None or user is False:
            return _unauthorized(challenge + ', error="invalid_token"', "Invalid token")
        ws.user = user
        return None

    return hook
