"""Access-token verification: every missing, stale, forged or malformed token is refused.

Each refusal is a 401 problem+json that writes nothing. The forged tokens point at a real, live
session, and the request is sent two minutes after the login: a token that slipped through
would slide that session's ``last_seen_at`` and cache its state in Redis, which the footprint
check would see (``test_the_footprint_sees_what_an_accepted_token_writes`` proves it does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app import clock
from app.clock import travel
from app.db import get_database
from modules.auth.models import AuthSession
from modules.auth.tokens import MAX_TOKEN_LENGTH, REQUIRED_CLAIMS
from tests.modules.conftest import bearer, login
from tests.servers import Services

SESSION = "/api/v1/auth/session"
PROBLEM = "application/problem+json"
#: Later than the touch interval (one minute): an accepted token would write last_seen_at.
LATER = timedelta(minutes=2)
#: Well past the verifier's 30 s leeway.
SKEW = 300
OTHER_SECRET = "another-installation-secret-" + "y" * 40
DROP = object()

# --- token crafting ---------------------------------------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(document: dict[str, Any]) -> str:
    return b64url(json.dumps(document, separators=(",", ":")).encode())


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT signed with HMAC-SHA256 without PyJWT (which refuses a PEM key as HMAC secret)."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@dataclass(frozen=True)
class Victim:
    """A logged-in user whose live session the forged tokens point at."""

    token: str
    claims: dict[str, Any]
    secret: str
    user_id: int

    def signed(
        self,
        *,
        key: Any = None,
        algorithm: str = "HS256",
        headers: dict[str, Any] | None = None,
        **changes: Any,
    ) -> str:
        """The victim's claims with ``changes`` (``DROP`` removes a claim), signed again."""
        claims = {k: v for k, v in {**self.claims, **changes}.items() if v is not DROP}
        return jwt.encode(claims, key or self.secret, algorithm=algorithm, headers=headers)

    def parts(self) -> list[str]:
        return self.token.split(".")


def now() -> int:
    return int(clock.now().timestamp())


@pytest.fixture
def victim(app: Flask, client: FlaskClient, make_user: Callable[..., Any]) -> Victim:
    user_id, _, email = make_user()
    response = login(client, email)
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["access_token"]
    return Victim(token, claims_of(token), app.extensions["auth"].keyring.signing_key, user_id)


# --- what a request may leave behind ----------------------------------------------------------


def footprint(app: Flask, services: Services) -> tuple[list[tuple[Any, ...]], list[bytes]]:
    """Every auth_session row, and every session state cached in Redis."""
    with app.app_context(), get_database().primary.connect() as connection:
        rows = connection.execute(
            select(AuthSession.__table__).order_by(AuthSession.__table__.c.id)
        ).all()
    keys = redis.Redis.from_url(services.redis_url).keys("lapak:auth:session:*")
    return [tuple(row) for row in rows], sorted(keys)


def assert_refused(response: TestResponse, *secrets: str) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)[:300]
    assert response.content_type == PROBLEM
    body = response.get_json()
    assert body["status"] == 401
    assert body["type"].startswith("urn:lapak:problem:")
    assert body["title"]
    text = response.get_data(as_text=True)
    for secret in secrets:
        credential = secret.partition(" ")[2] or secret  # without the scheme word
        if len(credential) >= 16:
            assert credential not in text  # a refusal never echoes the credentials


# --- the cases --------------------------------------------------------------------------------

Build = Callable[[Victim], dict[str, str]]


def _bearer_of(build: Callable[[Victim], str]) -> Build:
    return lambda v: bearer(build(v))


def _alg_none(v: Victim, signature: str = "") -> str:
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{v.parts()[1]}.{signature}"


def _tampered(v: Victim, **changes: Any) -> str:
    header, _, signature = v.parts()
    return f"{header}.{segment({**v.claims, **changes})}.{signature}"


def _oversized(v: Victim) -> str:
    token = v.signed(padding="x" * MAX_TOKEN_LENGTH)
    assert len(token) > MAX_TOKEN_LENGTH
    return token


def _rs256(v: Victim) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return v.signed(key=key, algorithm="RS256")


