"""Import services: accept an upload, list and show jobs, page their errors, cancel.

The file is stored under the imports directory (``LAPAK_IMPORT_DIR``, default
``<instance>/imports``), never in Redis; it is checked whole (size, CSV text, encoding, row
count) before the job is created, so a refused file costs no job and no worker time.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, tuple_

from app.db import Session, after_commit, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound, PayloadTooLarge
from app.http import Page, keyset_page

from .csvfile import ENCODINGS, InvalidImportFile, inspect_file
from .importer import import_settings
from .models import IMPORT_MODES, ROLES, ImportJob, ImportRowError

_COPY_BLOCK = 1 << 20
FIRST_ERRORS = 10
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ImportNotFound(NotFound):
    code = "import-not-found"
    title = "No such import"


class ImportFinished(Conflict):
    code = "import-finished"
    title = "The import has already finished"


class ImportTooLarge(PayloadTooLarge):
    code = "payload-too-large"


@dataclass(frozen=True)
class ImportOptions:
    mode: str = "create"
    dry_run: bool = False
    default_role: str = "customer"
    encoding: str | None = None

    def check(self) -> None:
        problems = {}
        if self.mode not in IMPORT_MODES:
            problems["mode"] = [f"must be one of {', '.join(IMPORT_MODES)}"]
        if self.default_role not in ROLES:
            problems["default_role"] = [f"must be one of {', '.join(ROLES)}"]
        if self.encoding is not None and self.encoding not in ENCODINGS:
            problems["encoding"] = [f"must be one of {', '.join(ENCODINGS)}"]
        if problems:
            raise Invalid(errors=problems)


def create_import(
    upload: BinaryIO,
    filename: str,
    options: ImportOptions,
    created_by_id: int | None,
    *,
    queue: bool = True,
) -> ImportJob:
    """Store the upload, check it, create the job and (unless the caller runs it itself, as
    the CLI does) queue it on ``imports``."""
    from .jobs import run_import

    options.check()
    settings = import_settings()
    settings.directory.mkdir(parents=True, exist_ok=True)
    job_uuid = uuid.uuid4()
    path = settings.directory / f"{job_uuid}.csv"
    try:
        size = _store(upload, path, settings.max_bytes)
        shape = inspect_file(path, options.encoding, settings.max_rows)
    except (InvalidImportFile, ImportTooLarge):
        path.unlink(missing_ok=True)
        raise
    with transaction() as session:
        job = ImportJob(
            uuid=job_uuid,
            mode=options.mode,
            dry_run=options.dry_run,
            default_role=options.default_role,
            filename=Path(filename or "upload.csv").name[:255],
            file_path=str(path),
            size_bytes=size,
            encoding=shape.encoding,
            delimiter=shape.delimiter,
            chunk_rows=settings.chunk_rows,
            total_rows=shape.data_rows,
            header=shape.header,
            unknown_columns=shape.unknown_columns,
            created_by_id=created_by_id,
            enqueued_at=utcnow(),
        )
        session.add(job)
        session.flush()
        if queue:
            after_commit(lambda: _queue(run_import, str(job_uuid)))
    return job


def _queue(run: object, job_uuid: str) -> None:
    from app.jobs import enqueue_later

    # The job row is committed: if Redis is down, the watchdog queues it once Redis is back.
    enqueue_later(run, job_uuid, queue="imports", recovered_by="the import watchdog")  # type: ignore[arg-type]


def _store(upload: BinaryIO, path: Path, max_bytes: int) -> int:
    size = 0
    with path.open("wb") as target:
        while block := upload.read(_COPY_BLOCK):
            size += len(block)
            if size > max_bytes:
                raise ImportTooLarge(f"the file is larger than the limit of {max_bytes} bytes")
            target.write(block)
    return size


def get_import(job_uuid: uuid.UUID) -> ImportJob:
    job = Session().scalars(select(ImportJob).where(ImportJob.uuid == job_uuid)).one_or_none()
    if job is None:
        raise ImportNotFound(f"no import {job_uuid}")
    return job


def list_imports(*, limit: int, cursor: str | None) -> Page:
    return keyset_page(
        select(ImportJob), [ImportJob.id], limit=limit, cursor=cursor, descending=True
    )


def hint(job: ImportJob, upsert: str = "mode=upsert") -> str | None:
    """What the admin probably wants next: upsert, when a create import met existing users.

    ``upsert`` is how the caller's interface spells it (the CLI: ``--mode upsert``).
    """
    if job.mode != "create" or not job.existing:
        return None
    if job.existing == 1:
        return f"1 row names an existing user; upload again with {upsert} to update it"
    return f"{job.existing} rows name existing users; upload again with {upsert} to update them"


def first_errors(job: ImportJob) -> list[ImportRowError]:
    return list(
        Session().scalars(
            select(ImportRowError)
            .where(ImportRowError.job_id == job.id)
            .order_by(ImportRowError.row_number, ImportRowError.id)
            .limit(FIRST_ERRORS)
        )
    )


def import_errors(job_uuid: uuid.UUID, *, limit: int, cursor: str | None) -> Page:
    job = get_import(job_uuid)
    statement = select(ImportRowError).where(ImportRowError.job_id == job.id)
    return keyset_page(
        statement, [ImportRowError.row_number, ImportRowError.id], limit=limit, cursor=cursor
    )


def errors_csv(job_uuid: uuid.UUID) -> tuple[ImportJob, Iterator[str]]:
    """The failed rows as uploaded plus an ``error`` column, safe to open in a spreadsheet."""
    job = get_import(job_uuid)
    job_id, header = job.id, list(job.header)

    def rows() -> Iterator[tuple[int, str, dict[str, str]]]:
        # Keyset batches, not one server-side cursor: the download streams after the view
        # returned, and a cursor would not survive the end of the request's transaction.
        after = (0, 0)
        while True:
            batch = (
                Session()
                .execute(
                    select(
                        ImportRowError.row_number,
                        ImportRowError.id,
                        ImportRowError.message,
                        ImportRowError.raw,
                    )
                    .where(
                        ImportRowError.job_id == job_id,
                        tuple_(ImportRowError.row_number, ImportRowError.id) > after,
                    )
                    .order_by(ImportRowError.row_number, ImportRowError.id)
                    .limit(1000)
                )
                .all()
            )
            if not batch:
                return
            for row_number, _, message, raw in batch:
                yield row_number, message, raw
            after = (batch[-1][0], batch[-1][1])

    def lines() -> Iterator[str]:
        yield _csv_line([*header, "error"])
        current: tuple[int, dict[str, str], list[str]] | None = None
        for row_number, message, raw in rows():
            if current is not None and current[0] != row_number:
                yield _failed_row(header, *current[1:])
                current = None
            if current is None:
                current = (row_number, raw, [])
            current[2].append(message)
        if current is not None:
            yield _failed_row(header, *current[1:])

    return job, lines()


def _failed_row(header: list[str], raw: list[str] | dict[str, str], messages: list[str]) -> str:
    if isinstance(raw, dict):  # rows stored before raw became the list of cells
        cells = [raw.get(name, "") for name in header]
    else:
        cells = [*raw, *[""] * (len(header) - len(raw))][: len(header)]
    return _csv_line([*cells, "; ".join(messages)])


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_neutralise(c) for c in cells])
    return buffer.getvalue()


def _neutralise(cell: str) -> str:
    """Keep spreadsheets from running a cell as a formula (CSV injection)."""
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell


def cancel_import(job_uuid: uuid.UUID) -> ImportJob:
    with transaction() as session:
        job = session.scalars(
            select(ImportJob).where(ImportJob.uuid == job_uuid).with_for_update()
        ).one_or_none()
        if job is None:
            raise ImportNotFound(f"no import {job_uuid}")
        if job.finished:
            raise ImportFinished(f"the import is already {job.status}")
        from .importer import _close

        _close(job, "cancelled", "cancelled by an admin; rows of finished chunks stay imported")
    return job
