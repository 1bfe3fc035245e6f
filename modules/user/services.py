"""User operations: create, update, deactivate, activation tokens, passwords.

Every function that changes data owns its transaction and emits the matching event
(``user.created``, ``user.updated``, ``user.deactivated``, ``user.activated``,
``user.password_set``). No change may leave the installation without an active admin.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as OrmSession

from app.db import Session, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.events import emit
from app.http import Page, keyset_page

from .models import ROLES, ActivationToken, User
from .passwords import passwords, policy_errors
from .phones import normalize_phone

ACTIVATION_TTL = timedelta(hours=72)
# Deliberately simple: one @, a dot in the domain, no spaces. Real checking is delivery.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
UPDATABLE_FIELDS = ("name", "phone", "role", "active")
#: How PostgreSQL and SQLite name the unique email index in their errors.
EMAIL_KEY_CONFLICT = ("uq_user_account_email_key", "user_account.email_key")


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


class UserInactive(Conflict):
    code = "user-inactive"
    title = "This user is deactivated"


class LastAdmin(Conflict):
    code = "last-admin"
    title = "This would leave no active admin"


def normalize_email(raw: str) -> tuple[str, str]:
    """``(display form, unique key)``: trimmed with the domain lower-cased, and all lower-case."""
    email = raw.strip()
    if len(email) > 254 or _CONTROL_CHARS.search(email) or not _EMAIL.match(email):
        raise Invalid(errors={"email": ["is not a valid email address"]})
    local, domain = email.rsplit("@", 1)
    display = f"{local}@{domain.lower()}"
    return display, display.lower()


def check_password(password: str, email: str) -> None:
    """Raise ``Invalid`` (``errors["password"]``) when the password breaks the policy."""
    problems = policy_errors(password, email)
    if problems:
        raise Invalid("The password does not meet the policy.", errors={"password": problems})


def check_role(role: str) -> None:
    """Raise ``Invalid`` (``errors["role"]``) unless ``role`` is one of :data:`ROLES`."""
    if role not in ROLES:
        raise Invalid(errors={"role": [f"must be one of {', '.join(ROLES)}"]})


@dataclass(frozen=True)
class UserFilter:
    """What a user listing is narrowed to; ``None`` means no filter on that field."""

    role: str | None = None
    active: bool | None = None
    email_prefix: str | None = None


def list_users(filters: UserFilter, *, limit: int, cursor: str | None) -> Page:
    """One page of users, oldest first; ``%`` and ``_`` in the email prefix are literal."""
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
    """The user with this public id; ``UserNotFound`` otherwise."""
    user = Session().scalars(select(User).where(User.uuid == user_uuid)).one_or_none()
    if user is None:
        raise UserNotFound(f"no user {user_uuid}")
    return user


def get_user_by_id(user_id: int) -> User:
    """The user with this internal id (e.g. ``Principal.user_id``); ``UserNotFound`` otherwise."""
    user = Session().get(User, user_id)
    if user is None:
        raise UserNotFound(f"no user #{user_id}")
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
    completing: Callable[[User], None] | None = None,
) -> User:
    """Create a user, with a first password or none (then it needs an activation token).

    ``Invalid`` names every field that breaks a rule; ``EmailTaken`` when the email is
    registered in any letter case. ``completing(user)`` runs in the same transaction once the
    user is written (the password already hashed, outside it): what another module makes with
    the user (a seller's profile) commits or rolls back with the user.
    """
    display, key = normalize_email(email)
    check_role(role)
    normalized_phone = normalize_phone(phone)
    password_hash = None
    if password is not None:
        check_password(password, display)
        password_hash = passwords().hash(password)  # slow on purpose: outside the transaction
    with transaction() as session:
        # No "does it exist?" query first: the unique index answers that, also under concurrent
        # creates, and a transaction that starts with its write waits for SQLite's write lock
        # instead of failing on a stale read snapshot.
        user = User(
            email=display,
            email_key=key,
            name=name.strip(),
            role=role,
            phone=normalized_phone,
            active=active,
            password_hash=password_hash,
        )
        session.add(user)
        try:
            session.flush()
        except IntegrityError as error:
            if not any(marker in str(error.orig) for marker in EMAIL_KEY_CONFLICT):
                raise
            raise _email_taken(display) from None
        emit("user.created", _event(user))
        if completing is not None:
            completing(user)
    return user


def update_user(user_uuid: uuid.UUID, changes: Mapping[str, Any]) -> User:
    """Change ``name``, ``phone``, ``role`` and/or ``active``.

    Emits ``user.updated`` (with the changed field names) when something changed, and
    ``user.deactivated`` when an active user becomes inactive. Refuses (``LastAdmin``) to demote
    or deactivate the last active admin.
    """
    unknown = sorted(set(changes) - set(UPDATABLE_FIELDS))
    if unknown:
        raise Invalid(errors={name: ["cannot be changed here"] for name in unknown})
    wanted = dict(changes)
    if "role" in wanted:
        check_role(wanted["role"])
    if "phone" in wanted:
        wanted["phone"] = normalize_phone(wanted["phone"])
    if "name" in wanted:
        wanted["name"] = (wanted["name"] or "").strip()
    if "active" in wanted:
        wanted["active"] = bool(wanted["active"])
    with transaction() as session:
        leaves_admins = wanted.get("role", "admin") != "admin" or wanted.get("active") is False
        if leaves_admins:
            lock_active_admins(session)
        user = _locked_user(session, user_uuid)
        was_active = user.active
        if leaves_admins and user.active and user.role == "admin":
            _refuse_if_last_admin(session, user)
        changed = [f for f in UPDATABLE_FIELDS if f in wanted and getattr(user, f) != wanted[f]]
        for field_name in changed:
            setattr(user, field_name, wanted[field_name])
        if changed:
            session.flush()  # updated_at
            emit("user.updated", {**_event(user), "changed": changed})
        if was_active and not user.active:
            emit("user.deactivated", _event(user))
    return user


def deactivate_user(user_uuid: uuid.UUID) -> User:
    """Deactivate a user (their tokens stop working); a no-op for an inactive user."""
    return update_user(user_uuid, {"active": False})


def set_password(user: User, password: str) -> None:
    """Set a new password (policy checked) inside the caller's transaction."""
    check_password(password, user.email)
    user.password_hash = passwords().hash(password)


def reset_password(email: str, password: str) -> tuple[User, bool]:
    """Set a user's password outside the activation flow (``lapak users set-password``).

    Returns the user and whether this activated them (an imported user had no password).
    Unused activation tokens stop working; ``user.password_set`` lets the auth module end the
    user's sessions, and ``user.activated`` follows for a first password.
    """
    user = find_by_email(email)
    if user is None:
        raise UserNotFound(f"no user {email.strip()}")
    check_password(password, user.email)
    password_hash = passwords().hash(password)  # slow on purpose: outside the transaction
    with transaction() as session:
        user = _locked_user(session, user.uuid)
        activated = not user.has_password
        user.password_hash = password_hash
        now = utcnow()
        for token in session.scalars(
            select(ActivationToken).where(
                ActivationToken.user_id == user.id, ActivationToken.used_at.is_(None)
            )
        ):
            token.expires_at = min(token.expires_at, now)
        emit("user.password_set", _event(user))
        if activated:
            emit("user.activated", _event(user))
    return user, activated


def issue_activation_token(user_uuid: uuid.UUID) -> tuple[str, datetime]:
    """A new one-time token for an active user without a password, and when it expires.

    Older unused tokens of the user stop working. Only the token's SHA-256 is stored; the
    token itself exists only in the return value.
    """
    with transaction() as session:
        user = _locked_user(session, user_uuid)  # concurrent issues end with one live token
        if user.has_password:
            raise AlreadyActivated(f"{user.email} already has a password")
        if not user.active:
            raise UserInactive(f"{user.email} is deactivated; reactivate the user first")
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


def _locked_user(session: OrmSession, user_uuid: uuid.UUID) -> User:
    # populate_existing: the row as locked, not a copy loaded earlier in this session (the
    # authenticator may have loaded this very user for the same request).
    user = session.scalars(
        select(User)
        .where(User.uuid == user_uuid)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if user is None:
        raise UserNotFound(f"no user {user_uuid}")
    return user


def lock_active_admins(session: OrmSession, *, lock: bool = True) -> dict[str, int]:
    """The active admins (email key -> id), locked in one statement, in id order.

    Two concurrent demotions of the last two admins (by the API or an import) serialise here
    and cannot deadlock, so the second sees only one left.
    """
    statement = (
        select(User.email_key, User.id)
        .where(User.role == "admin", User.active.is_(True))
        .order_by(User.id)
    )
    if lock:
        statement = statement.with_for_update()
    return {email_key: admin_id for email_key, admin_id in session.execute(statement)}


def _refuse_if_last_admin(session: OrmSession, user: User) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == "admin", User.active.is_(True), User.id != user.id)
    )
    if not others:
        raise LastAdmin(
            f"{user.email} is the last active admin; make another user admin first",
            errors={"role": ["the last active admin must stay an active admin"]},
        )


def _email_taken(display: str) -> EmailTaken:
    return EmailTaken(f"{display} is already registered", errors={"email": ["is taken"]})


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _event(user: User) -> dict[str, Any]:
    return {"user_id": user.id, "uuid": user.uuid, "role": user.role, "active": user.active}
