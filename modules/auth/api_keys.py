"""API keys: create, list, revoke and roll them (:mod:`.signed_requests` checks their use).

A key belongs to a seller or an admin (customers and staff act in person only: a customer's
orders are placed by the customer, and staff actions are audited to a person). Its principal is
its owner (role from the owner, read with the key's state: a deactivated owner's keys stop at
once, see :mod:`.key_cache`) with the key's public id and scopes; keys are not sessions, so the
single-session rule does not touch them and logging in does not end them. The secret is shown
once, in the answer that creates or rolls the key, and never logged (audit lines name the public
id only).
"""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from app.db import Session, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.http import Page, keyset_page
from app.security import Principal, scope_catalogue
from app.vault import fingerprint
from modules.user.models import User

from .key_cache import forget_after_commit
from .models import SIGNATURE_V1, ApiKey

log = logging.getLogger("lapak.auth")

#: The roles whose users may hold API keys.
KEY_ROLES = ("seller", "admin")
KEY_PREFIX, SECRET_PREFIX = "lpk_", "lsk_"
#: Live (neither revoked nor expired) keys one user may hold.
MAX_LIVE_KEYS = 25


class ApiKeyNotFound(NotFound):
    code = "api-key-not-found"
    title = "No such API key"


class ApiKeyNotLive(Conflict):
    code = "api-key-not-live"
    title = "The API key is revoked or expired"


class ApiKeyRolledSince(Conflict):
    code = "api-key-rolled-since"
    title = "The API key was rolled since"


class ApiKeyFormSent(Conflict):
    code = "api-key-form-sent"
    title = "This form created a key already"


# --- the catalogue of scopes -----------------------------------------------------------------


def allowed_scopes(role: str) -> frozenset[str]:
    """The scopes a key of an owner with ``role`` may hold."""
    return frozenset(name for name, scope in scope_catalogue().items() if role in scope.roles)


def _check_scopes(scopes: Iterable[str], role: str) -> list[str]:
    wanted = sorted(set(scopes))
    catalogue = scope_catalogue()
    unknown = [s for s in wanted if s not in catalogue]
    if unknown:
        raise Invalid(
            errors={"scopes": [f"unknown scope(s) {', '.join(unknown)}; "
                               f"known: {', '.join(sorted(catalogue))}"]}
        )  # fmt: skip
    refused = [s for s in wanted if role not in catalogue[s].roles]
    if refused:
        raise Invalid(errors={"scopes": [f"a {role}'s key cannot have {', '.join(refused)}"]})
    return wanted


# --- managing keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    """A key and its secret, as answered once by create and roll (reads as the key, but its
    ``secret`` is the plaintext to show)."""

    key: ApiKey
    secret: str = field(repr=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.key, name)


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _new_key_id(user_id: int, form_nonce: str | None) -> str:
    """A random key id; with a form's nonce, the one that nonce gives this user (a keyed hash,
    as unguessable as a random one without the app's secret key): sending the form again finds
    the key it made instead of making a second one, with no table of nonces to keep."""
    if form_nonce is None:
        return KEY_PREFIX + secrets.token_urlsafe(16)
    digest = fingerprint(f"{user_id}:{form_nonce}", "auth.api-key-form")
    return KEY_PREFIX + base64.urlsafe_b64encode(bytes.fromhex(digest[:32])).decode().rstrip("=")


def key_version(key: ApiKey) -> str:
    """Which secret ``key`` has: a roll form sends it back, so a roll of a page opened before
    another roll is refused (see :func:`roll_key`)."""
    return key.rolled_at.isoformat() if key.rolled_at is not None else "never"


def create_key(
    owner: Principal,
    *,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
    signature_version: str = SIGNATURE_V1,
    form_nonce: str | None = None,
) -> IssuedKey:
    """A new key of ``owner`` (a seller or an admin acting in person). ``form_nonce`` (the web
    form's): a second request with it creates nothing and is refused (:class:`ApiKeyFormSent`,
    naming the key): the secret was answered once, to the first."""
    wanted = _check_scopes(scopes, owner.role)
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid(errors={"expires_at": ["the expiry must be in the future"]})
    secret = _new_secret()
    with transaction() as session:
        user = session.scalars(select(User).where(User.id == owner.user_id).with_for_update()).one()
        key_id = _new_key_id(user.id, form_nonce)
        if form_nonce is not None:
            made = session.scalars(select(ApiKey).where(ApiKey.key_id == key_id)).one_or_none()
            if made is not None:
                raise ApiKeyFormSent(
                    f"this form was sent already and created the key “{made.name}” "
                    f"({made.key_id}); its secret was shown once, in the answer to the first",
                    key_id=made.key_id,
                )
        now = utcnow()
        live = session.scalars(
            select(ApiKey.id).where(
                ApiKey.user_id == user.id,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        ).all()
        if len(live) >= MAX_LIVE_KEYS:
            raise Invalid(
                errors={"_schema": [f"at most {MAX_LIVE_KEYS} live keys; revoke one first"]}
            )
        key = ApiKey(
            key_id=key_id,
            user_id=user.id,
            name=name,
            scopes=" ".join(wanted),
            signature_version=signature_version,
            secret=secret,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        session.add(key)
        session.flush()
    audit_key("created", key, owner)
    return IssuedKey(key, secret)


def list_keys(
    viewer: Principal, owner: uuid.UUID | None, *, limit: int, cursor: str | None
) -> Page:
    """The viewer's keys, newest first; an admin may name another ``owner``."""
    statement = select(ApiKey)
    if owner is not None and viewer.has_role("admin"):
        statement = statement.join(User, User.id == ApiKey.user_id).where(User.uuid == owner)
    elif owner is not None and owner != viewer.user_uuid:
        return Page([], None)
    else:
        statement = statement.where(ApiKey.user_id == viewer.user_id)
    return keyset_page(statement, [ApiKey.id], limit=limit, cursor=cursor, descending=True)


