"""The hash chain: each transaction's hash covers its canonical content and the previous hash.

As Odoo's inalterable hash does, the recipe is versioned: a stored hash reads
``$<version>$<hex>``, and a verifier recomputes each transaction with the version it was made
with. Version 1's content is a JSON object with sorted keys and no spaces, money as decimal
strings with the currency's two places (never a float), the time in ISO 8601 UTC with
microseconds, and the legs in entry order as ``[account code, currency, debit, credit]``; every
column of the transaction but its place in the chain and the hash itself (the transaction's
public id, the request fingerprint that decides replays, what it reverses) is in it.
Changing anything in a transaction, its entries, its order in the chain or a transaction
before it changes every hash from there on.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

VERSION = 1
GENESIS = "0" * 64
CENT = Decimal("0.01")


def money(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


def canonical(
    *,
    transaction_uuid: uuid.UUID,
    number: str,
    operation: str,
    nonce: str,
    reference: str | None,
    memo: str | None,
    actor_id: int | None,
    reverses_id: int | None,
    fingerprint: str,
    created_at: datetime,
    legs: Iterable[tuple[str, str, Decimal, Decimal]],
) -> str:
    content = {
        "actor": actor_id,
        "created_at": created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "fingerprint": fingerprint,
        "legs": [
            [code, currency, money(debit), money(credit)] for code, currency, debit, credit in legs
        ],
        "memo": memo,
        "nonce": nonce,
        "number": number,
        "operation": operation,
        "reference": reference,
        "reverses": reverses_id,
        "uuid": str(transaction_uuid),
    }
    return json.dumps(content, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def link(previous_hash: str, content: str, version: int = VERSION) -> str:
    """The hash of a transaction whose canonical content is ``content``."""
    if version != 1:
        raise ValueError(f"unknown hash version {version}")
    digest = hashlib.sha256((previous_hash + content).encode("utf-8")).hexdigest()
    return f"${version}${digest}"


def version_of(stored_hash: str) -> int:
    """The recipe version a stored hash was made with (0 when it is not one of ours)."""
    parts = stored_hash.split("$")
    if len(parts) == 3 and parts[0] == "" and parts[1].isdigit():
        return int(parts[1])
    return 0
