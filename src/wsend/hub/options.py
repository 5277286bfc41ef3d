"""The hub's configuration: namespaces, limits, authentication; and channel names.

Channel names (``docs/protocol.md`` sections 4 and 6)::

    [namespace:]name[#user1,user2,...]

- At most 255 characters (:data:`MAX_CHANNEL_LENGTH`), ASCII only.
- ``namespace``: 1-64 of ``A-Z a-z 0-9 _ -``, before the first ``:``; a channel without ``:``
  belongs to the default namespace ``""``.
- ``name``: ``A-Z a-z 0-9`` and ``_ - . : @ / = + ~ !`` (no spaces, quotes, backslashes, ``%``,
  ``*``, ``?``, ``,`` or ``#``: they are wildcards, separators or escapes in other systems),
  not starting with ``:``; it may be empty only before a ``#`` suffix (``notes:#alice``).
- ``#user1,user2``: a user-private channel; user ids are 1 or more of ``A-Z a-z 0-9`` and
  ``_ - . @ = + |``, separated by commas. Only the users listed may subscribe to it.

:meth:`HubOptions.from_dict` loads the configuration from a mapping (parsed TOML or JSON),
raising :class:`ConfigError` that names the offending key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .broker import HistoryOptions
from .codes import ErrorCode, HubError

__all__ = [
    "MAX_CHANNEL_LENGTH",
    "Channel",
    "ConfigError",
    "HubOptions",
    "JwtOptions",
    "NamespaceOptions",
    "RateLimit",
    "parse_channel",
    "static_access",
]

MAX_CHANNEL_LENGTH: Final = 255

SubscribePolicy = Literal["anyone", "authenticated", "token", "callback"]
SlowConsumerPolicy = Literal["disconnect", "conflate"]

_SUBSCRIBE_POLICIES: Final = ("anyone", "authenticated", "token", "callback")
_SLOW_CONSUMER_POLICIES: Final = ("disconnect", "conflate")
_CHANNEL_RE: Final = re.compile(
    r"(?:(?P<ns>[A-Za-z0-9_-]{1,64}):)?"
    r"(?P<name>(?:[A-Za-z0-9_.@/=+~!-][A-Za-z0-9_.:@/=+~!-]*)?)"
    r"(?:#(?P<users>[A-Za-z0-9_.@=+|-]+(?:,[A-Za-z0-9_.@=+|-]+)*))?"
)


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` is its dotted path, e.g. ``namespaces.chat.x``."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed channel name.

    Attributes:
        full: the channel as given.
        namespace: the namespace (``""``: the default one).
        users: the users of a user-private channel (``#a,b``), else ``None``.
    """

    full: str
    namespace: str
    users: tuple[str, ...] | None = None


def parse_channel(channel: str) -> Channel:
    """Parse and validate a channel name (see the module docstring for the grammar).

    Raises:
        HubError: ``UNKNOWN_CHANNEL`` (102) when the name is invalid.
    """
    match = None
    if 0 < len(channel) <= MAX_CHANNEL_LENGTH and channel.isascii():
        match = _CHANNEL_RE.fullmatch(channel)
    if match is None or not (match["name"] or match["users"]):
        raise HubError(ErrorCode.UNKNOWN_CHANNEL, "invalid channel name")
    users = tuple(match["users"].split(",")) if match["users"] else None
    return Channel(channel, match["ns"] or "", users)


