"""``Idempotency-Key``: a retried request gets the first answer instead of doing the work twice.

The key row is inserted at the start of the transaction that does the work and holds the first
answer at its end, so the key and the work commit (or roll back) together. A concurrent request
with the same key waits on the key's unique index until the first one ends; then it either finds
the committed answer and replays it, or, if the first rolled back, does the work itself. Exactly
one piece of work per key, whatever the timing. Keys are per user and endpoint (``scope``) and
kept ``LAPAK_IDEMPOTENCY_KEEP_HOURS``; the same key with another body is refused (422).

The marketplace's, payment's and paylink's services write it the same way (the seller's and
wallet's still call the steps one by one): ``key = begin(idempotent)`` first thing in its
transaction, ``if key.replay: return`` the first answer, and ``key.complete(status, body)`` once
the answer is known (before the ledger's posting, which takes its locks last).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, get_database, utcnow
from app.errors import Invalid

from .config import marketplace_settings
from .models import IdempotencyKey

MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(Invalid):
    code = "idempotency-key-reused"
    title = "This Idempotency-Key was used with another request"


@dataclass(frozen=True)
class IdempotentRequest:
    user_id: int
    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Replay:
    """The first answer given to this key."""

    status_code: int
    body: dict[str, Any]


def request_for(user_id: int, scope: str, key: str | None, body: Any) -> IdempotentRequest | None:
    """The idempotent request for a header value, or None without a key."""
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Invalid(
            "the Idempotency-Key header is not valid",
            errors={"Idempotency-Key": f"1 to {MAX_KEY_LENGTH} printable characters"},
        )
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return IdempotentRequest(user_id, scope, key, hashlib.sha256(canonical.encode()).hexdigest())


def claim(request: IdempotentRequest, keep_hours: int) -> int | Replay:
    """In the caller's transaction: the new key row's id, or the earlier answer to replay."""
    session = Session()
    where = (
        IdempotencyKey.user_id == request.user_id,
        IdempotencyKey.scope == request.scope,
        IdempotencyKey.key == request.key,
    )
    # An expired key is forgotten: its request may be made again.
    session.execute(
        delete(IdempotencyKey).where(
            *where, IdempotencyKey.created_at < utcnow() - timedelta(hours=keep_hours)
        )
    )
    dialect = get_database().primary.dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    claimed = session.execute(
        insert(IdempotencyKey)
        .values(
            user_id=request.user_id,
            scope=request.scope,
            key=request.key,
            fingerprint=request.fingerprint,
            status_code=0,
            response={},
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["user_id", "scope", "key"])
        .returning(IdempotencyKey.id)
    ).scalar()
    if claimed is not None:
        return claimed
    earlier = session.execute(
        select(IdempotencyKey.fingerprint, IdempotencyKey.status_code, IdempotencyKey.response)
        .where(*where)
        .execution_options(populate_existing=True)
    ).one()
    if earlier.fingerprint != request.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new request"
        )
    return Replay(earlier.status_code, earlier.response)


def complete(claim_id: int, status_code: int, body: dict[str, Any]) -> None:
    """Store the answer on the claimed key, in the same transaction as the work."""
    Session().execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim_id)
        .values(status_code=status_code, response=body)
    )


@dataclass(frozen=True)
class Claim:
    """A request's ``Idempotency-Key`` as claimed in the caller's transaction (:func:`begin`):
    the first answer to replay, or the key to store this answer on (none sent: nothing)."""

    claim_id: int | None = None
    replay: Replay | None = None

    @property
    def keyed(self) -> bool:
        """A key was claimed: the answer is stored on it (render it inside the transaction)."""
        return self.claim_id is not None

    def complete(self, status_code: int, body: dict[str, Any]) -> None:
        """Store the answer on the claimed key (nothing without a key), in the caller's
        transaction: the key commits (or rolls back) with the work."""
        if self.claim_id is not None:
            complete(self.claim_id, status_code, body)


#: What a request without an ``Idempotency-Key`` claims.
NO_KEY = Claim()


def begin(request: IdempotentRequest | None) -> Claim:
    """Claim ``request``'s key in the caller's transaction, first thing in it: a :class:`Claim`
    to complete once the answer is known, or one carrying the first answer to replay (its
    ``replay``: return that and do nothing)."""
    if request is None:
        return NO_KEY
    claimed = claim(request, marketplace_settings().idempotency_keep_hours)
    return Claim(replay=claimed) if isinstance(claimed, Replay) else Claim(claim_id=claimed)


def forget_expired(keep_hours: int) -> int:
    """Job: delete keys older than the keep time; returns how many."""
    result = Session().execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.created_at < utcnow() - timedelta(hours=keep_hours)
        )
    )
    return result.rowcount or 0
