"""Automatic reconnection: the backoff schedule and the retry decisions, without I/O.

``async for ws in wsend.connect(uri)`` and ``for ws in wsend.sync.connect(uri)`` open a
connection, hand it to the loop body, and when the body moves on (usually after the connection
closed) open the next one. Between attempts they wait a delay from :class:`Backoff`; a failed
attempt is retried or raised as :func:`process_exception` (or the hook passed as
``process_exception=``) decides. :class:`Reconnector` holds that logic for both I/O layers:
they only sleep the delays it returns.

Contract:

- Attempt ``n`` of a run of failures (``n`` = 0, 1, 2...) waits a delay drawn uniformly from
  ``[d * (1 - jitter), d]`` where ``d = min(max_delay, initial_delay * factor ** n)``.
- A connection that opened counts as an attempt too: after one that lived less than
  ``reset_after`` seconds, the next attempt waits the next delay of the run (a server that
  accepts then closes at once can't make the client hammer it). After one that lived longer, the
  run starts again from ``initial_delay``.
- A refusal with ``Retry-After`` (429, 503) waits at least that long, within ``max_delay``.
- ``max_attempts`` consecutive failures raise the last error.
- Every retry is logged at INFO level on the connection's logger, with the delay and attempt
  number in the record's ``delay`` and ``attempt`` attributes.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import ssl
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .exceptions import InvalidMessage, InvalidProxyMessage, InvalidStatus, ProxyRefused
from .protocol.opening import Target

__all__ = ["Backoff", "ProcessException", "Reconnector", "display_uri", "process_exception"]

#: A hook deciding whether a failed attempt is retried (it returns ``None``) or fatal (it
#: returns the exception to raise: ``exc`` itself or another one, chained to ``exc``).
ProcessException = Callable[[Exception], Exception | None]

# HTTP statuses worth retrying: server and gateway errors that a restart or a deploy causes
# (websockets retries 500, 502, 503 and 504), and 429 Too Many Requests, which asks the client
# to come back later.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# A proxy refusing a tunnel because the server behind it can't be reached: HTTP proxies answer
# CONNECT with 502, 503 or 504 (tinyproxy: 500); SOCKS5 proxies reply 1 (general failure), 3
# (network unreachable), 4 (host unreachable), 5 (connection refused) or 6 (TTL expired),
# RFC 1928 section 6.
RETRYABLE_PROXY_STATUSES = frozenset({500, 502, 503, 504})
RETRYABLE_SOCKS_REPLIES = frozenset({1, 3, 4, 5, 6})


@dataclass(frozen=True)
class Backoff:
    """How long to wait between connection attempts: truncated exponential backoff, jittered.

    Args:
        initial_delay: the longest wait before the first retry of a run of failures, in
            seconds.
        factor: how much the longest wait grows after each failure (at least 1).
        max_delay: the cap of the longest wait.
        jitter: which fraction of each delay is random, from 0 (none: exactly the schedule) to 1
            (full jitter: uniform between 0 and the schedule's delay).
        reset_after: a connection that stayed open this many seconds ends the run of failures:
            the next attempt starts again from ``initial_delay``.
        max_attempts: raise the last error after this many consecutive failed attempts
            (``None``: retry as long as errors are retryable).

    Raises:
        ValueError: a negative delay, a factor below 1, a jitter outside [0, 1], or
            ``max_attempts`` below 1.
    """

    # 1 s before the first retry, as socket.io's reconnectionDelay and gRPC's connection
    # backoff (BASE_DELAY); websockets waits up to 5 s. Doubling (socket.io, AWS SDKs; gRPC
    # 1.6, websockets 1.618) reaches the cap after 6 failures.
    initial_delay: float = 1.0
    factor: float = 2.0
    # 60 s: gRPC caps at 120 s, websockets at 90 s, centrifuge-js at 20 s; a minute bounds how
    # long a client stays away after an outage while keeping a fleet of clients from hammering
    # a recovering server.
    max_delay: float = 60.0
    # Full jitter spreads a fleet of clients best after a server restart ("Exponential Backoff
    # And Jitter", AWS Architecture Blog, 2015); centrifuge-js uses it too.
    jitter: float = 1.0
    # A connection that lasted 10 s was a real connection, not a crash loop.
    reset_after: float = 10.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if min(self.initial_delay, self.max_delay, self.reset_after) < 0:
            raise ValueError("delays must not be negative")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (0 for the first) of a run."""
        if self.factor == 1 or self.initial_delay == 0:
            return min(self.initial_delay, self.max_delay)
        # Past the cap the exponent no longer matters (and must not overflow).
        steps = math.log(max(self.max_delay, self.initial_delay) / self.initial_delay)
        if attempt >= steps / math.log(self.factor):
            return self.max_delay
        return min(self.max_delay, self.initial_delay * self.factor**attempt)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """A delay before retry number ``attempt``: the ceiling, less a random jitter.

        Args:
            attempt: 0 for the first retry of a run of failures, then 1, 2...
            rand: a source of uniform numbers in [0, 1).
        """
        ceiling = self.ceiling(attempt)
        return ceiling * (1 - self.jitter * rand())


def process_exception(exc: Exception) -> Exception | None:
    """The default retry policy: ``None`` to retry after ``exc``, or the exception to raise.

    Retried, as errors that a server restart, a deploy or a network blip causes:

    - :class:`OSError` (refused, reset, unreachable, DNS failures) and :class:`EOFError`, except
      a failed TLS certificate verification, which retrying can't fix;
    - :class:`TimeoutError`, :class:`~wsend.exceptions.OpenTimeout` included;
    - :class:`~wsend.exceptions.InvalidStatus` with status 429, 500, 502, 503 or 504;
    - :class:`~wsend.exceptions.InvalidMessage` caused by the connection closing in the
      middle of the opening handshake (a server killed while answering), and the same from a
      proxy (:class:`~wsend.exceptions.InvalidProxyMessage`);
    - a proxy that can't reach the server: :class:`~wsend.exceptions.ProxyConnectionError`
      (an ``OSError``), :class:`~wsend.exceptions.ProxyRefused` with HTTP status 500, 502,
      503 or 504, or SOCKS5 reply 1, 3, 4, 5 or 6.

    Everything else is fatal: other HTTP statuses (401, 403, 404...), a proxy asking for
    credentials (407) or refusing by its rules, handshake and negotiation errors, invalid URIs,
    local misuse.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc
    if isinstance(exc, OSError | EOFError | TimeoutError):
        return None
    if isinstance(exc, InvalidStatus) and exc.status_code in RETRYABLE_STATUSES:
        return None
    if isinstance(exc, InvalidMessage | InvalidProxyMessage) and isinstance(
        exc.__cause__, OSError | EOFError
    ):
        return None
    if isinstance(exc, ProxyRefused) and (
        exc.status_code in RETRYABLE_PROXY_STATUSES or exc.reply in RETRYABLE_SOCKS_REPLIES
    ):
        return None
    return exc


def retry_after(exc: Exception, now: float | None = None) -> float | None:
    """The delay a refusal asks for in its ``Retry-After`` header (RFC 9110 10.2.3), if any.

    Args:
        exc: the error of a failed attempt.
        now: the current time as a POSIX timestamp (for HTTP dates); ``time.time()`` by default.
    """
    if not isinstance(exc, InvalidStatus):
        return None
    value = exc.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def display_uri(uri: Target) -> str:
    """A parsed URI as logs show it: without its credentials."""
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"{'wss' if uri.secure else 'ws'}://{host}:{uri.port}{uri.resource}"


def describe(exc: BaseException) -> str:
    """One line naming an exception and its message, for logs."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


class Reconnector:
    """The retry state of one reconnecting loop (see the module docstring for the rules).

    The I/O layer calls :meth:`failed` when an attempt raises, :meth:`opened` when a
    connection opens and :meth:`closed` when the loop body is done with it, and sleeps the
    delays they return.

    Args:
        uri: the URI, for the logs.
        backoff: the schedule.
        process_exception: the hook deciding which errors are fatal.
        logger: where retries are logged (INFO).
        clock: a monotonic clock in seconds.
        rand: a source of uniform numbers in [0, 1).
    """

    def __init__(
        self,
        uri: str,
        backoff: Backoff,
        process_exception: ProcessException,
        logger: logging.Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.uri = uri
        self.backoff = backoff
        self.process_exception = process_exception
        self.logger = logger
        self.clock = clock
        self.rand = rand
        #: Consecutive attempts of the current run (failures, and connections that closed
        #: before ``reset_after``).
        self.attempt = 0
        #: Consecutive failed attempts (reset by any connection that opens).
        self.failures = 0
        self._opened_at: float | None = None

    def failed(self, exc: Exception) -> float:
        """An attempt failed with ``exc``: return the delay before the next one.

        Raises:
            Exception: ``exc``, or what the hook returned (chained to ``exc``), when the error
                is fatal or ``max_attempts`` is reached.
        """
        try:
            fatal = self.process_exception(exc)
        except Exception as raised:
            fatal = raised
        if fatal is exc:
            raise exc
        if fatal is not None:
            raise fatal from exc
        self.failures += 1
        limit = self.backoff.max_attempts
        if limit is not None and self.failures >= limit:
            self.logger.info("connection to %s failed %d times; giving up", self.uri, limit)
            raise exc
        delay = self._next_delay()
        asked = retry_after(exc)
        if asked is not None:
            delay = max(delay, min(asked, self.backoff.max_delay))
        self.logger.info(
            "connection to %s failed (%s); retrying in %.2f s",
            self.uri,
            describe(exc),
            delay,
            extra={"delay": delay, "attempt": self.attempt},
        )
        return delay

    def opened(self) -> None:
        """A connection opened."""
        self.failures = 0
        self._opened_at = self.clock()

    def closed(self) -> float:
        """The loop body is done with the connection: return the delay before the next one."""
        opened_at = self._opened_at
        lifetime = 0.0 if opened_at is None else self.clock() - opened_at
        self._opened_at = None
        if lifetime >= self.backoff.reset_after:
            self.attempt = 0
        delay = self._next_delay()
        self.logger.info(
            "connection to %s ended after %.1f s; reconnecting in %.2f s",
            self.uri,
            lifetime,
            delay,
            extra={"delay": delay, "attempt": self.attempt},
        )
        return delay

    def _next_delay(self) -> float:
        delay = self.backoff.delay(self.attempt, self.rand)
        self.attempt += 1
        return delay
