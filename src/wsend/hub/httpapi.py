"""The hub's HTTP API, for backends in any language: ``POST /api/<method>`` with a JSON body.

Requests carry the node's API key in ``X-API-Key: KEY`` or ``Authorization: apikey KEY``.
Replies are JSON: ``{"result": ...}`` with status 200, or ``{"error": {"code", "message"}}``
with 400 (bad request), 401 (no or wrong key), 403 (API disabled: no key configured), 404
(unknown method), 500 or 503 (a temporary error: the engine is unavailable, retry). Error
codes are those of the client protocol (``docs/protocol.md``).

Methods and bodies:

- ``publish``: ``{"channel": str, "data": any, "key": str?}`` → ``{"offset", "epoch"}``
- ``broadcast``: ``{"channels": [str], "data": any}`` → ``{"positions": [{"offset", "epoch"}]}``
- ``presence``: ``{"channel": str}`` → ``{"clients": {id: {"user", "info"}}}``
- ``presence_stats``: ``{"channel": str}`` → ``{"num_clients", "num_users"}``
- ``history``: ``{"channel": str, "limit": int?, "since": {"offset", "epoch"}?,
  "reverse": bool?}`` → ``{"publications": [...], "offset", "epoch"}``
- ``disconnect``: ``{"user": str, "client": str?, "code": int?, "reason": str?}`` →
  ``{"disconnected": n}`` (with ``client``, only that connection; ``user`` may then be ``""``)
- ``send``: ``{"user": str, "data": any}`` → ``{"delivered": n}`` (a ``message`` push)
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..asyncio.routes import Router
from ..protocol.http import Request, Response
from .broker import Publication, StreamPosition
from .codes import DisconnectCode, ErrorCode, HubError

if TYPE_CHECKING:
    from .node import Hub

__all__ = ["add_api_routes"]

Method = Callable[["Hub", dict[str, Any]], Awaitable[Any]]

_MAX_HISTORY = 1000


class _BadRequest(Exception):
    pass


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _BadRequest(f"{name!r} must be a non-empty string")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _position(pos: StreamPosition) -> dict[str, Any]:
    return {"offset": pos.offset, "epoch": pos.epoch}


def _publication(pub: Publication) -> dict[str, Any]:
    out: dict[str, Any] = {"data": pub.data}
    if pub.offset:
        out["offset"] = pub.offset
    if pub.key is not None:
        out["key"] = pub.key
    if pub.info is not None:
        out["info"] = {"client": pub.info.client, "user": pub.info.user}
    return out


async def _publish(hub: Hub, body: dict[str, Any]) -> Any:
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise _BadRequest("'key' must be a string")
    if "data" not in body:
        raise _BadRequest("'data' is required")
    return _position(await hub.publish(_str(body, "channel"), body["data"], key=key))


async def _broadcast(hub: Hub, body: dict[str, Any]) -> Any:
    channels = body.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise _BadRequest("'channels' must be a list of strings")
    if "data" not in body:
        raise _BadRequest("'data' is required")
    positions = await hub.broadcast(channels, body["data"])
    return {"positions": [_position(p) for p in positions]}


async def _presence(hub: Hub, body: dict[str, Any]) -> Any:
    clients = await hub.presence_of(_str(body, "channel"))
    return {"clients": {k: {"user": v.user, "info": v.info} for k, v in clients.items()}}


async def _presence_stats(hub: Hub, body: dict[str, Any]) -> Any:
    stats = await hub.presence_stats(_str(body, "channel"))
    return {"num_clients": stats.num_clients, "num_users": stats.num_users}


async def _history(hub: Hub, body: dict[str, Any]) -> Any:
    limit = body.get("limit", 100)
    if not _is_int(limit) or not 0 <= limit <= _MAX_HISTORY:
        raise _BadRequest(f"'limit' must be an integer from 0 to {_MAX_HISTORY}")
    since = None
    raw = body.get("since")
    if raw is not None:
        offset: Any = raw.get("offset") if isinstance(raw, dict) else None
        epoch: Any = raw.get("epoch") if isinstance(raw, dict) else None
        if not _is_int(offset) or offset < 0 or not isinstance(epoch, str):
            raise _BadRequest('\'since\' must be {"offset": int >= 0, "epoch": str}')
        since = StreamPosition(offset, epoch)
    reverse = bool(body.get("reverse", False))
    result = await hub.history(_str(body, "channel"), limit=limit, since=since, reverse=reverse)
    if since is not None and since.epoch != result.position.epoch:
        raise HubError(ErrorCode.UNRECOVERABLE_POSITION)
    return {
        "publications": [_publication(p) for p in result.publications],
        **_position(result.position),
    }


async def _disconnect(hub: Hub, body: dict[str, Any]) -> Any:
    code = body.get("code", DisconnectCode.FORBIDDEN)
    if not _is_int(code) or not 4000 <= code <= 4999:
        raise _BadRequest("'code' must be an integer from 4000 to 4999")
    reason = body.get("reason", "disconnected")
    if not isinstance(reason, str) or len(reason.encode()) > 123:
        raise _BadRequest("'reason' must be a string of at most 123 bytes")
    client = body.get("client")
    if client is None:
        user = _str(body, "user")
    else:
        # One connection, by the id presence gives it; anonymous ones have user "".
        client = _str(body, "client")
        user = body.get("user", "")
        if not isinstance(user, str):
            raise _BadRequest("'user' must be a string")
    return {"disconnected": hub.disconnect(user, code, reason, client=client)}


async def _send(hub: Hub, body: dict[str, Any]) -> Any:
    if "data" not in body:
        raise _BadRequest("'data' is required")
    return {"delivered": hub.send_message(_str(body, "user"), body["data"])}


METHODS: dict[str, Method] = {
    "publish": _publish,
    "broadcast": _broadcast,
    "presence": _presence,
    "presence_stats": _presence_stats,
    "history": _history,
    "disconnect": _disconnect,
    "send": _send,
}


def _error(status: int, code: int, message: str) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}})


def _authorized(hub: Hub, request: Request) -> bool:
    assert hub.api_key is not None
    key = request.headers.get("X-API-Key")
    if key is None:
        auth = request.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        key = value.strip() if scheme.lower() == "apikey" else None
    return key is not None and hmac.compare_digest(key.encode(), hub.api_key.encode())


def add_api_routes(hub: Hub, router: Router) -> None:
    """Route ``POST /api/<method>`` on ``router`` to ``hub``."""

    async def api(request: Request) -> Response:
        name = request.path[len("/api/") :]
        response = await _call(hub, name, request)
        hub.metrics.api_requests.labels(
            name if name in METHODS else "unknown", str(response.status)
        ).inc()
        return response

    router.add("/api/", api, methods=("POST",), prefix=True)


async def _call(hub: Hub, name: str, request: Request) -> Response:
    if hub.api_key is None:
        return _error(403, ErrorCode.PERMISSION_DENIED, "the HTTP API is disabled (no API key)")
    if not _authorized(hub, request):
        return _error(401, ErrorCode.UNAUTHORIZED, "missing or invalid API key")
    method = METHODS.get(name)
    if method is None:
        return _error(404, ErrorCode.METHOD_NOT_FOUND, f"no API method {name!r}")
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return _error(400, ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    try:
        result = await method(hub, body)
    except _BadRequest as exc:
        return _error(400, ErrorCode.BAD_REQUEST, str(exc))
    except HubError as exc:
        # A temporary error (the engine is unavailable): retrying may work.
        return _error(503 if exc.temporary else 400, exc.code, exc.message)
    except Exception:
        import logging

        logging.getLogger("wsend.hub").exception("HTTP API method %s failed", name)
        return _error(500, ErrorCode.INTERNAL, "internal error")
    return Response.json(200, {"result": result})
