"""The user import engine: validate a chunk of rows, write it set-wise, record progress.

Each chunk is one transaction that locks the job row, checks that the chunk is the next one
(``next_row``), writes its users with multi-row ``INSERT ... ON CONFLICT`` (and ``UPDATE``s for
upserts, rows locked in email order so concurrent imports cannot deadlock each other), stores
its row errors and advances the counts. Killed anywhere, the job resumes after the last
committed chunk; two runners of one job cannot both apply a chunk.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as OrmSession

from app.config import Settings, module_int
from app.db import Session, after_commit, transaction, utcnow
from app.errors import Invalid
from app.events import emit

from .csvfile import FileShape, read_chunks, read_header
from .models import ROLES, ImportJob, ImportRowError, User
from .phones import default_region, normalize_phone
from .seen import SeenEmails
from .services import lock_active_admins, normalize_email

log = logging.getLogger(__name__)
_PASSWORD_HASH = re.compile(
    r"^(\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+"
    r"|\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53})$"
)
MAX_NAME = 200
#: user_account.password_hash is VARCHAR(255): a longer "hash" would fail the whole chunk.
MAX_HASH = 255
HASH_REQUIRED = "must be an argon2 or bcrypt hash; plain passwords are refused"
MAX_VALUE_SHOWN = 500
DEADLOCK_RETRIES = 5
#: Row error codes (``code`` of each row error), one per kind of problem.
INVALID = "invalid"
REQUIRED = "required"
TOO_MANY_CELLS = "too-many-cells"
DUPLICATE = "duplicate"
EMAIL_TAKEN = "email-taken"
CONCURRENT_CHANGE = "concurrent-change"
LAST_ADMIN = "last-admin"
OWN_ROLE = "own-role"


class ImportFailed(Exception):
    """The file as a whole cannot be imported (the job ends ``failed`` with this message)."""


@dataclass(frozen=True)
class ImportSettings:
    directory: Path
    max_bytes: int
    max_rows: int
    chunk_rows: int
    stale_after: timedelta
    max_attempts: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImportSettings:
        env = settings.module_env
        return cls(
            directory=Path(env.get("import_dir") or settings.instance_path / "imports"),
            max_bytes=module_int(env, "import_max_bytes", 200 * 1024 * 1024),
            max_rows=module_int(env, "import_max_rows", 2_000_000),
            chunk_rows=module_int(env, "import_chunk_rows", 10_000),
            stale_after=timedelta(seconds=module_int(env, "import_stale_seconds", 120)),
            max_attempts=module_int(env, "import_max_attempts", 3),
        )


def import_settings() -> ImportSettings:
    return current_app.extensions["user.imports"]


def install(app: Any, settings: Settings) -> None:
    app.extensions["user.imports"] = ImportSettings.from_settings(settings)


# --- validation ------------------------------------------------------------------------------


@dataclass
class ChunkRows:
    """A validated chunk: rows to write and errors, by spreadsheet row number."""

    valid: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    failed_rows: set[int] = field(default_factory=set)
    non_blank: int = 0


def validate_chunk(
    start: int,
    records: Sequence[list[str]],
    shape: FileShape,
    default_role: str,
    seen: SeenEmails,
) -> ChunkRows:
    """Check and normalise each record; ``seen`` (the first row of each email) spans the file.

    The hot loop of an import: it reads cells by position and builds the row-as-uploaded
    mapping only for rows that need it (errors).
    """
    chunk = ChunkRows()
    header = shape.header
    width = len(header)
    absent = width  # the index of an always-empty padding cell
    position = {key: header.index(name) for key, name in shape.columns.items()}
    at_email, at_name, at_role, at_phone, at_hash = (
        position.get(key, absent) for key in ("email", "name", "role", "phone", "password_hash")
    )
    padding = [""] * (width + 1)
    region = default_region()
    for offset, cells in enumerate(records):
        if not "".join(cells).strip():
            continue
        chunk.non_blank += 1
        row = start + offset + 2
        problems: list[tuple[str | None, str | None, str, str]] = []
        if len(cells) > width:
            problems.append(
                (None, None, f"has {len(cells)} cells; the header has {width}", TOO_MANY_CELLS)
            )
            cells = cells[:width]
        padded = cells + padding[len(cells) :]
        email_text = padded[at_email].strip()
        email = email_key = None
        if not email_text:
            problems.append(("email", "", "email is required", REQUIRED))
        else:
            try:
                email, email_key = normalize_email(email_text)
            except Invalid:
                problems.append(("email", email_text, "is not a valid email address", INVALID))
        if email_key is not None:
            first = seen.first_row(email_key, row)
            if first != row:
                problems.append(("email", email_text, f"duplicates row {first}", DUPLICATE))
        role_text = padded[at_role].strip()
        role = role_text.lower() or None
        if role is not None and role not in ROLES:
            problems.append(("role", role_text, f"must be one of {', '.join(ROLES)}", INVALID))
        phone = None
        phone_text = padded[at_phone].strip()
        if phone_text:
            try:
                phone = normalize_phone(phone_text, region)
            except Invalid as error:
                message = error.errors["phone"][0]  # type: ignore[index]
                problems.append(("phone", phone_text, message, INVALID))
        password_hash = padded[at_hash].strip() or None
        if password_hash is not None and (
            len(password_hash) > MAX_HASH or not _PASSWORD_HASH.match(password_hash)
        ):
            problems.append(("password_hash", "", HASH_REQUIRED, INVALID))
        name = padded[at_name].strip()
        if len(name) > MAX_NAME:
            problems.append(("name", name, f"is longer than {MAX_NAME} characters", INVALID))
        if problems:
            raw = list(cells)
            chunk.failed_rows.add(row)
            chunk.errors += [
                _error(row, column, value, message, raw, code)
                for column, value, message, code in problems
            ]
            continue
        chunk.valid.append(
            {
                "row": row,
                "email": email,
                "email_text": email_text,
                "email_key": email_key,
                "name": name or None,
                "phone": phone,
                "role": role,
                "password_hash": password_hash,
                "cells": cells,
            }
        )
    return chunk


def remember_emails(
    start: int, records: Sequence[list[str]], shape: FileShape, seen: SeenEmails
) -> None:
    """Rebuild ``seen`` for chunks an earlier run already committed (on resume)."""
    position = shape.header.index(shape.columns["email"])
    for offset, cells in enumerate(records):
        if position < len(cells) and cells[position].strip():
            try:
                _, key = normalize_email(cells[position])
            except Invalid:
                continue
            seen.first_row(key, start + offset + 2)


def _error(
    row: int, column: str | None, value: str | None, message: str, raw: list[str], code: str
) -> dict[str, Any]:
    shown = (
        value if value is None or len(value) <= MAX_VALUE_SHOWN else value[:MAX_VALUE_SHOWN] + "..."
    )
    return {
        "row_number": row,
        "column": column,
        "value": shown,
        "message": message,
        "raw": raw,
        "code": code,
    }


# --- writing ---------------------------------------------------------------------------------


@dataclass
class Written:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    #: Create mode: rows refused because a user with the email exists (upsert would update).
    existing: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def write_chunk(
    session: OrmSession, job: ImportJob, rows: list[dict[str, Any]], present: set[str]
) -> Written:
    """Create (and, for upserts, update) the chunk's users; dry runs only count."""
    refused: list[dict[str, Any]] = []
    if job.mode == "upsert" and rows:
        rows, refused = keep_an_admin(session, job, rows)
    if not rows:
        return Written(errors=refused)
    rows = sorted(rows, key=lambda r: r["email_key"])  # one lock order for every import
    if session.get_bind().dialect.name == "postgresql" and not job.dry_run:
        written = _write_postgresql(session, job, rows, present)
    else:
        written = _write_portable(session, job, rows, present)
    written.errors = refused + written.errors
    return written


