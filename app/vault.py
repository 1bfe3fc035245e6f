"""The vault: secrets at rest sealed with authenticated encryption, and their key rotation.

A secret Lapak must read back (an API-key secret, a webhook secret, a payout account number, a
provider token) is stored as a Fernet token (AES-128-CBC + HMAC-SHA256, ``cryptography``'s
:class:`~cryptography.fernet.MultiFernet`): a changed byte is refused, never decrypted to
garbage. The keys come from ``LAPAK_VAULT_KEYS``, newest first: the newest seals, any of them
opens, so a new key is introduced by prepending it and ``lapak vault rotate`` re-seals every
stored value under it before the old one is dropped.

Secrets that are only compared, never read back (a card fingerprint for duplicate detection),
are not sealed but :func:`fingerprint`-ed: an HMAC keyed by a pepper derived from the app's
secret key, never a plain hash that a dictionary of card numbers would reverse.

No message here (a :class:`VaultError`, a log line, a repr) carries a plaintext, a token or a
key: they name at most a table, a column and a primary key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import Column, Table, Text, and_, inspect, literal, or_, select, type_coerce, update
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

#: Rows re-sealed per transaction by :func:`rotate`: an interrupted run keeps what it committed.
ROTATE_BATCH_SIZE = 500


class VaultError(Exception):
    """A value could not be sealed or opened. The message never contains the value or token."""


class Vault:
    """The app's sealing keys (``app.extensions["lapak.vault"]``); build it from the settings."""

    def __init__(self, keys: Sequence[str], secret_key: str) -> None:
        if not keys:
            raise VaultError("the vault needs at least one key")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # Settings checked the keys already; never echo one (it may be nearly right).
                raise VaultError(f"vault key {position} is not a Fernet key") from None
        self._newest = fernets[0]
        self._all = MultiFernet(fernets)
        self._secret = secret_key.encode()
        self._peppers: dict[str, bytes] = {}
        self.key_count = len(fernets)

    def __repr__(self) -> str:
        return f"<Vault with {self.key_count} key{'s' if self.key_count != 1 else ''}>"

    def seal(self, plaintext: str) -> str:
        """``plaintext`` as a Fernet token (text) under the newest key."""
        if not isinstance(plaintext, str):
            raise VaultError(f"only text can be sealed, not {type(plaintext).__name__}")
        return self._all.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def unseal(self, token: str) -> str:
        """The plaintext of ``token``, opened with whichever configured key sealed it.

        Raises :class:`VaultError` when no configured key opens it: it was changed, or sealed
        under a key no longer in ``LAPAK_VAULT_KEYS``.
        """
        try:
            return self._all.decrypt(_token_bytes(token)).decode("utf-8")
        except (InvalidToken, UnicodeDecodeError):
            raise VaultError(_UNREADABLE) from None

    def is_current(self, token: str) -> bool:
        """True when ``token`` was sealed under the newest key (it opens with that key alone)."""
        try:
            self._newest.decrypt(_token_bytes(token))
        except (InvalidToken, VaultError):
            return False
        return True

    def reseal(self, token: str) -> str:
        """``token``'s plaintext sealed under the newest key (its original timestamp kept)."""
        try:
            return self._all.rotate(_token_bytes(token)).decode("ascii")
        except InvalidToken:
            raise VaultError(_UNREADABLE) from None

    def fingerprint(self, value: str, purpose: str) -> str:
        """Hex HMAC-SHA256 of ``value`` under a pepper for ``purpose`` (see :func:`fingerprint`)."""
        if not isinstance(value, str):
            raise VaultError(f"only text can be fingerprinted, not {type(value).__name__}")
        if not purpose:
            raise VaultError("a fingerprint needs a purpose, such as 'payment.card'")
        pepper = self._peppers.get(purpose)
        if pepper is None:
            # One pepper per purpose: equal values of two purposes give unrelated fingerprints.
            label = f"lapak.vault.fingerprint:{purpose}".encode()
            pepper = hmac.new(self._secret, label, hashlib.sha256).digest()
            self._peppers[purpose] = pepper
        return hmac.new(pepper, value.encode("utf-8"), hashlib.sha256).hexdigest()


_UNREADABLE = (
    "a sealed value could not be opened with any configured vault key "
    "(changed, or sealed under a key no longer in LAPAK_VAULT_KEYS)"
)


def _token_bytes(token: str) -> bytes:
    if not isinstance(token, str):
        raise VaultError(f"a sealed value is text, not {type(token).__name__}")
    try:
        return token.encode("ascii")
    except UnicodeEncodeError:
        raise VaultError(_UNREADABLE) from None


def get_vault() -> Vault:
    """The current app's vault (needs an application context)."""
    try:
        return current_app.extensions["lapak.vault"]
    except RuntimeError:
        raise VaultError("the vault needs an application context (app.app_context())") from None


def fingerprint(value: str, purpose: str) -> str:
    """Hex HMAC-SHA256 of ``value``, keyed with a pepper derived from the app's secret key and
    ``purpose`` (e.g. ``"payment.card"``): equal values give equal fingerprints, so duplicates
    are found without storing the value or a plain hash of it.

    The pepper follows ``LAPAK_SECRET_KEY``: changing that key changes every fingerprint.
    """
    return get_vault().fingerprint(value, purpose)


