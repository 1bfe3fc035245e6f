"""Throwaway PostgreSQL (primary + streaming replica) and Redis servers for the tests.

They run from the installed binaries, on free ports, under a temporary directory, and are
stopped (and the directory removed) when the test session ends; ``atexit`` covers a session
that dies early. PostgreSQL refuses to run as root, so as root every PostgreSQL binary runs as
the ``postgres`` user and the directories are made reachable for it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory (Debian keeps it off PATH)."""
    if os.environ.get("LAPAK_TEST_PG_BINDIR"):
        return Path(os.environ["LAPAK_TEST_PG_BINDIR"])
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for candidate in reversed(candidates):
        if (candidate / "initdb").exists():
            return candidate
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        "no PostgreSQL server binaries found (initdb); install them with the README's test "
        "command, or set LAPAK_TEST_DATABASE_URL"
    )


def _as_postgres_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    pwd.getpwnam("postgres")  # raises KeyError with a clear name if the user is missing
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PostgresServer:
    bindir: Path
    datadir: Path
    port: int
    socket_dir: Path
    log_file: Path
    running: bool = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [*_as_postgres_user(), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{log[-3000:]}"
            )

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self.configure()

    def configure(self) -> None:
        settings = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "wal_level": "replica",
            "max_wal_senders": 10,
            # A replica that was disconnected (the primary restarted, a base backup forced a
            # checkpoint) must find the WAL it missed, or it never catches up again.
            "wal_keep_size": "512MB",
            "hot_standby": "on",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": 200,
            "shared_buffers": "64MB",
            "logging_collector": "off",
        }
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write("\n# lapak test harness\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log_file),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w",
                      "stop")  # fmt: skip
            self.running = False

    def replica(self, datadir: Path, port: int) -> PostgresServer:
        """A streaming replica of this server (pg_basebackup -R), configured but not started."""
        self._run(
            str(self.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "postgres", "-D", str(datadir), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        replica = PostgresServer(
            self.bindir, datadir, port, self.socket_dir, datadir.parent / f"{datadir.name}.log"
        )
        with (datadir / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {port}\n")
        return replica

    def processes(self) -> list[int]:
        """The postmaster's pid and its children's (read from /proc; Linux)."""
        postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # The parent pid is the 2nd field after the ")" closing the command name.
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP every process: connections stay open, nothing answers (a network partition)."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def promote(self) -> None:
        """Make this replica a primary of its own (it leaves recovery and stops following)."""
        self.execute("SELECT pg_promote(wait => true)")

    def remove(self) -> None:
        """Stop the server (thawed first) and delete its data directory and log."""
        if self.running:
            with contextlib.suppress(Exception):
                self.thaw()
            self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        with psycopg.connect(self.dsn(database), autocommit=True) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; install it with the README's test command")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Services:
    """What the tests connect to, and the servers the harness owns (None when given by env)."""

    database_url: str
    replica_urls: list[str]
    redis_url: str
    admin_dsn: str
    primary: PostgresServer | None = None
    replica: PostgresServer | None = None
    redis: RedisServer | None = None
    root: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for server in (self.replica, self.primary):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


TEST_DATABASE = "lapak_test"


def start_extra_replica(services: Services, name: str) -> PostgresServer:
    """Another streaming replica of the harness's primary, for a test that freezes, promotes
    or stops it without breaking the shared one; the test calls its ``remove()``."""
    if services.primary is None or services.root is None:
        raise RuntimeError(
            "needs the harness-started primary (LAPAK_TEST_DATABASE_URL is external)"
        )
    datadir = services.root / name
    shutil.rmtree(datadir, ignore_errors=True)
    datadir.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(datadir, "postgres", "postgres")
    replica = services.primary.replica(datadir, free_port())
    try:
        replica.start()
    except BaseException:
        replica.remove()
        raise
    return replica


def start_services() -> Services:
    """Start (or take from LAPAK_TEST_* variables) PostgreSQL primary + replica and Redis."""
    given_db = os.environ.get("LAPAK_TEST_DATABASE_URL")
    given_replicas = os.environ.get("LAPAK_TEST_REPLICA_URLS")
    given_redis = os.environ.get("LAPAK_TEST_REDIS_URL")
    root = Path(tempfile.mkdtemp(prefix="lapak-test-"))
    root.chmod(0o755)  # the postgres user must reach its data directories
    services = Services("", [], "", "", root=root)
    atexit.register(services.stop)
    try:
        if given_db:
            services.database_url = given_db
            services.replica_urls = [u for u in (given_replicas or "").split(",") if u]
            services.admin_dsn = _psycopg_dsn(given_db)
        else:
            bindir = postgres_bindir()
            primary_dir, replica_dir = root / "primary", root / "replica"
            for directory in (primary_dir, replica_dir):
                directory.mkdir(mode=0o700)
                if os.geteuid() == 0:
                    shutil.chown(directory, "postgres", "postgres")
            if os.geteuid() == 0:
                shutil.chown(root, "postgres", "postgres")
            primary = PostgresServer(bindir, primary_dir, free_port(), root, root / "primary.log")
            primary.init()
            primary.start()
            services.primary = primary
            primary.execute(f"CREATE DATABASE {TEST_DATABASE}")
            replica = primary.replica(replica_dir, free_port())
            replica.start()
            services.replica = replica
            services.database_url = primary.url(TEST_DATABASE)
            services.replica_urls = [replica.url(TEST_DATABASE)]
            services.admin_dsn = primary.dsn()
        if given_redis:
            services.redis_url = given_redis
        else:
            services.redis = RedisServer(free_port(), root)
            services.redis.start()
            services.redis_url = services.redis.url
    except BaseException:
        services.stop()
        raise
    return services


def _psycopg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://")