def keep_an_admin(
    session: OrmSession, job: ImportJob, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows an upsert may apply, and errors for those that break the API's admin rules.

    A row may not demote the last active admin (``last-admin``: in file order, demotions
    apply while another active admin remains) nor change the role of the admin running the
    import (``own-role``). The active admins are locked first, by the same
    ``services.lock_active_admins`` as ``update_user``, and counted inside the chunk's
    transaction: two imports, or an import and an API demotion, serialise here and cannot
    together remove the last admin. Every upsert chunk takes this lock, so all of them take
    their locks in the same order (admins, then users by email) and cannot deadlock with a
    demotion.
    """
    admins = lock_active_admins(session, lock=not job.dry_run)
    remaining = len(admins)
    refused: dict[int, dict[str, Any]] = {}
    for r in rows:  # file order
        admin_id = admins.get(r["email_key"])
        if admin_id is None or r["role"] in (None, "admin"):
            continue
        if remaining <= 1:
            code, message = LAST_ADMIN, "would leave no active admin; make another user admin first"
        elif admin_id == job.created_by_id:
            code, message = OWN_ROLE, "is your own role: another admin must change it"
        else:
            remaining -= 1
            continue
        refused[r["row"]] = _error(r["row"], "role", r["role"], message, _as_uploaded(job, r), code)
    if not refused:
        return rows, []
    return [r for r in rows if r["row"] not in refused], list(refused.values())


_STAGE_COLUMNS = (
    "row_number",
    "email",
    "email_key",
    "name",
    "phone",
    "role",
    "password_hash",
)
_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS user_import_stage (
    row_number integer, email text, email_key text, name text, phone text,
    role text, password_hash text
) ON COMMIT DELETE ROWS
"""
_INSERT_FROM_STAGE = """
INSERT INTO user_account
    (uuid, email, email_key, name, phone, role, active, password_hash, created_at, updated_at)
SELECT gen_random_uuid(), s.email, s.email_key, coalesce(s.name, ''), s.phone,
       coalesce(s.role, %(default_role)s), true, s.password_hash, %(now)s, %(now)s
FROM user_import_stage s
ORDER BY s.email_key
ON CONFLICT (email_key) DO NOTHING
RETURNING email_key
"""
_LOCK_EXISTING = """
SELECT u.email_key FROM user_account u JOIN user_import_stage s ON s.email_key = u.email_key
ORDER BY u.email_key FOR UPDATE OF u
"""


def _write_postgresql(
    session: OrmSession, job: ImportJob, rows: list[dict[str, Any]], present: set[str]
) -> Written:
    """COPY the chunk into a temporary staging table, then set-based INSERT/UPDATE from it.

    Several times faster than multi-row VALUES: psycopg parses no giant statements and the
    server plans one statement per chunk (bench/user_import.py has the figures).
    """
    connection = session.connection().connection.driver_connection
    written = Written()
    now = utcnow()
    with connection.cursor() as cursor:
        cursor.execute(_CREATE_STAGE)
        with cursor.copy(
            f"COPY user_import_stage ({', '.join(_STAGE_COLUMNS)}) FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row(
                    (
                        r["row"],
                        r["email"],
                        r["email_key"],
                        r["name"],
                        r["phone"],
                        r["role"],
                        r["password_hash"],
                    )
                )
        if job.mode == "upsert":
            handled: set[str] = set()  # existing (updated or skipped) or inserted, all passes
            found_existing = 0
            for _ in range(2):  # once more if a concurrent import inserted one of ours
                cursor.execute(_LOCK_EXISTING)
                existing = {key for (key,) in cursor.fetchall()}
                found_existing += len(existing)
                changes = [
                    f"{column} = coalesce(s.{column}, u.{column})"
                    for column in ("name", "phone", "role")
                    if column in present
                ]
                if changes and existing:
                    differs = " OR ".join(
                        f"(s.{c} IS NOT NULL AND s.{c} IS DISTINCT FROM u.{c})"
                        for c in ("name", "phone", "role")
                        if c in present
                    )
                    # Only fixed column names are interpolated, never data.
                    cursor.execute(
                        f"UPDATE user_account u SET {', '.join(changes)}, updated_at = %(now)s "  # noqa: S608
                        f"FROM user_import_stage s WHERE u.email_key = s.email_key AND ({differs})",
                        {"now": now},
                    )
                    written.updated += cursor.rowcount
                cursor.execute(_INSERT_FROM_STAGE, {"default_role": job.default_role, "now": now})
                inserted = {key for (key,) in cursor.fetchall()}
                written.created += len(inserted)
                handled |= existing | inserted
                if len(handled) >= len(rows):
                    break
                cursor.execute(
                    "DELETE FROM user_import_stage WHERE email_key = ANY(%(done)s)",
                    {"done": list(existing | inserted)},
                )
            written.skipped = found_existing - written.updated
            written.errors += [
                _error(
                    r["row"],
                    "email",
                    r["email_text"],
                    "another import changed this user at the same time; import it again",
                    _as_uploaded(job, r),
                    CONCURRENT_CHANGE,
                )
                for r in rows
                if r["email_key"] not in handled
            ]
            return written
        cursor.execute(_INSERT_FROM_STAGE, {"default_role": job.default_role, "now": now})
        inserted = {key for (key,) in cursor.fetchall()}
    return _created_or_taken(job, rows, inserted)


def _created_or_taken(job: ImportJob, rows: list[dict[str, Any]], inserted: set[str]) -> Written:
    """Create mode's outcome: the rows whose email was not inserted already had a user."""
    taken = [
        _error(
            r["row"],
            "email",
            r["email_text"],
            "a user with this email already exists",
            _as_uploaded(job, r),
            EMAIL_TAKEN,
        )
        for r in rows
        if r["email_key"] not in inserted
    ]
    return Written(created=len(rows) - len(taken), existing=len(taken), errors=taken)


def _write_portable(
    session: OrmSession, job: ImportJob, rows: list[dict[str, Any]], present: set[str]
) -> Written:
    """Any database, and dry runs: row-wise SQL through SQLAlchemy (executemany)."""
    written = Written()
    keys = [r["email_key"] for r in rows]
    if job.mode == "create":
        if job.dry_run:
            existing = set(session.scalars(select(User.email_key).where(User.email_key.in_(keys))))
            inserted = set(keys) - existing
        else:
            inserted = _insert_new(session, rows, job.default_role)
        return _created_or_taken(job, rows, inserted)
    pending = rows
    for _ in range(2):  # a concurrent import may insert one of ours between our two steps
        existing = _lock_existing(session, [r["email_key"] for r in pending], job.dry_run)
        updates = []
        new = []
        for r in pending:
            current = existing.get(r["email_key"])
            if current is None:
                new.append(r)
                continue
            changes = {
                column: r[column]
                for column in ("name", "phone", "role")
                if column in present and r[column] is not None and r[column] != current[column]
            }
            if changes:
                updates.append({**current, **changes, "_id": current["id"]})
            else:
                written.skipped += 1
        if updates and not job.dry_run:
            session.execute(
                update(User)
                .where(User.id == bindparam("_id"))
                .values(
                    name=bindparam("name"),
                    phone=bindparam("phone"),
                    role=bindparam("role"),
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False),
                updates,
            )
        written.updated += len(updates)
        if job.dry_run:
            written.created += len(new)
            return written
        inserted = _insert_new(session, new, job.default_role)
        written.created += len(inserted)
        pending = [r for r in new if r["email_key"] not in inserted]
        if not pending:
            return written
    for r in pending:
        written.errors.append(
            _error(
                r["row"],
                "email",
                r["email_text"],
                "another import changed this user at the same time; import it again",
                _as_uploaded(job, r),
                CONCURRENT_CHANGE,
            )
        )
    return written


def _insert_new(session: OrmSession, rows: list[dict[str, Any]], default_role: str) -> set[str]:
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    values = [
        {
            "uuid": uuid.uuid4(),
            "email": r["email"],
            "email_key": r["email_key"],
            "name": r["name"] or "",
            "phone": r["phone"],
            "role": r["role"] or default_role,
            "active": True,
            "password_hash": r["password_hash"],
            "created_at": now,
            "updated_at": now,
        }
        for r in rows
    ]
    statement = (
        dialect_insert(User)
        .on_conflict_do_nothing(index_elements=["email_key"])
        .returning(User.email_key)
    )
    return set(session.scalars(statement, values))


def _lock_existing(
    session: OrmSession, keys: list[str], dry_run: bool
) -> dict[str, dict[str, Any]]:
    statement = (
        select(User.id, User.email_key, User.name, User.phone, User.role)
        .where(User.email_key.in_(keys))
        .order_by(User.email_key)
    )
    if not dry_run:
        statement = statement.with_for_update()
    return {row.email_key: dict(row._mapping) for row in session.execute(statement)}


# --- running a job ---------------------------------------------------------------------------


def process(job_id: int, on_progress: Callable[[ImportJob], None] | None = None) -> None:
    """Run (or resume) an import job; safe to call again after any crash."""
    settings = import_settings()
    job = _begin(job_id, settings)
    if job is None:
        return
    path = Path(job.file_path)
    try:
        shape = read_header(path, job.encoding, job.delimiter)
        if "email" not in shape.columns:
            raise ImportFailed(f"the file has no email column (found: {', '.join(shape.header)})")
        present = set(shape.columns)
        seen = SeenEmails(expected=job.total_rows)
        for start, records in read_chunks(path, shape, job.chunk_rows):
            end = start + len(records)
            if end <= job.next_row:
                remember_emails(start, records, shape, seen)
                continue
            chunk = validate_chunk(start, records, shape, job.default_role, seen)
            job = _commit_chunk(job.id, start, end, chunk, present)
            if job is None:
                return  # cancelled, or another runner took over
            if on_progress is not None:
                on_progress(job)
        _finish(job_id)
    except ImportFailed as failure:
        _end(job_id, "failed", str(failure))
    except Exception as error:
        log.exception("import %s stopped", job_id)
        _stopped(job_id, settings, f"{type(error).__name__}: {error}")


def _locked_job(session: OrmSession, job_id: int) -> ImportJob | None:
    return session.scalars(
        select(ImportJob)
        .where(ImportJob.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def _begin(job_id: int, settings: ImportSettings) -> ImportJob | None:
    with transaction() as session:
        job = _locked_job(session, job_id)
        now = utcnow()
        if job is None or job.finished:
            return None
        if (
            job.status == "running"
            and job.heartbeat_at
            and job.heartbeat_at > now - settings.stale_after
        ):
            return None  # another runner is alive
        if job.attempts >= settings.max_attempts:
            _close(
                job,
                "failed",
                f"gave up after {job.attempts} attempts: {job.error or 'the worker stopped'}",
            )
            return None
        job.attempts += 1
        job.status = "running"
        job.started_at = job.started_at or now
        job.heartbeat_at = now
    return job


def _commit_chunk(
    job_id: int, start: int, end: int, chunk: ChunkRows, present: set[str]
) -> ImportJob | None:
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with transaction() as session:
                job = _locked_job(session, job_id)
                if job is None or job.status != "running" or job.next_row > start:
                    return None
                if job.next_row < start:
                    raise RuntimeError(f"chunk at {start} but the job is at row {job.next_row}")
                written = write_chunk(session, job, chunk.valid, present)
                errors = chunk.errors + written.errors
                if errors:
                    session.execute(
                        insert(ImportRowError), [{**e, "job_id": job.id} for e in errors]
                    )
                failed = len(chunk.failed_rows) + len(written.errors)
                job.next_row = end
                job.processed_rows += chunk.non_blank
                job.created += written.created
                job.updated += written.updated
                job.skipped += written.skipped
                job.existing += written.existing
                job.failed += failed
                job.heartbeat_at = utcnow()
            return job
        except OperationalError as error:
            if "deadlock" not in str(error.orig).lower() or attempt == DEADLOCK_RETRIES - 1:
                raise
            Session().rollback()
    return None


def _finish(job_id: int) -> None:
    with transaction() as session:
        job = _locked_job(session, job_id)
        if job is None or job.status != "running":
            return
        _close(job, "succeeded_with_errors" if job.failed else "succeeded", None)


def _end(job_id: int, status: str, reason: str | None) -> None:
    with transaction() as session:
        job = _locked_job(session, job_id)
        if job is not None and not job.finished:
            _close(job, status, reason)


def _stopped(job_id: int, settings: ImportSettings, reason: str) -> None:
    """An unexpected error: try again (it resumes) until the attempts run out."""
    from .jobs import run_import

    with transaction() as session:
        job = _locked_job(session, job_id)
        if job is None or job.finished:
            return
        job.error = reason[:2000]
        if job.attempts >= settings.max_attempts:
            _close(job, "failed", f"gave up after {job.attempts} attempts: {reason}"[:2000])
            return
        job.status = "queued"
        job.heartbeat_at = None
        job.enqueued_at = utcnow()
        after_commit(functools.partial(_enqueue, run_import, str(job.uuid)))


def _enqueue(run: Callable[[str], None], job_uuid: str) -> None:
    from app.jobs import enqueue_later

    enqueue_later(run, job_uuid, queue="imports", recovered_by="the import watchdog")


def _close(job: ImportJob, status: str, reason: str | None) -> None:
    """Finish ``job`` in the caller's transaction: status, event, and the file goes."""
    job.status = status
    job.error = reason
    job.finished_at = utcnow()
    emit(
        "user.imported",
        {
            "import_id": job.uuid,
            "status": status,
            "dry_run": job.dry_run,
            "total_rows": job.total_rows,
            "created": job.created,
            "updated": job.updated,
            "skipped": job.skipped,
            "failed": job.failed,
        },
    )
    path = Path(job.file_path)
    after_commit(lambda: path.unlink(missing_ok=True))


def _as_uploaded(job: ImportJob, row: dict[str, Any]) -> list[str]:
    """The row as the admin uploaded it, cell by cell (for the errors CSV)."""
    return list(row["cells"])