#: Refused before any token is read (MissingCredentials) or by the session check: these carry
#: WWW-Authenticate today.
HEADER_CASES: dict[str, Build] = {
    "no Authorization header": lambda v: {},
    "empty Authorization header": lambda v: {"Authorization": ""},
    "Bearer with no token": lambda v: {"Authorization": "Bearer "},
    "Basic scheme": lambda v: {"Authorization": "Basic dXNlckBleGFtcGxlLnRlc3Q6c2VjcmV0"},
    "valid token under the Token scheme": lambda v: {"Authorization": f"Token {v.token}"},
    "valid token with no scheme": lambda v: {"Authorization": v.token},
    "valid token in another header": lambda v: {"X-Access-Token": v.token},
}
SESSION_CASES: dict[str, Build] = {
    "signed token for a session that does not exist": _bearer_of(
        lambda v: v.signed(sid=str(uuid.uuid4()))
    ),
}
#: Refused by the token verifier (InvalidToken).
TOKEN_CASES: dict[str, Build] = {
    "expired": _bearer_of(lambda v: v.signed(exp=now() - SKEW, iat=now() - 2 * SKEW)),
    "not yet valid (nbf)": _bearer_of(lambda v: v.signed(nbf=now() + SKEW)),
    "issued in the future (iat)": _bearer_of(lambda v: v.signed(iat=now() + SKEW)),
    "wrong issuer": _bearer_of(lambda v: v.signed(iss="https://elsewhere.example")),
    "wrong audience": _bearer_of(lambda v: v.signed(aud="another-api")),
    "audience list without ours": _bearer_of(lambda v: v.signed(aud=["a-api", "b-api"])),
    "signed with another secret": _bearer_of(lambda v: v.signed(key=OTHER_SECRET)),
    "alg none, empty signature": _bearer_of(_alg_none),
    "alg none, original signature": _bearer_of(lambda v: _alg_none(v, v.parts()[2])),
    "HS512 with the right secret": _bearer_of(lambda v: v.signed(algorithm="HS512")),
    "RS256 under an HS256 configuration": _bearer_of(_rs256),
    "payload tampered to role admin": _bearer_of(lambda v: _tampered(v, role="admin")),
    "payload tampered to a later exp": _bearer_of(lambda v: _tampered(v, exp=now() + 10**6)),
    "signature of another token": _bearer_of(
        lambda v: ".".join([*v.parts()[:2], v.signed(jti="other").split(".")[2]])
    ),
    "signature stripped": _bearer_of(lambda v: ".".join([*v.parts()[:2], ""])),
    **{
        f"missing {claim}": _bearer_of(lambda v, claim=claim: v.signed(**{claim: DROP}))
        for claim in REQUIRED_CLAIMS
    },
    "malformed sid": _bearer_of(lambda v: v.signed(sid="not-a-uuid")),
    "malformed sub": _bearer_of(lambda v: v.signed(sub="root")),
    "exp that is not a number": _bearer_of(lambda v: v.signed(exp="tomorrow")),
    "garbage word": lambda v: bearer("garbage"),
    "three dots": lambda v: bearer("..."),
    "three junk segments": lambda v: bearer("a.b.c"),
    "empty JSON objects": lambda v: bearer("e30.e30."),
    "header only": lambda v: bearer(v.parts()[0]),
    "truncated token": lambda v: bearer(v.token[:-7]),
    "token with trailing junk": lambda v: bearer(v.token + ".x"),
    "base64 noise": lambda v: bearer(b64url(bytes(range(256)) * 2)),
    "non-JSON header": lambda v: bearer(f"{b64url(b'not json')}.{v.parts()[1]}.{v.parts()[2]}"),
    "oversized validly signed token": _bearer_of(_oversized),
    "oversized garbage": lambda v: bearer("A" * 100_000),
}
ALL_CASES = {**HEADER_CASES, **SESSION_CASES, **TOKEN_CASES}
PROBLEM_OF_CASE = {
    **dict.fromkeys(HEADER_CASES, "urn:lapak:problem:unauthenticated"),
    **dict.fromkeys(SESSION_CASES, "urn:lapak:problem:session-revoked"),
    **dict.fromkeys(TOKEN_CASES, "urn:lapak:problem:invalid-token"),
    "expired": "urn:lapak:problem:token-expired",
}
#: For the cases that target one check, the words of the refusal that show it was that check
#: (and not, say, a broken signature from a clumsy forgery).
REASON_OF_CASE = {
    "expired": "expired",
    "not yet valid (nbf)": "not valid yet",
    "issued in the future (iat)": "in the future",
    "wrong issuer": "issuer",
    "wrong audience": "audience",
    "audience list without ours": "audience",
    "alg none, empty signature": "algorithm",
    "alg none, original signature": "algorithm",
    "HS512 with the right secret": "algorithm",
    "RS256 under an HS256 configuration": "algorithm",
    "oversized validly signed token": "too long",
    **{f"missing {claim}": f"lacks the {claim} claim" for claim in REQUIRED_CLAIMS},
    "malformed sid": "malformed",
    "malformed sub": "malformed",
    "exp that is not a number": "malformed",
}


