"""Plain HTTP beside the upgrade: routes, HEAD, 405, static files."""

from __future__ import annotations

import json
import os

import pytest

import wsend
from wsend import Headers, Response, Router
from wsend.asyncio import routes

from .helpers import http_request, ws_uri

pytestmark = pytest.mark.timeout(20)


def get(path: str, method: str = "GET", body: bytes = b"", headers: str = "") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}{length}\r\n".encode() + body


@pytest.fixture
async def api_server(start_server):
    router = Router()
    items: list[object] = []

    @router.route("/api/items", methods=["GET", "POST"])
    async def items_view(request: wsend.Request) -> Response:
        if request.method == "POST":
            items.append(json.loads(request.body))
            return Response.json(201, {"count": len(items)})
        return Response.json(200, items)

    @router.route("/api/version")
    def version(request: wsend.Request) -> Response:
        return Response.text(200, "1.0", Headers({"X-Version": "1"}))

    router.add("/files/", lambda request: Response.text(200, request.path), prefix=True)
    router.add("/files/deep/", lambda request: Response.text(200, "deep"), prefix=True)
    router.add("/delete-only", lambda request: Response.text(204, ""), methods=["DELETE"])
    server = await start_server(router=router)
    server.items = items  # type: ignore[attr-defined]
    return server


async def test_json_api_get_and_post(api_server):
    first, headers, body = await http_request(api_server.port, get("/api/items"))
    assert first.startswith("HTTP/1.1 200")
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == []
    first, _, body = await http_request(
        api_server.port, get("/api/items", "POST", b'{"name": "x"}')
    )
    assert first.startswith("HTTP/1.1 201")
    assert json.loads(body) == {"count": 1}
    _, _, body = await http_request(api_server.port, get("/api/items"))
    assert json.loads(body) == [{"name": "x"}]


async def test_sync_route_and_headers(api_server):
    first, headers, body = await http_request(api_server.port, get("/api/version"))
    assert first.startswith("HTTP/1.1 200")
    assert headers["x-version"] == "1"
    assert body == b"1.0"


async def test_head_answers_without_body(api_server):
    first, headers, body = await http_request(api_server.port, get("/api/version", "HEAD"))
    assert first.startswith("HTTP/1.1 200")
    assert headers["content-length"] == "3"
    assert body == b""
    first, headers, _ = await http_request(api_server.port, get("/healthz", "HEAD"))
    assert first.startswith("HTTP/1.1 200")


async def test_method_not_allowed(api_server):
    first, headers, _ = await http_request(api_server.port, get("/api/items", "PUT", b"x"))
    assert first.startswith("HTTP/1.1 405")
    assert headers["allow"] == "GET, HEAD, POST"
    first, headers, _ = await http_request(api_server.port, get("/delete-only"))
    assert first.startswith("HTTP/1.1 405")
    assert headers["allow"] == "DELETE"


async def test_prefix_routes_longest_first(api_server):
    _, _, body = await http_request(api_server.port, get("/files/a/b?q=1"))
    assert body == b"/files/a/b"
    _, _, body = await http_request(api_server.port, get("/files/deep/x"))
    assert body == b"deep"


async def test_unrouted_paths(api_server):
    first, _, _ = await http_request(api_server.port, get("/nowhere"))
    assert first.startswith("HTTP/1.1 426")
    first, _, _ = await http_request(api_server.port, get("/healthz", "POST", b"x"))
    assert first.startswith("HTTP/1.1 426")


async def test_websocket_beside_routes(api_server):
    async with wsend.connect(ws_uri(api_server, "/api/items")) as ws:
        await ws.send("still a websocket")
        assert await ws.recv() == "still a websocket"


async def test_server_route_decorator(start_server):
    server = await start_server()

    @server.route("/decorated", methods=["GET"])
    def decorated(request):
        return Response.html(200, "<p>hi</p>")

    first, headers, body = await http_request(server.port, get("/decorated"))
    assert first.startswith("HTTP/1.1 200")
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == b"<p>hi</p>"


# -- static files ----------------------------------------------------------------------------


@pytest.fixture
async def static_server(start_server, tmp_path):
    root = tmp_path / "public"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "app.js").write_text("console.log(1)")
    (root / "data.bin").write_bytes(b"\x00\x01")
    (root / "sub" / "index.html").write_text("sub index")
    (root / "sub" / "noindex").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    router = Router()
    router.static("/static", root)
    return await start_server(router=router)


@pytest.mark.parametrize(
    ("path", "status", "ctype", "body"),
    [
        ("/static/index.html", 200, "text/html; charset=utf-8", b"<h1>home</h1>"),
        ("/static/", 200, "text/html; charset=utf-8", b"<h1>home</h1>"),
        ("/static/app.js", 200, None, b"console.log(1)"),
        ("/static/data.bin", 200, "application/octet-stream", b"\x00\x01"),
        ("/static/sub/", 200, None, b"sub index"),
        ("/static/sub", 200, None, b"sub index"),
        ("/static/sub/noindex", 404, None, None),
        ("/static/missing.txt", 404, None, None),
    ],
)
async def test_static_files(static_server, path, status, ctype, body):
    first, headers, data = await http_request(static_server.port, get(path))
    assert first.startswith(f"HTTP/1.1 {status}"), first
    if ctype is not None:
        assert headers["content-type"] == ctype
    if body is not None:
        assert data == body
        assert headers["cache-control"] == "no-cache"


async def test_static_prefix_redirects(static_server):
    first, headers, _ = await http_request(static_server.port, get("/static"))
    assert first.startswith("HTTP/1.1 308")
    assert headers["location"] == "/static/"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/sub/../../secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e/secret.txt",
        "/static//etc/passwd",
        "/static/link.txt",
    ],
)
async def test_static_path_traversal(static_server, path):
    first, _, body = await http_request(static_server.port, get(path))
    assert first.startswith("HTTP/1.1 404"), first
    assert b"secret" not in body


async def test_static_file_too_large(static_server, monkeypatch):
    monkeypatch.setattr(routes, "MAX_STATIC_FILE", 5)
    first, _, _ = await http_request(static_server.port, get("/static/index.html"))
    assert first.startswith("HTTP/1.1 413")


async def test_static_at_root(start_server, tmp_path):
    (tmp_path / "index.html").write_text("root")
    router = Router()
    router.static("/", tmp_path)
    server = await start_server(router=router)
    _, _, body = await http_request(server.port, get("/"))
    assert body == b"root"
