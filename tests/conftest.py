"""Shared fixtures: real PostgreSQL (primary + streaming replica) and Redis, per test session.

Servers start only when a test asks for them (``services``), so tests that need no data run
without them. Each data test gets a fresh ``app``; afterwards every table is truncated and Redis
flushed, so tests do not see each other's rows.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, inspect, text

from app import create_app
from app.config import Settings
from app.db import Base, parse_lsn
from app.jobs import QUEUES, make_worker
from app.migrate import upgrade
from tests.servers import RedisServer, Services, free_port, start_services

TEST_SECRET = "test-secret-" + "x" * 40
#: The tests' vault key (a Fernet key: 32 bytes in url-safe base64), so no test app generates one.
TEST_VAULT_KEY = base64.urlsafe_b64encode(b"lapak-test-vault-key-32-bytes!!!").decode()
MODULE_PACKAGES = ("modules", "tests.sample_modules")


def base_config(services: Services, instance_path: Path) -> dict[str, Any]:
    return {
        "env": "test",
        "database_url": services.database_url,
        "replica_urls": tuple(services.replica_urls),
        "redis_url": services.redis_url,
        "secret_key": TEST_SECRET,
        "vault_keys": (TEST_VAULT_KEY,),
        "instance_path": instance_path,
        "module_packages": MODULE_PACKAGES,
        "log_level": "WARNING",
        # OWASP's argon2id minimum: fast enough for many logins per test.
        "module_env": {
            "password_memory_kib": "19456",
            "password_time_cost": "2",
            "password_parallelism": "1",
        },
        "replica_retry_seconds": 0.0,
        # Every read asks the replica, as the tests of failures expect (the trust window has
        # tests of its own).
        "replica_trust_seconds": 0.0,
    }


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    started = start_services()
    try:
        config = base_config(started, tmp_path_factory.mktemp("instance"))
        settings = Settings.from_env(environ={}, overrides=config)
        upgrade(settings)
        create_app(settings)  # imports the sample modules' models into the metadata
        engine = create_engine(settings.database_url)
        sample_tables = [t for name, t in Base.metadata.tables.items() if name.startswith("notes_")]
        Base.metadata.create_all(engine, tables=sample_tables)
        engine.dispose()
        yield started
    finally:
        started.stop()


@pytest.fixture
def config(services: Services, tmp_path: Path) -> dict[str, Any]:
    """Settings overrides for this test's app; change them before asking for ``app``."""
    return base_config(services, tmp_path / "instance")


@pytest.fixture
def make_app(config: dict[str, Any], services: Services) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test servers (``make_app(redis_url=...)`` overrides a setting).

    Afterwards their job threads are finished, their engines closed, and every table
    truncated and Redis flushed.
    """
    made: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        application = create_app({**config, **overrides})
        made.append(application)
        return application

    try:
        yield build
    finally:
        for application in made:
            for close in application.extensions.get("lapak.closers", ()):
                close()  # e.g. the audit writer: its rows land before the tables are emptied
            application.extensions["lapak.jobs"].wait_embedded()
            application.extensions["lapak.db"].dispose()
        reset_data(services)


@pytest.fixture
def make_embedded_app(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., Flask]:
    """Build apps on the embedded default: a migrated SQLite file in tmp_path, no replica, no
    Redis (``make_embedded_app(env="development")`` overrides a setting)."""

    def build(**overrides: Any) -> Flask:
        application = make_app(
            database_url=f"sqlite:///{tmp_path / 'lapak.db'}",
            replica_urls=(),
            redis_url=None,
            **overrides,
        )
        upgrade(application.extensions["lapak.settings"])
        return application

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def reset_data(services: Services) -> None:
    engine = create_engine(services.database_url)
    try:
        with engine.begin() as connection:
            existing = set(inspect(connection).get_table_names())
            names = [t.name for t in Base.metadata.sorted_tables if t.name in existing]
            if names:
                connection.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
    redis.Redis.from_url(services.redis_url).flushdb()


def run_jobs(app: Flask, queues: tuple[str, ...] = QUEUES) -> None:
    """Run every queued job in this process (RQ's SimpleWorker, burst) inside the app."""
    make_worker(app, queues, fork=False).work(burst=True, with_scheduler=False)


def wait_for_replica(services: Services, timeout: float = 20) -> None:
    """Block until the replica has replayed everything the primary has written so far."""
    with psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True) as c:
        # WAL that no commit has flushed (a checkpoint's record, pruning, an abort, a commit
        # that wrote nothing else) can sit in the primary's buffers for as long as nothing else
        # commits, and the replica never receives it. A transactional WAL message commits
        # synchronously, so flushes everything inserted before it: the replica can reach that.
        c.execute("SELECT pg_logical_emit_message(true, 'lapak-test', '')")
        target = parse_lsn(c.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0])
    deadline = time.monotonic() + timeout
    with psycopg.connect(services.replica_urls[0].replace("+psycopg", ""), autocommit=True) as c:
        while True:
            replayed = c.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
            if parse_lsn(replayed) >= target:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"replica stuck at {replayed}")
            time.sleep(0.02)


@pytest.fixture
def own_replica(services: Services) -> Services:
    """The harness's own replica, which tests may pause or stop (skip on an external one)."""
    if services.replica is None:
        pytest.skip("needs the harness-started replica (LAPAK_TEST_REPLICA_URLS is external)")
    return services


@pytest.fixture
def paused_replica(own_replica: Services) -> Iterator[Services]:
    """The replica with WAL replay paused: it stays connected but falls behind."""
    wait_for_replica(own_replica)
    own_replica.replica.execute("SELECT pg_wal_replay_pause()")
    try:
        yield own_replica
    finally:
        own_replica.replica.execute("SELECT pg_wal_replay_resume()")
        wait_for_replica(own_replica)


@pytest.fixture
def stopped_replica(own_replica: Services) -> Iterator[Services]:
    own_replica.replica.stop()
    try:
        yield own_replica
    finally:
        own_replica.replica.start()
        wait_for_replica(own_replica)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop and start again (``save()`` it first to
    have its keys back after the restart, as a Redis with persistence would)."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def redis_outage_app(
    make_app: Callable[..., Flask], server: RedisServer, **overrides: Any
) -> Flask:
    """An app on ``server`` that tries Redis again at once after a failure (no waiting out)."""
    application = make_app(redis_url=server.url, **overrides)
    application.extensions["lapak.jobs"].outage.retry_seconds = 0
    return application
