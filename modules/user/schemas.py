"""What crosses the HTTP boundary for users. The descriptions and examples are the API docs.

The schemas check shapes (types, lengths, known roles); the services own the rules (email and
phone normalisation, the password policy, uniqueness) so the CLI and imports obey them too.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest.fields import Upload

from app.db import utcnow
from app.http import JsonBoolean, PageArgs

from .csvfile import ENCODINGS
from .models import IMPORT_MODES, ROLES
from .passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

_ROLE_DESCRIPTION = (
    "admin: manages users and settings; staff: works on orders, invoices and payments; "
    "customer: buys; seller: sells"
)


def _role_field(**options: Any) -> ma.fields.String:
    return ma.fields.String(
        validate=ma.validate.OneOf(ROLES),
        metadata={"description": _ROLE_DESCRIPTION, "example": "staff"},
        **options,
    )


class UserSchema(ma.Schema):
    """A user as the API shows it. The password hash never leaves the server."""

    id = ma.fields.UUID(
        attribute="uuid",
        dump_only=True,
        metadata={
            "description": "The user's public id",
            "example": "0f8fad5b-d9cb-469f-a165-70867728950e",
        },
    )
    email = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "Unique in any letter case; stored with the domain in lower case",
            "example": "sari@example.co.id",
        },
    )
    name = ma.fields.String(dump_only=True, metadata={"example": "Sari Wulandari"})
    phone = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "E.164, or null", "example": "+628123456789"},
    )
    role = ma.fields.String(
        dump_only=True,
        metadata={"description": _ROLE_DESCRIPTION, "enum": list(ROLES), "example": "customer"},
    )
    active = ma.fields.Boolean(
        dump_only=True,
        metadata={"description": "False once deactivated: the user can no longer log in"},
    )
    has_password = ma.fields.Boolean(
        dump_only=True,
        metadata={
            "description": "False until the user has set a password (imported users activate "
            "with a one-time token)"
        },
    )
    created_at = ma.fields.DateTime(dump_only=True, metadata={"description": "RFC 3339, UTC"})
    updated_at = ma.fields.DateTime(dump_only=True, metadata={"description": "RFC 3339, UTC"})


class UserCreateSchema(ma.Schema):
    """A new user, with a first password or without one (then issue an activation token)."""

    email = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=3, max=254),
        metadata={
            "description": "Must be unique in any letter case",
            "example": "sari@example.co.id",
        },
    )
    name = ma.fields.String(
        load_default="",
        validate=ma.validate.Length(max=200),
        metadata={"example": "Sari Wulandari"},
    )
    role = _role_field(load_default="customer")
    phone = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(max=40),
        metadata={
            "description": "Stored as E.164. With + or 00 in front a number is international; "
            "without, it is national in LAPAK_DEFAULT_PHONE_REGION (default ID: 08123456789 "
            "and 8123456789 are both +628123456789)",
            "example": "0812-3456-789",
        },
    )
    password = ma.fields.String(
        load_only=True,
        load_default=None,
        allow_none=True,
        metadata={
            # The password policy (services) checks these with its own clear messages.
            "minLength": MIN_PASSWORD_LENGTH,
            "maxLength": MAX_PASSWORD_LENGTH,
            "description": f"Optional first password: {MIN_PASSWORD_LENGTH}-"
            f"{MAX_PASSWORD_LENGTH} characters, not the email address. Without one the user "
            "cannot log in until activated",
            "format": "password",
        },
    )


class UserUpdateSchema(ma.Schema):
    """The fields to change; give at least one. Omitted fields stay as they are."""

    class Meta:
        openapi = {"minProperties": 1}  # what _at_least_one_field checks

    name = ma.fields.String(validate=ma.validate.Length(max=200), metadata={"example": "Sari W."})
    phone = ma.fields.String(
        allow_none=True,
        validate=ma.validate.Length(max=40),
        metadata={
            "description": "As on create (+ or 00 for international numbers, else national in "
            "LAPAK_DEFAULT_PHONE_REGION); null removes it"
        },
    )
    role = _role_field()
    active = JsonBoolean(
        metadata={"description": "false deactivates the user (their sessions stop working)"}
    )

    @ma.validates_schema
    def _at_least_one_field(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError(
                f"give at least one of {', '.join(self.fields)} to change", "_schema"
            )


class UserQuerySchema(PageArgs):
    """Filters of the user list, with cursor pagination."""

    role = _role_field(load_default=None)
    active = ma.fields.Boolean(
        load_default=None, metadata={"description": "Only active (true) or inactive (false) users"}
    )
    email_prefix = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=254),
        metadata={
            "description": "Only emails that start with this, in any letter case "
            "(% and _ are literal characters)",
            "example": "sari",
        },
    )


class ActivationIssuedSchema(ma.Schema):
    """A one-time activation token: give it to the user; it is shown only once."""

    token = ma.fields.String(
        metadata={
            "description": "Pass to POST /api/v1/auth/activate with the new password; "
            "works once, and a newer token replaces it",
            "example": "q0Vt3bXk6fJ0d7v2mZyXo1rS9nWcE4hA5uLpQ8iT2gY",
        }
    )
    expires_at = ma.fields.DateTime(metadata={"description": "RFC 3339, UTC"})


class ImportOptionsSchema(ma.Schema):
    """The form fields sent with the uploaded file."""

    mode = ma.fields.String(
        load_default="create",
        validate=ma.validate.OneOf(IMPORT_MODES),
        metadata={
            "description": "create: existing emails are row errors; upsert: they are "
            "updated (name, phone, role: only the columns in the file)"
        },
    )
    dry_run = ma.fields.Boolean(
        load_default=False, metadata={"description": "Check and count everything, write nothing"}
    )
    default_role = ma.fields.String(
        load_default="customer",
        validate=ma.validate.OneOf(ROLES),
        metadata={"description": "Role of new users whose role cell is blank"},
    )
    encoding = ma.fields.String(
        load_default=None,
        validate=ma.validate.OneOf(ENCODINGS),
        metadata={
            "description": "Force an encoding; by default a BOM, else UTF-8, else "
            "Windows-1252 is detected"
        },
    )


class ImportUploadSchema(ma.Schema):
    file = Upload(required=True, metadata={"description": "The CSV file (see import-template.csv)"})


class ImportRowErrorSchema(ma.Schema):
    row = ma.fields.Integer(
        attribute="row_number", metadata={"description": "Spreadsheet row; the header is row 1"}
    )
    column = ma.fields.String(allow_none=True)
    value = ma.fields.String(allow_none=True)
    message = ma.fields.String()
    code = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "The kind of problem: invalid, required, too-many-cells, duplicate, "
            "email-taken (create mode; upsert would update the user), concurrent-change, "
            "last-admin (the row would leave no active admin), own-role (the row changes the "
            "role of the admin running the import)",
            "example": "email-taken",
        },
    )


class ImportJobSchema(ma.Schema):
    id = ma.fields.UUID(attribute="uuid")
    status = ma.fields.String(
        metadata={
            "description": "queued, running, succeeded, succeeded_with_errors, failed, cancelled"
        }
    )
    mode = ma.fields.String()
    dry_run = ma.fields.Boolean()
    default_role = ma.fields.String()
    filename = ma.fields.String()
    encoding = ma.fields.String()
    delimiter = ma.fields.String()
    total_rows = ma.fields.Integer(metadata={"description": "Non-blank data rows in the file"})
    processed_rows = ma.fields.Integer()
    created = ma.fields.Integer()
    updated = ma.fields.Integer()
    skipped = ma.fields.Integer(metadata={"description": "Existing users already up to date"})
    failed = ma.fields.Integer()
    existing = ma.fields.Integer(
        metadata={
            "description": "Create mode: failed rows whose email already has a user "
            "(mode=upsert updates them)"
        }
    )
    hint = ma.fields.Method(
        "_hint",
        allow_none=True,
        metadata={
            "description": "What to do next, when the counts suggest something",
            "example": "3 rows name existing users; upload again with mode=upsert to update them",
        },
    )
    percent = ma.fields.Method("_percent")
    rows_per_second = ma.fields.Method("_rate", allow_none=True)
    unknown_columns = ma.fields.List(ma.fields.String())
    error = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    first_errors = ma.fields.Method("_first_errors")

    def _percent(self, job: Any) -> float:
        return round(100 * job.processed_rows / job.total_rows, 1) if job.total_rows else 0.0

    def _hint(self, job: Any) -> str | None:
        from .imports import hint

        return hint(job)

    def _rate(self, job: Any) -> float | None:
        if job.started_at is None or not job.processed_rows:
            return None
        seconds = ((job.finished_at or utcnow()) - job.started_at).total_seconds()
        return round(job.processed_rows / seconds, 1) if seconds > 0 else None

    def _first_errors(self, job: Any) -> list[dict[str, Any]]:
        from .imports import first_errors

        return ImportRowErrorSchema(many=True).dump(first_errors(job))


class ErrorsQuerySchema(PageArgs):
    format = ma.fields.String(
        load_default="json",
        validate=ma.validate.OneOf(("json", "csv")),
        metadata={"description": "csv: the failed rows as uploaded plus an error column"},
    )
