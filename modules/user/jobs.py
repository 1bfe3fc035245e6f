"""Background jobs of the user module: thin, they take ids and call the importer."""

from __future__ import annotations

import functools
import uuid

from sqlalchemy import or_, select

from app.db import Session, after_commit, transaction, utcnow

from .importer import _enqueue, import_settings, process
from .models import ImportJob


def run_import(job_uuid: str) -> None:
    """Run or resume the import ``job_uuid`` (idempotent: a finished job does nothing)."""
    job_id = (
        Session()
        .scalars(select(ImportJob.id).where(ImportJob.uuid == uuid.UUID(job_uuid)))
        .one_or_none()
    )
    Session().rollback()
    if job_id is not None:
        process(job_id)


def watch_imports() -> int:
    """Re-queue imports whose runner died (no heartbeat) or whose queue entry was lost.

    Progress lives in the database, so this works whatever happened to Redis or the worker;
    the runner itself refuses to start while another one is alive. Returns how many it queued.
    """
    stale = utcnow() - import_settings().stale_after
    with transaction() as session:
        jobs = list(
            session.scalars(
                select(ImportJob)
                .where(
                    or_(
                        (ImportJob.status == "running") & (ImportJob.heartbeat_at < stale),
                        (ImportJob.status == "running") & ImportJob.heartbeat_at.is_(None),
                        (ImportJob.status == "queued") & (ImportJob.enqueued_at < stale),
                    )
                )
                .with_for_update(skip_locked=True)
            )
        )
        for job in jobs:
            job.enqueued_at = utcnow()
            after_commit(functools.partial(_enqueue, run_import, str(job.uuid)))
    return len(jobs)
