"""Plain HTTP beside the WebSocket upgrade: health checks, static files, small JSON APIs.

A :class:`Router` maps request paths to handlers ``handler(request) -> Response`` (sync or async).
The server consults it for every request that is not a WebSocket upgrade. Without a matching
route, ``GET /healthz`` answers 200 and everything else 426 Upgrade Required.
"""

from __future__ import annotations

import inspect
import mimetypes
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from ..protocol.http import Headers, Request, Response

__all__ = ["RouteHandler", "Router"]

RouteHandler = Callable[[Request], Response | Awaitable[Response]]

# Static files larger than this are refused (413): they are read whole into memory.
MAX_STATIC_FILE = 16 << 20


class Router:
    """Routes plain HTTP requests by exact path or by path prefix."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, RouteHandler]] = {}
        self._prefixes: list[tuple[str, dict[str, RouteHandler]]] = []

    def add(
        self,
        path: str,
        handler: RouteHandler,
        methods: Iterable[str] = ("GET",),
        *,
        prefix: bool = False,
    ) -> None:
        """Route requests for ``path`` (or, with ``prefix``, every path under it) to ``handler``.

        A route for GET also answers HEAD, without body.
        """
        if prefix:
            table: dict[str, RouteHandler] = {}
            self._prefixes.append((path, table))
            self._prefixes.sort(key=lambda item: -len(item[0]))
        else:
            table = self._exact.setdefault(path, {})
        for method in methods:
            table[method.upper()] = handler

    def route(
        self, path: str, methods: Iterable[str] = ("GET",), *, prefix: bool = False
    ) -> Callable[[RouteHandler], RouteHandler]:
        """Decorator form of :meth:`add`."""

        def register(handler: RouteHandler) -> RouteHandler:
            self.add(path, handler, methods, prefix=prefix)
            return handler

        return register

    def static(
        self, prefix: str, directory: str | os.PathLike[str], index: str = "index.html"
    ) -> None:
        """Serve the files under ``directory`` at URL paths under ``prefix``.

        Paths that escape ``directory`` (``..``, symlinks pointing outside) get 404.
        """
        root = Path(directory).resolve()
        base = prefix.rstrip("/")

        def serve_file(request: Request) -> Response:
            relative = request.path[len(base) :].lstrip("/")
            target = (root / relative).resolve()
            if target.is_dir():
                target = target / index
            if not target.is_relative_to(root) or not target.is_file():
                return Response.text(404, "Not Found\n")
            if target.stat().st_size > MAX_STATIC_FILE:
                return Response.text(413, "File too large\n")
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
                ctype += "; charset=utf-8"
            headers = Headers({"Cache-Control": "no-cache"})
            return Response.bytes(200, target.read_bytes(), ctype, headers)

        self.add(base + "/", serve_file, prefix=True)
        if base:
            self.add(base, lambda request: _redirect(base + "/"))

    def match(self, path: str) -> dict[str, RouteHandler] | None:
        """The handlers by method for ``path``, or ``None``."""
        table = self._exact.get(path)
        if table is not None:
            return table
        for prefix, table in self._prefixes:
            if path.startswith(prefix):
                return table
        return None

    def select(self, request: Request) -> RouteHandler | Response | None:
        """The handler of ``request``; a 405 response (with ``Allow``) when its path matches
        but not its method; ``None`` when no route matches its path."""
        table = self.match(request.path)
        if table is None:
            return None
        method = request.method.upper()
        handler = table.get(method)
        if handler is None and method == "HEAD":
            handler = table.get("GET")
        if handler is None:
            allowed = sorted(set(table) | ({"HEAD"} if "GET" in table else set()))
            return Response.text(
                405, "Method Not Allowed\n", Headers({"Allow": ", ".join(allowed)})
            )
        return handler

    async def dispatch(self, request: Request) -> Response | None:
        """Answer ``request`` if a route matches its path, else return ``None``.

        Answers 405 (with ``Allow``) when the path matches but the method doesn't.
        """
        handler = self.select(request)
        if handler is None or isinstance(handler, Response):
            return handler
        result = handler(request)
        if inspect.isawaitable(result):
            result = await result
        return without_body(result) if request.method.upper() == "HEAD" else result


def without_body(response: Response) -> Response:
    """The answer to a HEAD request: the GET response's headers, without its body."""
    response.headers["Content-Length"] = str(len(response.body))
    return Response(response.status, response.headers, b"", response.reason)


def _redirect(location: str) -> Response:
    return Response.text(308, "", Headers({"Location": location}))


async def default_response(request: Request, router: Router | None) -> Response:
    """The answer to a plain HTTP request: a route, the health check, or 426."""
    if router is not None:
        response = await router.dispatch(request)
        if response is not None:
            return response
    return fallback_response(request)


def fallback_response(request: Request) -> Response:
    """The answer to a plain HTTP request no route takes: the health check, or 426."""
    if request.path == "/healthz" and request.method in ("GET", "HEAD"):
        response = Response.text(200, "OK\n")
    else:
        headers = Headers({"Upgrade": "websocket", "Sec-WebSocket-Version": "13"})
        response = Response.text(426, "Upgrade Required: this is a WebSocket endpoint\n", headers)
    return without_body(response) if request.method == "HEAD" else response
