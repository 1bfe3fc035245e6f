"""Signing and verifying access tokens (JWT), with pinned algorithms and key rotation.

Verification trusts nothing in the token before its signature is checked: the header's ``alg``
must equal the configured algorithm (no ``none``, no HS256 token checked against an RSA public
key), the ``kid`` must name a configured key, and the claims ``exp``, ``nbf`` and ``iat`` are
checked against :mod:`app.clock` with a small leeway (so tests can move time).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from app import clock
from app.errors import Unauthenticated

from .config import AuthSettings

MAX_TOKEN_LENGTH = 4096
REQUIRED_CLAIMS = ("sub", "sid", "iat", "exp", "iss", "aud", "jti", "role", "email")
#: The challenge on every 401 of the auth module (RFC 6750 section 3).
WWW_AUTHENTICATE = 'Bearer realm="lapak"'


class InvalidToken(Unauthenticated):
    code = "invalid-token"
    title = "The access token is not valid"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        challenge = f'{WWW_AUTHENTICATE}, error="invalid_token"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge}, **extra)


class TokenExpired(InvalidToken):
    code = "token-expired"
    title = "The access token has expired; log in again"


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, only to pick the key; PyJWT checks it again with the signature.

    Read here with the standard library because PyJWT would decode the whole token twice,
    which was a third of the per-request authentication cost (bench/auth.py).
    """
    head, dot, _ = token.partition(".")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        header = None
    if not dot or not isinstance(header, dict):
        raise InvalidToken("the token is malformed")
    return header


@dataclass(frozen=True)
class KeyRing:
    algorithm: str
    signing_key: Any
    key_id: str | None
    verification_keys: dict[str | None, Any]
    issuer: str
    audience: str
    leeway: int

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> KeyRing:
        if settings.algorithm == "HS256":
            return cls(
                "HS256",
                settings.hmac_secret,
                None,
                {None: settings.hmac_secret},
                settings.issuer,
                settings.audience,
                settings.leeway_seconds,
            )
        assert settings.private_key_pem is not None
        private_key = load_pem_private_key(settings.private_key_pem, password=None)
        keys: dict[str | None, Any] = {
            kid: load_pem_public_key(pem) for kid, pem in settings.public_keys_pem.items()
        }
        keys[settings.key_id] = private_key.public_key()
        return cls(
            settings.algorithm,
            private_key,
            settings.key_id,
            keys,
            settings.issuer,
            settings.audience,
            settings.leeway_seconds,
        )

    def issue(
        self,
        *,
        user_uuid: uuid.UUID,
        email: str,
        role: str,
        session_id: uuid.UUID,
        expires_at: datetime,
    ) -> str:
        issued = int(clock.now().timestamp())
        claims = {
            "sub": str(user_uuid),
            "email": email,
            "role": role,
            "sid": str(session_id),
            "iat": issued,
            "nbf": issued,
            "exp": int(expires_at.timestamp()),
            "iss": self.issuer,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, self.signing_key, algorithm=self.algorithm, headers=headers)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; :class:`InvalidToken` (saying why) for anything else."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("the token is too long")
        header = _unverified_header(token)
        if header.get("alg") != self.algorithm:
            raise InvalidToken("the token's algorithm is not accepted")
        kid = header.get("kid") if self.key_id else None
        if kid not in self.verification_keys:
            raise InvalidToken("the token was signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                self.verification_keys[kid],
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"the token lacks the {error.claim} claim") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token's signature or payload is not valid") from None
        self._check_times(claims)
        try:
            claims["sid"] = uuid.UUID(str(claims["sid"]))
            claims["sub"] = uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise InvalidToken("the token's subject or session is malformed") from None
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = clock.now().timestamp()
        try:
            expires, issued = float(claims["exp"]), float(claims["iat"])
            not_before = float(claims.get("nbf", issued))
        except (TypeError, ValueError):
            raise InvalidToken("the token's times are malformed") from None
        if expires <= now - self.leeway:
            raise TokenExpired("the token has expired: log in again for a new one")
        if not_before > now + self.leeway:
            raise InvalidToken("the token is not valid yet")
        if issued > now + self.leeway:
            raise InvalidToken("the token was issued in the future")