def masked(last4: str) -> str:
    """How a card or account is shown: ``"•••• 1234"`` (never more than its last four)."""
    return f"•••• {last4[-4:]}"


class Unsealed(str):
    """A secret the vault opened: the value itself, whose ``repr`` never shows it.

    Whatever prints values by their ``repr`` (SQLAlchemy's row echo, ``Row %r`` at its DEBUG
    level; a traceback's locals; a debugger) writes the placeholder instead.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'[unsealed]'"


class Sealed(TypeDecorator[str]):
    """A column holding a secret: ``str`` in Python, a Fernet token in the database.

    Values are sealed and opened through the current app's vault (read as :class:`Unsealed`,
    whose ``repr`` hides them); ``None`` stays ``None``.
    Tokens differ on every write, so a sealed column cannot be compared, indexed or searched
    (store a :func:`fingerprint` beside it for that). ``lapak vault rotate`` re-seals every
    Sealed column of every loaded model under the newest key.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return get_vault().seal(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return Unsealed(get_vault().unseal(value))

    def __repr__(self) -> str:
        return "Sealed()"


# --- rotation ------------------------------------------------------------------------------


@dataclass
class ColumnRotation:
    """What :func:`rotate` did to one Sealed column."""

    table: str
    column: str
    resealed: int = 0
    current: int = 0
    #: Primary keys (as ``{name: value}``) of the values no configured key opens.
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    #: The table is in the models but not in the database (not migrated): nothing to do.
    missing: bool = False


def sealed_columns(tables: Sequence[Table]) -> list[tuple[Table, Column[Any]]]:
    """Every column of ``tables`` whose type is :class:`Sealed`, by table then column name."""
    found = [
        (table, column)
        for table in tables
        for column in table.columns
        if isinstance(column.type, Sealed)
    ]
    return sorted(found, key=lambda pair: (pair[0].fullname, pair[1].name))


def rotate(
    engine: Engine,
    vault: Vault,
    tables: Sequence[Table],
    batch_size: int = ROTATE_BATCH_SIZE,
    on_column: Callable[[ColumnRotation], None] | None = None,
) -> list[ColumnRotation]:
    """Re-seal every value of every Sealed column of ``tables`` that is not under the newest key.

    Rows are read in primary-key order, ``batch_size`` at a time, each batch in its own
    transaction: an interrupted run keeps the batches it committed, and a new run finds them
    current and re-seals only the rest (a run after a complete one re-seals nothing). Each
    value is written back only if it is still the token read (compare and set), so a value the
    app changed meanwhile is left as the app wrote it. A value no configured key opens is left
    as it is and reported by primary key. Works on PostgreSQL and SQLite.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    existing = set(inspect(engine).get_table_names())
    results = []
    for table, column in sealed_columns(tables):
        outcome = ColumnRotation(table.name, column.name)
        if table.name not in existing:
            outcome.missing = True
        else:
            _rotate_column(engine, vault, table, column, batch_size, outcome)
        results.append(outcome)
        if on_column is not None:
            on_column(outcome)
    return results


def _rotate_column(
    engine: Engine,
    vault: Vault,
    table: Table,
    column: Column[Any],
    batch_size: int,
    outcome: ColumnRotation,
) -> None:
    keys = list(table.primary_key.columns)
    if not keys:
        raise VaultError(f"{table.name} has no primary key: its Sealed column cannot be rotated")
    # The column read, compared and written as plain text: its tokens pass untouched, nothing
    # is opened that does not need to be and nothing is sealed twice.
    token_column = type_coerce(column, Text)
    last: tuple[Any, ...] | None = None
    while True:
        query = (
            select(*keys, token_column)
            .where(token_column.is_not(None))
            .order_by(*keys)
            .limit(batch_size)
        )
        if last is not None:
            query = query.where(_after_key(keys, last))
        # lapak_write: on SQLite the batch takes the write lock up front (BEGIN IMMEDIATE), so
        # a server writing meanwhile makes it wait instead of failing (see app.db).
        with engine.connect() as connection, connection.execution_options(lapak_write=True).begin():
            rows = connection.execute(query).all()
            for row in rows:
                key_values, token = tuple(row[: len(keys)]), row[-1]
                if vault.is_current(token):
                    outcome.current += 1
                    continue
                try:
                    fresh = vault.reseal(token)
                except VaultError:
                    names = [k.name for k in keys]
                    outcome.unreadable.append(dict(zip(names, key_values, strict=True)))
                    continue
                written = connection.execute(
                    update(table)
                    .where(*(k == v for k, v in zip(keys, key_values, strict=True)))
                    .where(token_column == token)
                    .values({column.name: literal(fresh, Text)})
                )
                if written.rowcount == 1:
                    outcome.resealed += 1
                else:  # the app wrote it meanwhile, under the newest key it seals with
                    outcome.current += 1
        if len(rows) < batch_size:
            return
        last = tuple(rows[-1][: len(keys)])


def _after_key(keys: list[Column[Any]], last: tuple[Any, ...]) -> Any:
    """Rows after ``last`` in primary-key order (a composite key compared column by column)."""
    clauses = []
    for index, key in enumerate(keys):
        equal = [k == v for k, v in zip(keys[:index], last[:index], strict=True)]
        clauses.append(and_(*equal, key > last[index]))
    return or_(*clauses)
