"""JWT verification for connection and channel tokens (``docs/protocol.md`` section 6), with PyJWT.

Security rules:

- Only the algorithms in the allowlist are accepted; ``none`` can't be allowed.
- An algorithm is accepted only with a key of its own kind: HMAC (``HS*``) only with the shared
  ``secret``, ``RS*``/``PS*`` only with an RSA public key and ``ES*`` only with an EC public key.
  A token can't make the verifier use an RSA public key as an HMAC secret (the "algorithm
  confusion" attack), because the key is chosen by family and a public key is never a secret.
- ``exp`` and ``nbf`` are checked against the injected time ``now`` with ``leeway`` seconds of
  tolerated clock skew; ``aud`` and ``iss`` are checked when configured.

Errors are :class:`~wsend.hub.codes.HubError` with the protocol's codes; PyJWT's exceptions never
escape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .codes import ErrorCode, HubError

__all__ = ["ChannelClaims", "ConnectionClaims", "TokenVerifier", "make_token"]

_HMAC: Final = frozenset({"HS256", "HS384", "HS512"})
_RSA: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC: Final = frozenset({"ES256", "ES384", "ES512"})
_SUPPORTED: Final = _HMAC | _RSA | _EC


@dataclass(frozen=True, slots=True)
class ConnectionClaims:
    """What a valid connection token says.

    Attributes:
        user: the user id (``sub``; ``""`` is anonymous).
        expires_at: ``exp`` (seconds since the epoch), or ``None`` if it never expires.
        channels: channels the user may subscribe to without further checks.
        info: public user info, shown in presence and join/leave.
    """

    user: str
    expires_at: float | None = None
    channels: list[str] = field(default_factory=list)
    info: Any = None


@dataclass(frozen=True, slots=True)
class ChannelClaims:
    """What a valid channel token says: its user, channel, expiry and channel info."""

    user: str
    channel: str
    expires_at: float | None = None
    info: Any = None


class TokenVerifier:
    """Verifies connection and channel JWTs.

    Args:
        secret: the HMAC secret; enables ``HS*`` algorithms.
        public_key: a PEM public key (RSA or EC); enables ``RS*``/``PS*`` or ``ES*``.
        algorithms: the allowlist (``none`` is refused).
        audience: when set, tokens must carry it in ``aud``.
        issuer: when set, tokens must have this ``iss``.
        leeway: seconds of clock skew tolerated on ``exp`` and ``nbf``.

    Raises:
        ValueError: without any key, with ``none`` or an unknown algorithm, with an invalid
            public key, or when no allowed algorithm matches the keys given.
    """

    def __init__(
        self,
        secret: str | None = None,
        public_key: str | None = None,
        algorithms: Iterable[str] = ("HS256", "RS256", "ES256"),
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 5.0,
    ) -> None:
        allowed = frozenset(algorithms)
        unknown = allowed - _SUPPORTED
        if unknown:
            raise ValueError(f"unsupported JWT algorithms: {', '.join(sorted(unknown))}")
        self._keys: dict[str, Any] = {}
        if secret:
            self._keys.update(dict.fromkeys(allowed & _HMAC, secret))
        if public_key:
            key = _load_public_key(public_key)
            family = _RSA if isinstance(key, rsa.RSAPublicKey) else _EC
            self._keys.update(dict.fromkeys(allowed & family, key))
        if not self._keys:
            raise ValueError("no allowed JWT algorithm matches the keys given")
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    def verify_connection(self, token: str, now: float) -> ConnectionClaims:
        """Verify a connection token at time ``now``.

        Raises:
            HubError: ``TOKEN_EXPIRED`` (109) when ``exp`` passed; ``UNAUTHORIZED`` (101) for any
                other problem (signature, algorithm, ``nbf``, ``aud``, ``iss``, claim types).
        """
        claims = self._decode(token, now, ErrorCode.UNAUTHORIZED)
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise HubError(ErrorCode.UNAUTHORIZED, "invalid token")
        return ConnectionClaims(claims["sub"], _exp(claims), channels, claims.get("info"))

    def verify_channel(self, token: str, user: str, channel: str, now: float) -> ChannelClaims:
        """Verify a channel token for ``user`` and ``channel`` at time ``now``.

        Raises:
            HubError: ``TOKEN_EXPIRED`` (109) when ``exp`` passed; ``PERMISSION_DENIED`` (103)
                for an invalid token, or one issued for another user or channel (the
                ``subscribe`` command's error for refused access).
        """
        claims = self._decode(token, now, ErrorCode.PERMISSION_DENIED)
        if claims["sub"] != user or claims.get("channel") != channel:
            raise HubError(ErrorCode.PERMISSION_DENIED, "token for another user or channel")
        return ChannelClaims(user, channel, _exp(claims), claims.get("info"))

    def _decode(self, token: str, now: float, code: ErrorCode) -> dict[str, Any]:
        key = self._key_for(token, code)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key[1],
                algorithms=[key[0]],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "verify_exp": False,  # checked below against the injected clock
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self.audience is not None,
                    "verify_iss": self.issuer is not None,
                    "require": ["sub"],
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise HubError(code, "invalid token") from exc
        self._check_claims(claims, now, code)
        return claims

    def _key_for(self, token: str, code: ErrorCode) -> tuple[str, Any]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise HubError(code, "invalid token") from exc
        if not isinstance(algorithm, str) or algorithm not in self._keys:
            raise HubError(code, "invalid token")
        return algorithm, self._keys[algorithm]

    def _check_claims(self, claims: dict[str, Any], now: float, code: ErrorCode) -> None:
        if not isinstance(claims["sub"], str):
            raise HubError(code, "invalid token")
        for name in ("exp", "nbf"):
            value = claims.get(name)
            if value is not None and (not _is_number(value) or not math.isfinite(value)):
                raise HubError(code, "invalid token")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if exp is not None and now >= exp + self.leeway:
            raise HubError(ErrorCode.TOKEN_EXPIRED)
        if nbf is not None and now + self.leeway < nbf:
            raise HubError(code, "token not yet valid")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _exp(claims: dict[str, Any]) -> float | None:
    exp = claims.get("exp")
    return None if exp is None else float(exp)


def _load_public_key(pem: str) -> Any:
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid public key") from exc
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("public key must be RSA or EC")
    return key


def make_token(
    key: str,
    sub: str,
    *,
    algorithm: str = "HS256",
    exp: float | None = None,
    **claims: Any,
) -> str:
    """Make a signed JWT, for tests and development.

    Args:
        key: the HMAC secret for ``HS*``, or a PEM private key for ``RS*``/``PS*``/``ES*``.
        sub: the user id.
        algorithm: the signing algorithm (``none`` is refused).
        exp: the expiry time (seconds since the epoch), or ``None`` for none.
        claims: more claims: ``channels``, ``info``, ``channel``, ``aud``, ``iss``, ``nbf``...

    Raises:
        ValueError: for an unsupported algorithm.
    """
    if algorithm not in _SUPPORTED:
        raise ValueError(f"unsupported JWT algorithm: {algorithm}")
    payload: dict[str, Any] = {"sub": sub, **claims}
    if exp is not None:
        payload["exp"] = exp
    return jwt.encode(payload, key, algorithm=algorithm)
