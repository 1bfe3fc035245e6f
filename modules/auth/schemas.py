"""What crosses the HTTP boundary of the auth module."""

from __future__ import annotations

import marshmallow as ma

from app.http import ProblemSchema
from modules.user.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH


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
