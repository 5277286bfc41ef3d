"""The reconnection policy without I/O: the backoff schedule, retry decisions, Retry-After."""

from __future__ import annotations

import email.utils
import logging
import ssl

import pytest

import wsend
from wsend.protocol.http import Headers
from wsend.reconnect import Backoff, Reconnector, display_uri, process_exception, retry_after


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(code: int, **headers: str) -> wsend.InvalidStatus:
    return wsend.InvalidStatus(code, Headers(headers))


# -- the schedule -------------------------------------------------------------------------------


def test_default_schedule_doubles_up_to_the_cap() -> None:
    backoff = Backoff()
    assert [backoff.ceiling(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.ceiling(10_000) == 60  # no overflow far past the cap


def test_jitter_bounds() -> None:
    backoff = Backoff(initial_delay=4.0, jitter=0.5)
    assert backoff.delay(0, lambda: 0.0) == 4.0
    assert backoff.delay(0, lambda: 0.999999) == pytest.approx(2.0, abs=1e-5)
    full = Backoff(initial_delay=4.0)  # full jitter by default
    assert full.delay(1, lambda: 0.5) == 4.0
    exact = Backoff(initial_delay=0.5, jitter=0)
    assert [exact.delay(n) for n in range(3)] == [0.5, 1.0, 2.0]


def test_constant_and_zero_schedules() -> None:
    assert [Backoff(initial_delay=3, factor=1).ceiling(n) for n in range(3)] == [3, 3, 3]
    assert Backoff(initial_delay=0).ceiling(5) == 0
    assert Backoff(initial_delay=10, max_delay=5).ceiling(0) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_delay": -1}, "negative"),
        ({"max_delay": -1}, "negative"),
        ({"reset_after": -1}, "negative"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 1.5}, "jitter"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_invalid_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


# -- which errors are retried -------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(),
        OSError(101, "unreachable"),
        EOFError(),
        TimeoutError(),
        wsend.OpenTimeout("slow"),
        ssl.SSLError(1, "unexpected eof"),
        status(500),
        status(502),
        status(503),
        status(504),
        status(429),
    ],
)
def test_retried(exc: Exception) -> None:
    assert process_exception(exc) is None


def test_handshake_cut_by_the_server_is_retried() -> None:
    cut = wsend.InvalidMessage("connection closed during the opening handshake")
    cut.__cause__ = EOFError()
    assert process_exception(cut) is None
    malformed = wsend.InvalidMessage("invalid HTTP message")
    assert process_exception(malformed) is malformed


@pytest.mark.parametrize(
    "exc",
    [
        status(400),
        status(401),
        status(403),
        status(404),
        status(501),
        wsend.InvalidHeader("Sec-WebSocket-Accept"),
        wsend.NegotiationError("no"),
        wsend.TooManyRedirects("loop"),
        wsend.UsageError("misuse"),
        ValueError("bad"),
        ssl.SSLCertVerificationError(1, "certificate verify failed"),
    ],
)
def test_fatal(exc: Exception) -> None:
    assert process_exception(exc) is exc


def test_proxy_errors() -> None:
    from wsend.exceptions import (
        InvalidProxyMessage,
        ProxyAuthenticationRequired,
        ProxyConnectionError,
        ProxyRefused,
    )

    retried = [
        ProxyConnectionError("proxy unreachable"),
        ProxyRefused("bad gateway", status_code=502),
        ProxyRefused("unavailable", status_code=503),
        ProxyRefused("socks: connection refused", reply=5),
        ProxyRefused("socks: host unreachable", reply=4),
    ]
    for exc in retried:
        assert process_exception(exc) is None, exc
    cut = InvalidProxyMessage("the proxy closed the connection without an answer")
    cut.__cause__ = EOFError()
    assert process_exception(cut) is None
    fatal = [
        ProxyAuthenticationRequired("credentials", status_code=407),
        ProxyRefused("forbidden", status_code=403),
        ProxyRefused("socks: not allowed by the rules", reply=2),
        InvalidProxyMessage("not HTTP"),
    ]
    for exc in fatal:
        assert process_exception(exc) is exc, exc


def test_retry_after() -> None:
    assert retry_after(status(503, **{"Retry-After": "7"})) == 7.0
    assert retry_after(status(503, **{"Retry-After": " 0 "})) == 0.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after(status(503, **{"Retry-After": date}), now=1_000_000) == 30.0
    assert retry_after(status(503, **{"Retry-After": date}), now=2_000_000) == 0.0
    assert retry_after(status(503, **{"Retry-After": "soon"})) is None
    assert retry_after(status(503, **{"Retry-After": "Sun, 06 Nov 1994 08:49:37"})) is None
    assert retry_after(status(503)) is None
    assert retry_after(OSError()) is None