def get_key(viewer: Principal, key_id: str) -> ApiKey:
    """The key with ``key_id`` if the viewer owns it or is an admin (else 404)."""
    key = Session().scalars(select(ApiKey).where(ApiKey.key_id == key_id)).one_or_none()
    if key is None or (key.user_id != viewer.user_id and not viewer.has_role("admin")):
        raise ApiKeyNotFound(f"no API key {key_id} of yours")
    return key


def _locked(session: Any, viewer: Principal, key_id: str, *, owner_only: bool) -> ApiKey:
    key = session.scalars(
        select(ApiKey)
        .where(ApiKey.key_id == key_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    mine = key is not None and key.user_id == viewer.user_id
    if key is None or not (mine or (not owner_only and viewer.has_role("admin"))):
        raise ApiKeyNotFound(f"no API key {key_id} of yours")
    return key


def revoke_key(viewer: Principal, key_id: str) -> ApiKey:
    """Revoke the key (its owner or an admin); revoking a revoked key changes nothing."""
    with transaction() as session:
        key = _locked(session, viewer, key_id, owner_only=False)
        if key.revoked_at is not None:
            return key
        key.revoked_at = utcnow()
        # Both secrets end now: a grace period does not outlive the key.
        key.previous_secret = None
        key.previous_secret_expires_at = None
        forget_after_commit([key.key_id])
    audit_key("revoked", key, viewer)
    return key


def roll_key(
    viewer: Principal,
    key_id: str,
    grace_hours: int,
    max_grace: timedelta,
    expected_version: str | None = None,
) -> IssuedKey:
    """A new secret for the owner's live key; the old one verifies for ``grace_hours`` more.

    A secret still in its grace period from an earlier roll ends now: at most two verify. With
    ``expected_version`` (the :func:`key_version` a form was shown), a key rolled since is not
    rolled again (:class:`ApiKeyRolledSince`): a form sent twice would otherwise end, at once,
    the secret in use in favour of one nobody saw.
    """
    max_hours = int(max_grace.total_seconds() // 3600)
    # Checked before any arithmetic: a huge number would overflow a timedelta (a 500).
    if not 0 <= grace_hours <= max_hours:
        # The service's rule, not the schema's: the maximum is a setting the document cannot state.
        raise Invalid(
            f"a roll's grace is at most {max_hours} hours here (LAPAK_API_KEY_MAX_GRACE_HOURS)",
            errors={"grace_hours": [f"between 0 and {max_hours} hours"]},
        )
    grace = timedelta(hours=grace_hours)
    secret = _new_secret()
    with transaction() as session:
        key = _locked(session, viewer, key_id, owner_only=True)
        if expected_version is not None and expected_version != key_version(key):
            raise ApiKeyRolledSince(
                "rolled since this page was opened; the secret shown then is still in use"
            )
        now = utcnow()
        if key.revoked_at is not None or (key.expires_at is not None and now >= key.expires_at):
            raise ApiKeyNotLive("a revoked or expired key cannot be rolled; create a new one")
        if grace > timedelta(0):
            key.previous_secret = key.secret
            key.previous_secret_expires_at = now + grace
        else:
            key.previous_secret = key.previous_secret_expires_at = None
        key.secret = secret
        key.rolled_at = now
        forget_after_commit([key.key_id])
    audit_key("rolled", key, viewer, grace_seconds=int(grace.total_seconds()))
    return IssuedKey(key, secret)


def audit_key(action: str, key: ApiKey, by: Principal, **fields: Any) -> None:
    """One log line per key change: the public id only, never the secret."""
    log.info(
        "auth.api_key %s",
        action,
        extra={
            "event": "auth.api_key",
            "outcome": action,
            "key": key.key_id,
            "by": str(by.user_uuid),
            **fields,
        },
    )
