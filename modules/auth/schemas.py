"""What crosses the HTTP boundary of the auth module."""

from __future__ import annotations

import marshmallow as ma

from app.http import PageArgs, ProblemSchema
from modules.user.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

from .config import GRACE_HOURS_LIMIT
from .models import SIGNATURE_V1, SIGNATURE_VERSIONS


class LoginSchema(ma.Schema):
    email = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=254),
        metadata={"example": "admin@lapak.local"},
    )
    # Bounded so a huge body cannot make argon2 hash megabytes.
    password = ma.fields.String(
        required=True, load_only=True, validate=ma.validate.Length(min=1, max=1024)
    )


class SessionSchema(ma.Schema):
    id = ma.fields.UUID(attribute="sid", metadata={"description": "The session id (sid claim)"})
    created_at = ma.fields.DateTime()
    last_seen_at = ma.fields.DateTime()
    idle_expires_at = ma.fields.DateTime(
        metadata={"description": "Ends unless used before then; each use slides it forward"}
    )
    absolute_expires_at = ma.fields.DateTime(metadata={"description": "Ends then, used or not"})
    user_agent = ma.fields.String(allow_none=True)
    ip = ma.fields.String(allow_none=True)


class TokenSchema(ma.Schema):
    access_token = ma.fields.String(metadata={"description": "Send as Authorization: Bearer ..."})
    token_type = ma.fields.String(metadata={"example": "Bearer"})
    expires_at = ma.fields.DateTime()
    session = ma.fields.Nested(SessionSchema)


class ActivateSchema(ma.Schema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    password = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=1024),
        metadata={
            # The password policy (modules/user) checks these with its own clear messages.
            "minLength": MIN_PASSWORD_LENGTH,
            "maxLength": MAX_PASSWORD_LENGTH,
            "description": "The new password: not the email address",
            "format": "password",
        },
    )


class ActivatedSchema(ma.Schema):
    status = ma.fields.String(metadata={"example": "activated"})


class RevokedSchema(ma.Schema):
    revoked = ma.fields.Integer(metadata={"description": "How many live sessions were ended"})


class LoginLockedProblemSchema(ProblemSchema):
    retry_after = ma.fields.Integer(
        metadata={"description": "Seconds until a login is tried again (as Retry-After)"}
    )


# --- API keys --------------------------------------------------------------------------------


class ApiKeyCreateSchema(ma.Schema):
    name = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=100),
        metadata={"description": "What the key is for", "example": "Shop sync"},
    )
    scopes = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=64)),
        required=True,
        validate=ma.validate.Length(min=1, max=50),
        metadata={"example": ["orders:read", "payments:read"]},
    )
    expires_at = ma.fields.AwareDateTime(
        load_default=None, metadata={"description": "When the key stops working (optional)"}
    )
    signature_version = ma.fields.String(
        load_default=SIGNATURE_V1,
        validate=ma.validate.OneOf(SIGNATURE_VERSIONS),
        metadata={
            "description": "v1 signs method, path, query and body; legacy (the PayCoreX form, "
            "timestamp + body only) is weaker: one GET signature fits every GET path"
        },
    )


class ApiKeySchema(ma.Schema):
    id = ma.fields.String(attribute="key_id", metadata={"example": "lpk_Qx3..."})
    name = ma.fields.String()
    owner = ma.fields.UUID(attribute="owner.uuid")
    scopes = ma.fields.List(ma.fields.String(), attribute="scope_names")
    signature_version = ma.fields.String()
    state = ma.fields.String(metadata={"enum": ["active", "revoked", "expired"]})
    created_at = ma.fields.DateTime()
    expires_at = ma.fields.DateTime(allow_none=True)
    revoked_at = ma.fields.DateTime(allow_none=True)
    rolled_at = ma.fields.DateTime(allow_none=True)
    previous_secret_valid_until = ma.fields.DateTime(
        attribute="previous_secret_expires_at",
        allow_none=True,
        metadata={"description": "Until then the secret before the last roll still verifies"},
    )
    last_used_at = ma.fields.DateTime(
        allow_none=True, metadata={"description": "Updated at most once a minute"}
    )


class IssuedApiKeySchema(ApiKeySchema):
    secret = ma.fields.String(
        metadata={
            "description": "Shown this once: store it now. Sign requests with it (X-Signature)",
            "example": "lsk_...",
        }
    )


class ApiKeyListArgs(PageArgs):
    owner = ma.fields.UUID(
        load_default=None, metadata={"description": "An admin lists this user's keys"}
    )


class ApiKeyRollSchema(ma.Schema):
    grace_hours = ma.fields.Integer(
        load_default=None,
        validate=ma.validate.Range(min=0, max=GRACE_HOURS_LIMIT),
        metadata={
            "description": "How long the old secret still verifies (default "
            "LAPAK_API_KEY_ROLL_GRACE_HOURS, 24; at most LAPAK_API_KEY_MAX_GRACE_HOURS)"
        },
    )