def test_display_uri_hides_credentials() -> None:
    uri = wsend.asyncio.parse_uri("wss://user:secret@[::1]/path?q=1")
    assert display_uri(uri) == "wss://[::1]:443/path?q=1"


# -- the state of a loop ------------------------------------------------------------------------


def reconnector(clock: Clock, hook=process_exception, **backoff: float) -> Reconnector:  # type: ignore[no-untyped-def]
    settings = {"initial_delay": 1.0, "factor": 2.0, "max_delay": 8.0, "jitter": 0.0}
    settings.update(backoff)
    return Reconnector(
        "ws://host:80/",
        Backoff(**settings),  # type: ignore[arg-type]
        hook,
        logging.getLogger("test.reconnect"),
        clock=clock,
    )


def test_failures_grow_the_delay_and_a_long_connection_resets_it() -> None:
    clock = Clock()
    policy = reconnector(clock, reset_after=10)
    assert [policy.failed(ConnectionRefusedError()) for _ in range(5)] == [1, 2, 4, 8, 8]
    policy.opened()
    clock.now += 2  # a short-lived connection: the run goes on
    assert policy.closed() == 8
    policy.opened()
    clock.now += 10  # long enough: the run starts again
    assert policy.closed() == 1
    assert policy.failed(ConnectionRefusedError()) == 2


def test_short_connections_grow_the_delay() -> None:
    clock = Clock()
    policy = reconnector(clock, reset_after=10)
    delays = []
    for _ in range(4):
        policy.opened()
        clock.now += 1
        delays.append(policy.closed())
    assert delays == [1, 2, 4, 8]


def test_closed_without_opened() -> None:
    policy = reconnector(Clock())
    assert policy.closed() == 1


def test_fatal_error_is_raised() -> None:
    policy = reconnector(Clock())
    refused = status(403)
    with pytest.raises(wsend.InvalidStatus) as caught:
        policy.failed(refused)
    assert caught.value is refused


def test_hook_may_return_or_raise_another_exception() -> None:
    class GiveUp(Exception):
        pass

    def returning(exc: Exception) -> Exception | None:
        return GiveUp("returned")

    def raising(exc: Exception) -> Exception | None:
        raise GiveUp("raised")

    for hook in (returning, raising):
        policy = reconnector(Clock(), hook)
        with pytest.raises(GiveUp) as caught:
            policy.failed(ConnectionRefusedError())
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_max_attempts() -> None:
    policy = reconnector(Clock(), max_attempts=3)
    policy.failed(ConnectionRefusedError())
    policy.failed(ConnectionRefusedError())
    with pytest.raises(ConnectionRefusedError):
        policy.failed(ConnectionRefusedError())
    # A connection that opens starts the count again.
    policy = reconnector(Clock(), max_attempts=2)
    policy.failed(ConnectionRefusedError())
    policy.opened()
    policy.closed()
    policy.failed(ConnectionRefusedError())
    with pytest.raises(ConnectionRefusedError):
        policy.failed(ConnectionRefusedError())


def test_retry_after_raises_the_delay_within_the_cap() -> None:
    policy = reconnector(Clock())
    assert policy.failed(status(503, **{"Retry-After": "5"})) == 5
    assert policy.failed(status(503, **{"Retry-After": "3600"})) == 8  # max_delay
    assert policy.failed(status(503, **{"Retry-After": "0"})) == 4  # the schedule's


def test_each_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    policy = reconnector(clock)
    with caplog.at_level(logging.INFO, "test.reconnect"):
        policy.failed(ConnectionRefusedError(111, "Connection refused"))
        policy.opened()
        clock.now += 3
        policy.closed()
    first, second = caplog.records
    assert first.getMessage() == (
        "connection to ws://host:80/ failed (ConnectionRefusedError: [Errno 111] Connection "
        "refused); retrying in 1.00 s"
    )
    assert (first.delay, first.attempt) == (1.0, 1)  # type: ignore[attr-defined]
    assert second.getMessage() == (
        "connection to ws://host:80/ ended after 3.0 s; reconnecting in 2.00 s"
    )
    assert (second.delay, second.attempt) == (2.0, 2)  # type: ignore[attr-defined]
