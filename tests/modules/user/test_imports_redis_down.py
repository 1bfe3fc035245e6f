"""An import uploaded while Redis is stopped: accepted (202), queued by the watchdog later."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from app.clock import travel
from tests.conftest import redis_outage_app, run_jobs
from tests.modules.conftest import Caller
from tests.modules.user.test_imports import (
    HEADER,
    csv_bytes,
    get_job,
    numbered_rows,
    start_import,
    stored_users,
)
from tests.modules.user.test_imports_jobs import run_watchdog
from tests.servers import RedisServer


def test_an_import_uploaded_while_redis_is_down_is_accepted_and_runs_once_it_is_back(
    make_app: Callable[..., Flask],
    config: dict[str, Any],
    own_redis: RedisServer,
    admin: Caller,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {**config["module_env"], "import_stale_seconds": "60"}
    app = redis_outage_app(make_app, own_redis, module_env=env)
    client = app.test_client()
    own_redis.stop()
    caplog.set_level(logging.WARNING)

    # Nothing is lost (the file and the job row are committed), so the answer is the usual 202.
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(3)]))
    assert get_job(client, admin, job["id"])["status"] == "queued"
    assert any("the import watchdog queues it later" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info]

    own_redis.start()
    with travel(timedelta(seconds=61)):
        run_watchdog(app)
    run_jobs(app)
    done = get_job(client, admin, job["id"])
    assert done["status"] == "succeeded", done
    assert done["created"] == 3
    assert {f"user.{i}@example.test" for i in range(3)} <= set(stored_users(app))