def static_access(
    channel: Channel, ns: NamespaceOptions, user: str, granted: frozenset[str]
) -> bool:
    """Whether ``user`` may read ``channel`` without a channel token or the app's callback.

    The first rule that applies (``docs/protocol.md`` section 6): a user-private channel admits
    only its users (never anonymous); a channel in ``granted`` (the token's ``channels``
    claim) is open; otherwise the namespace's policy, ``anyone`` or ``authenticated``.
    """
    if channel.users is not None:
        return bool(user) and user in channel.users
    if channel.full in granted:
        return True
    return ns.subscribe == "anyone" or (ns.subscribe == "authenticated" and user != "")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``rate`` per second on average, up to ``burst`` at once."""

    rate: float
    burst: float


@dataclass(frozen=True, slots=True)
class NamespaceOptions:
    """What a namespace allows (``docs/protocol.md`` section 6).

    Attributes:
        subscribe: who may subscribe: ``"anyone"`` (anonymous connections too),
            ``"authenticated"`` (a non-empty user), ``"token"`` (a channel token) or
            ``"callback"`` (the application's ``can_subscribe``). Independently of the policy,
            a connection token's ``channels`` claim and user-private ``#`` suffixes grant access.
        publish: whether clients may publish (they also need read access to the channel).
        presence: whether presence is kept (commands ``presence`` and ``presence_stats``).
        join_leave: whether subscribers get ``join``/``leave`` pushes.
        history_size: publications kept per channel (0: none; no offsets, no recovery).
        history_ttl: how long they are kept, in seconds.
        recovery: whether clients may recover missed publications (needs history).
        slow_consumer: on queue overflow, ``"disconnect"`` (4002) or ``"conflate"``.
        queue_max_bytes: the connection's outgoing queue bound while subscribed here.
        delta: whether subscribers may ask for delta compression (``subscribe`` with
            ``delta: "fossil"``): each publication then reaches them as a Fossil delta against
            the previous one when that is smaller (``docs/protocol.md`` section 5).
    """

    subscribe: SubscribePolicy = "anyone"
    publish: bool = False
    presence: bool = False
    join_leave: bool = False
    history_size: int = 0
    # Centrifugo's and ours: history off unless asked for; a TTL of 5 minutes when it is on.
    history_ttl: float = 300.0
    recovery: bool = False
    slow_consumer: SlowConsumerPolicy = "disconnect"
    # 1 MiB, as Centrifugo's client.queue_max_size.
    queue_max_bytes: int = 1 << 20
    # Off, as Centrifugo's allowed_delta_types: deltas cost the hub CPU (one delta per
    # publication and encoding) and only pay where publications resemble each other.
    delta: bool = False

    def __post_init__(self) -> None:
        _check_choice("subscribe", self.subscribe, _SUBSCRIBE_POLICIES)
        _check_choice("slow_consumer", self.slow_consumer, _SLOW_CONSUMER_POLICIES)
        _check_positive("history_size", self.history_size, zero=True)
        _check_positive("history_ttl", self.history_ttl, zero=True)
        _check_positive("queue_max_bytes", self.queue_max_bytes)
        if self.recovery and self.history_size == 0:
            raise ConfigError("recovery", "needs history_size > 0")
        if self.history_size and not self.history_ttl:
            raise ConfigError("history_ttl", "must be > 0 with history")

    @property
    def history(self) -> HistoryOptions:
        """The broker's history options for channels of this namespace."""
        return HistoryOptions(size=self.history_size, ttl=self.history_ttl)


@dataclass(frozen=True, slots=True)
class JwtOptions:
    """Keys and checks for connection and channel tokens (see :class:`~.auth.TokenVerifier`)."""

    secret: str | None = None
    public_key: str | None = None
    algorithms: tuple[str, ...] = ("HS256", "RS256", "ES256")
    audience: str | None = None
    issuer: str | None = None
    # Clock skew tolerated on exp and nbf; PyJWT's default is 0, Centrifugo's none: 5 s is
    # small against token lifetimes of minutes.
    leeway: float = 5.0


def _default_namespaces() -> dict[str, NamespaceOptions]:
    return {"": NamespaceOptions()}


@dataclass(frozen=True, slots=True)
class HubOptions:
    """The hub's configuration; defaults follow ``docs/protocol.md``.

    ``namespaces[""]`` applies to channels without ``:``; a channel in a namespace that isn't
    configured is refused with error 102.
    """

    namespaces: dict[str, NamespaceOptions] = field(default_factory=_default_namespaces)
    allow_anonymous: bool = False
    jwt: JwtOptions | None = None
    # Centrifugo's client.channel_limit.
    max_subscriptions_per_client: int = 128
    max_message_size: int = 64 * 1024
    # A publication's data, encoded; at most the message size unless set lower.
    max_publication_size: int = 64 * 1024
    recovery_max_publications: int = 1000
    commands_rate: RateLimit = RateLimit(100.0, 200.0)
    publications_rate: RateLimit = RateLimit(50.0, 100.0)
    rate_limit_disconnect_after: int = 100
    rate_limit_window: float = 10.0
    connect_timeout: float = 10.0
    # Reported to clients in the connect result; the node sends WebSocket pings this often.
    ping_interval: float = 20.0
    node_name: str = "wsend"
    max_bad_frames: int = 10

    def __post_init__(self) -> None:
        for name in ("max_subscriptions_per_client", "max_message_size", "max_publication_size"):
            _check_positive(name, getattr(self, name))
        for name in ("recovery_max_publications", "rate_limit_disconnect_after"):
            _check_positive(name, getattr(self, name))
        for name in ("rate_limit_window", "connect_timeout", "max_bad_frames"):
            _check_positive(name, getattr(self, name))
        _check_positive("ping_interval", self.ping_interval, zero=True)
        for name in ("commands_rate", "publications_rate"):
            limit = getattr(self, name)
            if limit.rate <= 0 or limit.burst < 1:
                raise ConfigError(name, "needs rate > 0 and burst >= 1")
        for ns in self.namespaces:
            if ns and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", ns):
                raise ConfigError(f"namespaces.{ns}", "invalid namespace name")

    def namespace(self, channel: Channel) -> NamespaceOptions:
        """The options of ``channel``'s namespace.

        Raises:
            HubError: ``UNKNOWN_CHANNEL`` (102) when the namespace isn't configured.
        """
        options = self.namespaces.get(channel.namespace)
        if options is None:
            raise HubError(ErrorCode.UNKNOWN_CHANNEL, "unknown namespace")
        return options

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HubOptions:
        """Build options from a mapping, e.g. a parsed TOML or JSON file.

        Keys are the attribute names; ``namespaces`` maps names to mappings of
        :class:`NamespaceOptions` fields; ``jwt`` is a mapping of :class:`JwtOptions` fields;
        rate limits are ``{"rate": ..., "burst": ...}``.

        Raises:
            ConfigError: naming the first bad key (unknown keys, wrong types, bad values).
        """
        kwargs = _fields(cls, data, "", skip={"namespaces", "jwt", *_RATES})
        if "namespaces" in data:
            kwargs["namespaces"] = _namespaces(data["namespaces"])
        if data.get("jwt") is not None:
            jwt = _fields(JwtOptions, _mapping(data["jwt"], "jwt"), "jwt.")
            if "algorithms" in jwt:
                jwt["algorithms"] = tuple(_list_of_str(jwt["algorithms"], "jwt.algorithms"))
            kwargs["jwt"] = _build(JwtOptions, jwt, "jwt")
        for name in _RATES & data.keys():
            rate = _fields(RateLimit, _mapping(data[name], name), f"{name}.")
            kwargs[name] = _build(RateLimit, rate, name)
        options: HubOptions = _build(cls, kwargs, "")
        return options


_RATES: Final = frozenset({"commands_rate", "publications_rate"})
_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "str | None": (str, type(None)),
}