@pytest.mark.parametrize("case", ALL_CASES)
def test_refused_credentials_get_401_problem_and_write_nothing(
    app: Flask, client: FlaskClient, services: Services, victim: Victim, case: str
) -> None:
    with travel(LATER):
        headers = ALL_CASES[case](victim)
        before = footprint(app, services)
        response = client.get(SESSION, headers=headers)
        after = footprint(app, services)
    assert_refused(response, victim.token, *headers.values())
    assert response.get_json()["type"] == PROBLEM_OF_CASE[case]
    assert REASON_OF_CASE.get(case, "") in response.get_json().get("detail", "")
    assert after == before


_header_params = [
    pytest.param(b, id=name) for name, b in {**HEADER_CASES, **SESSION_CASES, **TOKEN_CASES}.items()
]


@pytest.mark.parametrize("build", _header_params)
def test_refused_credentials_get_www_authenticate(
    client: FlaskClient, victim: Victim, build: Build
) -> None:
    response = client.get(SESSION, headers=build(victim))
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_signed_token_naming_another_user_for_the_session_is_refused(
    app: Flask, client: FlaskClient, services: Services, victim: Victim
) -> None:
    # Signed with our key, so only a key holder can make it; the session check still refuses.
    # Looking the session up may cache its (true, unchanged) state: only the rows must not move.
    forged = victim.signed(sub=str(uuid.uuid4()))
    with travel(LATER):
        before = footprint(app, services)
        response = client.get(SESSION, headers=bearer(forged))
        after = footprint(app, services)
    assert_refused(response, forged)
    assert response.get_json()["type"] == "urn:lapak:problem:session-revoked"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert after[0] == before[0]


def test_the_footprint_sees_what_an_accepted_token_writes(
    app: Flask, client: FlaskClient, services: Services, victim: Victim
) -> None:
    # The control for the test above: the genuine token, equally late, does write.
    with travel(LATER):
        before = footprint(app, services)
        assert client.get(SESSION, headers=bearer(victim.token)).status_code == 200
        after = footprint(app, services)
    assert after[0] != before[0]  # last_seen_at and idle_expires_at slid forward
    assert len(after[1]) == len(before[1]) + 1  # the session state is cached


def test_a_token_resigned_with_the_right_key_is_accepted(
    client: FlaskClient, victim: Victim
) -> None:
    # The forging helpers change only what each case names: unchanged, they make a good token.
    assert client.get(SESSION, headers=bearer(victim.signed())).status_code == 200
    assert client.get(SESSION, headers=bearer(victim.signed(jti="another"))).status_code == 200


def test_clock_checks_allow_a_small_leeway(client: FlaskClient, victim: Victim) -> None:
    # A few seconds of clock skew between servers must not log anyone out.
    skewed = victim.signed(iat=now() + 10, nbf=now() + 10, exp=now() + 3600)
    assert client.get(SESSION, headers=bearer(skewed)).status_code == 200
    just_expired = victim.signed(exp=now() - 5)
    assert client.get(SESSION, headers=bearer(just_expired)).status_code == 200


def test_tampered_role_does_not_grant_admin(client: FlaskClient, victim: Victim) -> None:
    forged = _tampered(victim, role="admin")
    path = f"/api/v1/auth/users/{uuid.uuid4()}/revoke-sessions"
    refused = client.post(path, headers=bearer(forged))
    assert_refused(refused)


# --- asymmetric keys --------------------------------------------------------------------------

KeyFactory = Callable[[], Any]
KEY_FACTORIES: dict[str, KeyFactory] = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@dataclass(frozen=True)
class KeyPair:
    private_key: Any
    private_path: Path
    public_path: Path

    @property
    def public_pem(self) -> bytes:
        return self.public_path.read_bytes()


def write_key(directory: Path, name: str, algorithm: str = "RS256") -> KeyPair:
    private_key = KEY_FACTORIES[algorithm]()
    private_path, public_path = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    private_path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private_key, private_path, public_path)


@pytest.fixture
def signed_app(make_app: Callable[..., Flask], config: dict[str, Any]) -> Callable[..., Flask]:
    """An app signing with ``key`` as ``kid``: ``signed_app(key, "k1", public_keys="k0=...")``."""

    def build(key: KeyPair, kid: str, algorithm: str = "RS256", **extra: str) -> Flask:
        return make_app(
            module_env={
                **config["module_env"],  # the fast argon2 parameters of the test harness
                "jwt_algorithm": algorithm,
                "jwt_private_key_file": str(key.private_path),
                "jwt_key_id": kid,
                **extra,
            }
        )

    return build


