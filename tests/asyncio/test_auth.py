"""Authentication hooks: ``wsend.basic_auth`` and ``wsend.token_auth``."""

from __future__ import annotations

import asyncio

import pytest

import wsend
from wsend import InvalidStatus, RequestRejected

from .helpers import ws_uri

pytestmark = pytest.mark.timeout(20)


async def send_user(ws: wsend.ServerConnection) -> None:
    await ws.send(repr(ws.user))


async def user_of(uri: str, **kwargs: object) -> str:
    async with wsend.connect(uri, **kwargs) as ws:  # type: ignore[arg-type]
        return str(await ws.recv())


async def refusal(uri: str, **kwargs: object) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        await wsend.connect(uri, **kwargs)  # type: ignore[arg-type]
    return info.value


# -- basic -----------------------------------------------------------------------------------


@pytest.fixture
async def basic_server(start_server):
    hook = wsend.basic_auth(realm="tests", credentials={"alice": "s3cret", "bob": "pw"})
    return await start_server(send_user, process_request=hook)


def with_user(server: wsend.Server, credentials: str) -> str:
    return f"ws://{credentials}@127.0.0.1:{server.port}/"


async def test_basic_auth_ok(basic_server):
    assert await user_of(with_user(basic_server, "alice:s3cret")) == "'alice'"


async def test_basic_auth_missing(basic_server):
    error = await refusal(ws_uri(basic_server))
    assert error.status_code == 401
    assert error.headers["WWW-Authenticate"] == 'Basic realm="tests", charset="UTF-8"'
    assert error.body == b"Missing credentials\n"


@pytest.mark.parametrize("credentials", ["alice:wrong", "mallory:s3cret", "bob:s3cret"])
async def test_basic_auth_wrong(basic_server, credentials):
    error = await refusal(with_user(basic_server, credentials))
    assert error.status_code == 401
    assert error.body == b"Invalid credentials\n"
    assert "WWW-Authenticate" in error.headers


@pytest.mark.parametrize("value", ["Bearer token", "Basic !!!notbase64", "Basic"])
async def test_basic_auth_unsupported(basic_server, value):
    error = await refusal(ws_uri(basic_server), headers={"Authorization": value})
    assert error.status_code == 401


@pytest.mark.parametrize("is_async", [False, True])
async def test_basic_auth_check_credentials(start_server, is_async):
    calls = []

    def check(user: str, password: str) -> bool:
        calls.append((user, password))
        return password == user[::-1]

    async def async_check(user: str, password: str) -> bool:
        await asyncio.sleep(0)
        return check(user, password)

    hook = wsend.basic_auth(check_credentials=async_check if is_async else check)
    server = await start_server(send_user, process_request=hook)
    assert await user_of(with_user(server, "abc:cba")) == "'abc'"
    assert (await refusal(with_user(server, "abc:abc"))).status_code == 401
    assert calls == [("abc", "cba"), ("abc", "abc")]
    error = await refusal(ws_uri(server))
    assert error.headers["WWW-Authenticate"] == 'Basic realm="wsend", charset="UTF-8"'


def test_basic_auth_arguments():
    with pytest.raises(TypeError):
        wsend.basic_auth()
    with pytest.raises(TypeError):
        wsend.basic_auth(credentials={}, check_credentials=lambda u, p: True)


# -- tokens ----------------------------------------------------------------------------------

USERS = {"good-token": {"name": "alice"}}


@pytest.fixture
async def token_server(start_server):
    hook = wsend.token_auth(USERS.get, cookie="session")
    return await start_server(send_user, process_request=hook)


async def test_token_in_authorization_header(token_server):
    user = await user_of(ws_uri(token_server), headers={"Authorization": "Bearer good-token"})
    assert user == "{'name': 'alice'}"


async def test_token_in_query_param(token_server):
    assert await user_of(ws_uri(token_server, "/?token=good-token")) == "{'name': 'alice'}"


async def test_token_in_cookie(token_server):
    user = await user_of(ws_uri(token_server), headers={"Cookie": "theme=dark; session=good-token"})
    assert user == "{'name': 'alice'}"


@pytest.mark.parametrize(
    ("resource", "headers"),
    [
        ("/?token=bad", {}),
        ("/", {"Authorization": "Bearer bad"}),
        ("/", {"Cookie": "session=bad"}),
    ],
)
async def test_invalid_token(token_server, resource, headers):
    error = await refusal(ws_uri(token_server, resource), headers=headers)
    assert error.status_code == 401
    assert error.headers["WWW-Authenticate"] == 'Bearer realm="wsend", error="invalid_token"'
    assert error.body == b"Invalid token\n"


@pytest.mark.parametrize(
    ("resource", "headers"),
    [
        ("/", {}),
        ("/?token=", {}),
        ("/?other=good-token", {}),
        ("/", {"Cookie": "other=good-token"}),
        ("/", {"Authorization": "Basic Zm9vOmJhcg=="}),
    ],
)
async def test_missing_token(token_server, resource, headers):
    error = await refusal(ws_uri(token_server, resource), headers=headers)
    assert error.status_code == 401
    assert error.headers["WWW-Authenticate"] == 'Bearer realm="wsend"'
    assert error.body == b"Missing token\n"


async def test_token_sources_can_be_disabled(start_server):
    hook = wsend.token_auth(USERS.get, header=False, query_param=None, realm="r")
    server = await start_server(send_user, process_request=hook)
    error = await refusal(
        ws_uri(server, "/?token=good-token"), headers={"Authorization": "Bearer good-token"}
    )
    assert error.status_code == 401
    assert error.headers["WWW-Authenticate"] == 'Bearer realm="r"'


async def test_async_check_token_and_rejection(start_server):
    async def check(token: str) -> object:
        await asyncio.sleep(0)
        if token == "banned":
            raise RequestRejected(403, "banned")
        return False if token == "false" else token.upper()

    server = await start_server(send_user, process_request=wsend.token_auth(check))
    assert await user_of(ws_uri(server, "/?token=abc")) == "'ABC'"
    assert (await refusal(ws_uri(server, "/?token=false"))).status_code == 401
    assert (await refusal(ws_uri(server, "/?token=banned"))).status_code == 403


async def test_auth_combined_with_other_hooks(start_server):
    order = []

    def first(ws, request):
        order.append(("first", ws.user))

    def last(ws, request):
        order.append(("last", ws.user))

    hook = wsend.token_auth(USERS.get)
    server = await start_server(send_user, process_request=[first, hook, last])
    await user_of(ws_uri(server, "/?token=good-token"))
    assert order == [("first", None), ("last", {"name": "alice"})]
