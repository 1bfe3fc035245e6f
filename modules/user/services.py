"""User operations: create, update, deactivate, activation tokens, passwords.

Every function that changes data owns its transaction and emits the matching event
(``user.created``, ``user.updated``, ``user.deactivated``, ``user.activated``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.db import Session, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.events import emit
from app.http import Page, keyset_page

from .models import ROLES, ActivationToken, User
from .passwords import passwords, policy_errors

ACTIVATION_TTL = timedelta(hours=72)
# Deliberately simple: one @, a dot in the domain, no spaces. Real checking is delivery.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE_CHARS = re.compile(r"[\s().-]")
INDONESIA_CALLING_CODE = "62"


class UserNotFound(NotFound):
    code = "user-not-found"
    title = "No such user"


class EmailTaken(Conflict):
    code = "email-taken"
    title = "A user with this email already exists"


class InvalidActivationToken(Invalid):
    code = "invalid-activation-token"
    title = "The activation token is invalid, used or expired"


class AlreadyActivated(Conflict):
    code = "already-activated"
    title = "This user already has a password"


def normalize_email(raw: str) -> tuple[str, str]:
    """``(display form, unique key)``: trimmed with the domain lower-cased, and all lower-case."""
    email = raw.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise Invalid(errors={"email": ["is not a valid email address"]})
    local, domain = email.rsplit("@", 1)
    display = f"{local}@{domain.lower()}"
    return display, display.lower()


def normalize_phone(raw: str | None) -> str | None:
    """E.164 (``+6281234567890``) from the spellings Indonesians use; None for empty input."""
    if raw is None or not raw.strip():
        return None
    digits = _PHONE_CHARS.sub("", raw.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = INDONESIA_CALLING_CODE + digits[1:]
    if not digits.isdigit() or not 8 <= len(digits) <= 15 or digits.startswith("0"):
        raise Invalid(errors={"phone": [f"{raw!r} is not a phone number (E.164, e.g. +62...)"]})
    return f"+{digits}"


def check_password(password: str, email: str) -> None:
    problems = policy_errors(password, email)
    if problems:
        raise Invalid("The password does not meet the policy.", errors={"password": problems})


def check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(errors={"role": [f"must be one of {', '.join(ROLES)}"]})


@dataclass(frozen=True)
class UserFilter:
    role: str | None = None
    active: bool | None = None
    email_prefix: str | None = None


def list_users(filters: UserFilter, *, limit: int, cursor: str | None) -> Page:
    statement = select(User)
    if filters.role is not None:
        statement = statement.where(User.role == filters.role)
    if filters.active is not None:
        statement = statement.where(User.active == filters.active)
    if filters.email_prefix:
        prefix = filters.email_prefix.strip().lower()
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(User.email_key.like(f"{escaped}%", escape="\\"))
    return keyset_page(statement, [User.id], limit=limit, cursor=cursor)


def get_user(user_uuid: uuid.UUID) -> User:
    user = Session().scalars(select(User).where(User.uuid == user_uuid)).one_or_none()
    if user is None:
        raise UserNotFound(f"no user {user_uuid}")
    return user


def find_by_email(email: str) -> User | None:
    """The user with this email (any case), or None; malformed input is simply not found."""
    try:
        _, key = normalize_email(email)
    except Invalid:
        return None
    return Session().scalars(select(User).where(User.email_key == key)).one_or_none()


def create_user(
    email: str,
    *,
    name: str = "",
    role: str = "customer",
    phone: str | None = None,
    password: str | None = None,
    active: bool = True,
) -> User:
    display, key = normalize_email(email)
    check_role(role)
    normalized_phone = normalize_phone(phone)
    if password is not None:
        check_password(password, display)
    with transaction() as session:
        if session.scalars(select(User.id).where(User.email_key == key)).first() is not None:
            raise EmailTaken(f"{display} is already registered", errors={"email": ["is taken"]})
        user = User(
            email=display,
            email_key=key,
            name=name.strip(),
            role=role,
            phone=normalized_phone,
            active=active,
            password_hash=passwords().hash(password) if password is not None else None,
        )
        session.add(user)
        session.flush()
        emit("user.created", _event(user))
    return user


def update_user(user_uuid: uuid.UUID, changes: dict[str, Any]) -> User:
    """Change ``name``, ``phone``, ``role`` and/or ``active``; emits ``user.updated``."""
    if "role" in changes:
        check_role(changes["role"])
    if "phone" in changes:
        changes["phone"] = normalize_phone(changes["phone"])
    with transaction():
        user = get_user(user_uuid)
        for field_name in ("name", "phone", "role", "active"):
            if field_name in changes:
                setattr(user, field_name, changes[field_name])
        emit("user.updated", _event(user))
        if changes.get("active") is False:
            emit("user.deactivated", _event(user))
    return user


def deactivate_user(user_uuid: uuid.UUID) -> User:
    return update_user(user_uuid, {"active": False})


def set_password(user: User, password: str) -> None:
    """Set a new password (policy checked) inside the caller's transaction."""
    check_password(password, user.email)
    user.password_hash = passwords().hash(password)


def issue_activation_token(user_uuid: uuid.UUID) -> tuple[str, datetime]:
    """A new one-time token for a user without a password; older unused ones stop working."""
    with transaction() as session:
        user = get_user(user_uuid)
        if user.has_password:
            raise AlreadyActivated(f"{user.email} already has a password")
        now = utcnow()
        for old in session.scalars(
            select(ActivationToken).where(
                ActivationToken.user_id == user.id, ActivationToken.used_at.is_(None)
            )
        ):
            old.expires_at = min(old.expires_at, now)
        token = secrets.token_urlsafe(32)
        expires_at = now + ACTIVATION_TTL
        session.add(
            ActivationToken(user_id=user.id, token_hash=_digest(token), expires_at=expires_at)
        )
    return token, expires_at


def activate(token: str, password: str) -> User:
    """Set the first password with a one-time token. Every bad token gets the same answer."""
    with transaction() as session:
        record = session.scalars(
            select(ActivationToken)
            .where(ActivationToken.token_hash == _digest(token))
            .with_for_update()
        ).one_or_none()
        now = utcnow()
        if record is None or record.used_at is not None or record.expires_at <= now:
            raise InvalidActivationToken()
        user = session.get(User, record.user_id)
        if user is None or not user.active or user.has_password:
            raise InvalidActivationToken()
        set_password(user, password)
        record.used_at = now
        emit("user.activated", _event(user))
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _event(user: User) -> dict[str, Any]:
    return {"user_id": user.id, "uuid": user.uuid, "role": user.role, "active": user.active}
