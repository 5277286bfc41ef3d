"""Tests of JWT verification: algorithms, keys, claims, expiry against an injected time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsend.hub.auth import ChannelClaims, ConnectionClaims, TokenVerifier, make_token
from wsend.hub.codes import ErrorCode, HubError

SECRET = "s3cret-" * 10
NOW = 1_700_000_000.0


def pem_pair(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    return pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_keys() -> tuple[str, str]:
    return pem_pair(ec.generate_private_key(ec.SECP256R1()))


def code_of(excinfo: pytest.ExceptionInfo[HubError]) -> int:
    return excinfo.value.code


def test_hs256_connection_token() -> None:
    verifier = TokenVerifier(secret=SECRET)
    token = make_token(SECRET, "alice", exp=NOW + 60, channels=["a", "b:c"], info={"n": "Al"})
    claims = verifier.verify_connection(token, NOW)
    assert claims == ConnectionClaims("alice", NOW + 60, ["a", "b:c"], {"n": "Al"})


def test_token_without_exp_never_expires() -> None:
    claims = TokenVerifier(secret=SECRET).verify_connection(make_token(SECRET, "bob"), NOW)
    assert claims.expires_at is None
    assert claims.channels == []


def test_anonymous_sub() -> None:
    claims = TokenVerifier(secret=SECRET).verify_connection(make_token(SECRET, ""), NOW)
    assert claims.user == ""


@pytest.mark.parametrize("algorithm", ["RS256", "PS256"])
def test_rsa_tokens(rsa_keys: tuple[str, str], algorithm: str) -> None:
    private, public = rsa_keys
    verifier = TokenVerifier(public_key=public, algorithms=("RS256", "PS256"))
    token = make_token(private, "alice", algorithm=algorithm, exp=NOW + 10)
    assert verifier.verify_connection(token, NOW).user == "alice"


def test_ec_tokens(ec_keys: tuple[str, str]) -> None:
    private, public = ec_keys
    verifier = TokenVerifier(public_key=public)
    token = make_token(private, "alice", algorithm="ES256")
    assert verifier.verify_connection(token, NOW).user == "alice"


def test_expired_token() -> None:
    verifier = TokenVerifier(secret=SECRET, leeway=5)
    token = make_token(SECRET, "alice", exp=NOW)
    assert verifier.verify_connection(token, NOW + 4.9).user == "alice"
    with pytest.raises(HubError) as excinfo:
        verifier.verify_connection(token, NOW + 5)
    assert code_of(excinfo) == ErrorCode.TOKEN_EXPIRED


def test_not_yet_valid_token() -> None:
    verifier = TokenVerifier(secret=SECRET, leeway=0)
    token = make_token(SECRET, "alice", nbf=NOW + 10)
    with pytest.raises(HubError) as excinfo:
        verifier.verify_connection(token, NOW)
    assert code_of(excinfo) == ErrorCode.UNAUTHORIZED
    assert verifier.verify_connection(token, NOW + 10).user == "alice"


def test_audience_and_issuer() -> None:
    verifier = TokenVerifier(secret=SECRET, audience="hub", issuer="backend")
    good = make_token(SECRET, "alice", aud="hub", iss="backend")
    assert verifier.verify_connection(good, NOW).user == "alice"
    for bad in (
        make_token(SECRET, "alice", aud="other", iss="backend"),
        make_token(SECRET, "alice", iss="backend"),
        make_token(SECRET, "alice", aud="hub", iss="evil"),
        make_token(SECRET, "alice", aud="hub"),
    ):
        with pytest.raises(HubError) as excinfo:
            verifier.verify_connection(bad, NOW)
        assert code_of(excinfo) == ErrorCode.UNAUTHORIZED


def test_audience_ignored_when_not_configured() -> None:
    token = make_token(SECRET, "alice", aud="anything")
    assert TokenVerifier(secret=SECRET).verify_connection(token, NOW).user == "alice"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        make_token("wrong-secret-wrong-secret-wrong-secret", "alice"),
        make_token(SECRET, "alice", exp="tomorrow"),  # type: ignore[arg-type],
        make_token(SECRET, "alice", channels="not-a-list"),
        make_token(SECRET, "alice", channels=[1]),
        jwt.encode({"nosub": 1}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": 5}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "alice"}, SECRET, algorithm="HS384"),  # not in the allowlist
    ],
)
def test_invalid_tokens(token: str) -> None:
    with pytest.raises(HubError) as excinfo:
        TokenVerifier(secret=SECRET).verify_connection(token, NOW)
    assert code_of(excinfo) == ErrorCode.UNAUTHORIZED


def test_alg_none_refused() -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps({"sub": "root"}).encode()).rstrip(b"=")
    token = (header + b"." + body + b".").decode()
    with pytest.raises(HubError):
        TokenVerifier(secret=SECRET).verify_connection(token, NOW)
    with pytest.raises(ValueError, match="unsupported"):
        TokenVerifier(secret=SECRET, algorithms=("none", "HS256"))
    with pytest.raises(ValueError, match="unsupported"):
        make_token(SECRET, "x", algorithm="none")


def test_hs_rs_confusion_impossible(rsa_keys: tuple[str, str]) -> None:
    _, public = rsa_keys
    # A token HMAC-signed with the public key as secret, as in the classic attack.
    forged = _hmac_token(public)
    verifier = TokenVerifier(public_key=public, algorithms=("HS256", "RS256"))
    with pytest.raises(HubError) as excinfo:
        verifier.verify_connection(forged, NOW)
    assert code_of(excinfo) == ErrorCode.UNAUTHORIZED


def _hmac_token(secret: str) -> str:
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(b'{"sub":"root"}')
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def test_rs_token_refused_without_public_key(rsa_keys: tuple[str, str]) -> None:
    private, _ = rsa_keys
    token = make_token(private, "alice", algorithm="RS256")
    with pytest.raises(HubError):
        TokenVerifier(secret=SECRET).verify_connection(token, NOW)


def test_ec_token_refused_with_rsa_key(rsa_keys: tuple[str, str], ec_keys: tuple[str, str]) -> None:
    token = make_token(ec_keys[0], "alice", algorithm="ES256")
    with pytest.raises(HubError):
        TokenVerifier(public_key=rsa_keys[1]).verify_connection(token, NOW)


def test_constructor_checks(rsa_keys: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="no allowed"):
        TokenVerifier()
    with pytest.raises(ValueError, match="no allowed"):
        TokenVerifier(secret=SECRET, algorithms=("RS256",))
    with pytest.raises(ValueError, match="no allowed"):
        TokenVerifier(public_key=rsa_keys[1], algorithms=("ES256",))
    with pytest.raises(ValueError, match="invalid public key"):
        TokenVerifier(public_key="not a key")


def test_channel_token() -> None:
    verifier = TokenVerifier(secret=SECRET)
    token = make_token(SECRET, "alice", channel="news:x", exp=NOW + 5, info={"role": "r"})
    claims = verifier.verify_channel(token, "alice", "news:x", NOW)
    assert claims == ChannelClaims("alice", "news:x", NOW + 5, {"role": "r"})


@pytest.mark.parametrize(
    ("user", "channel", "code"),
    [
        ("bob", "news:x", ErrorCode.PERMISSION_DENIED),
        ("alice", "news:y", ErrorCode.PERMISSION_DENIED),
    ],
)
def test_channel_token_refused(user: str, channel: str, code: int) -> None:
    token = make_token(SECRET, "alice", channel="news:x")
    with pytest.raises(HubError) as excinfo:
        TokenVerifier(secret=SECRET).verify_channel(token, user, channel, NOW)
    assert code_of(excinfo) == code


def test_channel_token_expired_and_invalid() -> None:
    verifier = TokenVerifier(secret=SECRET, leeway=0)
    expired = make_token(SECRET, "alice", channel="c", exp=NOW - 1)
    with pytest.raises(HubError) as excinfo:
        verifier.verify_channel(expired, "alice", "c", NOW)
    assert code_of(excinfo) == ErrorCode.TOKEN_EXPIRED
    with pytest.raises(HubError) as excinfo:
        verifier.verify_channel("junk", "alice", "c", NOW)
    assert code_of(excinfo) == ErrorCode.PERMISSION_DENIED