def _namespaces(value: Any) -> dict[str, NamespaceOptions]:
    result = {}
    for name, ns in _mapping(value, "namespaces").items():
        key = f"namespaces.{name}"
        result[str(name)] = _build(
            NamespaceOptions, _fields(NamespaceOptions, _mapping(ns, key), key + "."), key
        )
    return result


def _fields(
    cls: type, data: Mapping[str, Any], prefix: str, skip: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(prefix + str(key), "unknown key")
        if key not in skip:
            _check_type(prefix + key, value, str(known[key].type))
        kwargs[key] = value
    return kwargs


def _check_type(key: str, value: Any, annotation: str) -> None:
    expected = _TYPES.get(annotation)
    if expected is None:  # literals and composite types are checked by __post_init__
        return
    if isinstance(value, bool) and bool not in expected:
        raise ConfigError(key, f"expected {annotation}, got bool")
    if not isinstance(value, expected):
        raise ConfigError(key, f"expected {annotation}, got {type(value).__name__}")


def _build(cls: Any, kwargs: dict[str, Any], key: str) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(
            f"{key}.{exc.key}" if key else exc.key, str(exc).split(": ", 1)[1]
        ) from exc
    except TypeError as exc:
        raise ConfigError(key or "options", str(exc)) from exc


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a table, got {type(value).__name__}")
    return value


def _list_of_str(value: Any, key: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "expected a list of strings")
    return list(value)


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(key, f"expected one of {', '.join(choices)}, got {value!r}")


def _check_positive(key: str, value: float, *, zero: bool = False) -> None:
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(key, "must be " + (">= 0" if zero else "> 0"))