def logged_in(app: Flask, email: str) -> str:
    response = login(app.test_client(), email)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def session_status(app: Flask, token: str) -> int:
    return app.test_client().get(SESSION, headers=bearer(token)).status_code


@pytest.mark.parametrize("algorithm", KEY_FACTORIES.keys())
def test_asymmetric_algorithms_work_end_to_end(
    tmp_path: Path,
    signed_app: Callable[..., Flask],
    make_user: Callable[..., Any],
    algorithm: str,
) -> None:
    key = write_key(tmp_path, "k1", algorithm)
    app = signed_app(key, "k1", algorithm)
    _, user_uuid, email = make_user()
    token = logged_in(app, email)
    assert jwt.get_unverified_header(token) == {"alg": algorithm, "typ": "JWT", "kid": "k1"}
    # Anyone with the public key can check it (that is the point of a key pair).
    claims = jwt.decode(
        token,
        key.private_key.public_key(),
        algorithms=[algorithm],
        audience="lapak-api",
        issuer="lapak",
    )
    assert claims["sub"] == str(user_uuid)
    response = app.test_client().get(SESSION, headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["id"] == claims["sid"]


def test_hs256_token_signed_with_the_rsa_public_key_is_refused(
    tmp_path: Path,
    signed_app: Callable[..., Flask],
    make_user: Callable[..., Any],
    services: Services,
) -> None:
    key = write_key(tmp_path, "k1")
    app = signed_app(key, "k1")
    _, _, email = make_user()
    claims = claims_of(logged_in(app, email))
    client = app.test_client()
    forgeries = [
        hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims, key.public_pem),
        hs256_by_hand({"alg": "HS256", "typ": "JWT"}, claims, key.public_pem),
        hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims, key.public_pem.strip()),
    ]
    for forged in forgeries:
        with travel(LATER):
            before = footprint(app, services)
            response = client.get(SESSION, headers=bearer(forged))
            after = footprint(app, services)
        assert_refused(response, forged)
        assert response.get_json()["type"] == "urn:lapak:problem:invalid-token"
        assert after == before


def test_unknown_or_missing_kid_is_refused(
    tmp_path: Path, signed_app: Callable[..., Flask], make_user: Callable[..., Any]
) -> None:
    key = write_key(tmp_path, "k1")
    stranger = write_key(tmp_path, "stranger")
    app = signed_app(key, "k1")
    _, _, email = make_user()
    claims = claims_of(logged_in(app, email))

    def sign(private_key: Any, **headers: Any) -> str:
        return jwt.encode(claims, private_key, algorithm="RS256", headers=headers)

    assert session_status(app, sign(key.private_key, kid="k1")) == 200  # the control
    for forged in (
        sign(key.private_key, kid="k9"),  # the right key under a kid nobody configured
        sign(key.private_key),  # no kid at all
        sign(key.private_key, kid=""),
        sign(stranger.private_key, kid="k1"),  # another key claiming to be k1
        sign(stranger.private_key, kid="stranger"),
    ):
        response = app.test_client().get(SESSION, headers=bearer(forged))
        assert_refused(response, forged)
        assert response.get_json()["type"] == "urn:lapak:problem:invalid-token"


def test_key_rotation_old_tokens_verify_until_their_key_is_removed(
    tmp_path: Path, signed_app: Callable[..., Flask], make_user: Callable[..., Any]
) -> None:
    k1, k2 = write_key(tmp_path, "k1"), write_key(tmp_path, "k2")
    _, _, alice = make_user()
    _, _, bob = make_user()
    before_rotation = signed_app(k1, "k1")
    old_token = logged_in(before_rotation, alice)
    assert jwt.get_unverified_header(old_token)["kid"] == "k1"

    # Rotation: k2 signs, k1 still verifies. Same database, so alice's session is still live.
    rotating = signed_app(k2, "k2", jwt_public_keys=f"k1={k1.public_path}")
    assert session_status(rotating, old_token) == 200
    new_token = logged_in(rotating, bob)
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert session_status(rotating, new_token) == 200
    assert session_status(before_rotation, new_token) == 401  # k1-only apps do not know k2

    # k1 removed: its tokens are refused for their key, although alice's session is live.
    after_rotation = signed_app(k2, "k2")
    refused = after_rotation.test_client().get(SESSION, headers=bearer(old_token))
    assert_refused(refused, old_token)
    assert refused.get_json()["type"] == "urn:lapak:problem:invalid-token"
    assert session_status(after_rotation, new_token) == 200
    assert session_status(rotating, old_token) == 200  # only the key was missing
