"""The installed ``lapak`` command, run as a user runs it: a subprocess on an SQLite file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from app.jobs import QUEUES
from tests.app.fake_modules import (
    EMBEDDED_SECRET,
    EMBEDDED_VAULT_KEY,
    FakeModulePackages,
    manifest_source,
)

pytestmark = pytest.mark.slow

LAPAK = Path(sys.executable).with_name("lapak")


def lapak(
    directory: Path, *args: str, python_path: Path | None = None, **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run ``lapak args`` in ``directory`` with only these LAPAK_* settings (on SQLite there)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    if python_path is not None:
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(python_path), environ.get("PYTHONPATH")])
        )
    environ.update(
        {
            "LAPAK_INSTANCE_PATH": str(directory / "instance"),
            "LAPAK_DATABASE_URL": f"sqlite:///{directory / 'lapak.db'}",
            "LAPAK_SECRET_KEY": EMBEDDED_SECRET,
            "LAPAK_VAULT_KEYS": EMBEDDED_VAULT_KEY,
            "LAPAK_LOG_LEVEL": "WARNING",
        }
    )
    environ.update({f"LAPAK_{name.upper()}": value for name, value in variables.items()})
    return subprocess.run(
        [str(LAPAK), *args],
        cwd=directory,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def schema(database: Path) -> tuple[set[str], set[str], list[str]]:
    """Tables, indexes and Alembic revisions of an SQLite file."""
    with closing(sqlite3.connect(database)) as connection:
        objects = connection.execute("SELECT type, name FROM sqlite_master").fetchall()
        tables = {name for kind, name in objects if kind == "table"}
        revisions = (
            [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
            if "alembic_version" in tables
            else []
        )
    return tables, {name for kind, name in objects if kind == "index"}, revisions


def listed_commands(help_text: str) -> set[str]:
    """The command names in the ``Commands:`` section of click's help."""
    section = help_text.split("Commands:")[1]
    # A command's line starts with two spaces and its name; a wrapped description, with more.
    return {
        line.split()[0]
        for line in section.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    }


def test_db_upgrade_creates_the_core_tables_and_downgrade_base_removes_them(
    tmp_path: Path,
) -> None:
    database = tmp_path / "lapak.db"

    upgraded = lapak(tmp_path, "db", "upgrade")

    assert upgraded.returncode == 0, upgraded.stderr
    tables, indexes, revisions = schema(database)
    assert "core_outbox_event" in tables
    assert {"ix_core_outbox_event_due", "ix_core_outbox_event_name"} <= indexes
    assert len(revisions) == 1
    current = lapak(tmp_path, "db", "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"{revisions[0]} (head)"

    again = lapak(tmp_path, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert schema(database)[2] == revisions

    downgraded = lapak(tmp_path, "db", "downgrade", "base")

    assert downgraded.returncode == 0, downgraded.stderr
    tables, indexes, revisions = schema(database)
    assert "core_outbox_event" not in tables
    assert not {i for i in indexes if i.startswith("ix_core_")}
    assert revisions == []


def test_help_lists_lapaks_commands_and_no_flask_options(tmp_path: Path) -> None:
    shown = lapak(tmp_path, "--help")

    assert shown.returncode == 0, shown.stderr
    assert listed_commands(shown.stdout) == {
        "dashboard",
        "db",
        "demo",
        "ledger",
        "openapi",
        "serve",
        "users",
        "vault",
        "worker",
    }
    options = shown.stdout.split("Options:")[1].split("Commands:")[0]
    assert options.split() == ["--help", "Show", "this", "message", "and", "exit."]
    assert "users      Users, roles, activation and CSV imports (module user)." in shown.stdout
    assert shown.stderr == ""
    db_help = lapak(tmp_path, "db", "--help").stdout
    for subcommand in ("upgrade", "downgrade", "current", "revision", "check"):
        assert subcommand in db_help


def test_help_lists_module_commands_without_importing_their_code(tmp_path: Path) -> None:
    packages = FakeModulePackages(tmp_path / "packages")
    package = packages.package(
        {
            "memo": manifest_source(
                "memo",
                commands=("memo-count",),
                body="""
                    def load(hooks):
                        raise RuntimeError("lapak --help must not load modules")
                    """,
            )
        }
    )

    shown = lapak(tmp_path, "--help", module_packages=package, python_path=packages.root)

    assert shown.returncode == 0, shown.stderr
    assert "memo-count" in listed_commands(shown.stdout)
    assert "Memo (module memo)." in shown.stdout


def test_an_unknown_command_is_refused_without_building_the_app(tmp_path: Path) -> None:
    refused = lapak(tmp_path, "sevre", secret_key="")

    assert refused.returncode == 2
    assert "No such command 'sevre'" in refused.stderr
    assert "LAPAK_SECRET_KEY" not in refused.stderr  # the app that would warn was not built


def test_module_commands_join_the_lapak_command(tmp_path: Path) -> None:
    packages = FakeModulePackages(tmp_path / "packages")
    package = packages.package(
        {
            "memo": {
                "__init__.py": manifest_source(
                    "memo",
                    commands=("memo-count",),
                    body="""
                        def load(hooks):
                            from .cli import memo_count

                            hooks.command(memo_count)
                        """,
                ),
                "cli.py": """
                    import click


                    @click.command("memo-count")
                    def memo_count():
                        \"\"\"Print how many memos there are.\"\"\"
                        click.echo("memos: 0")
                    """,
            }
        }
    )

    shown = lapak(tmp_path, "--help", module_packages=package, python_path=packages.root)
    ran = lapak(tmp_path, "memo-count", module_packages=package, python_path=packages.root)

    assert shown.returncode == 0, shown.stderr
    assert "memo-count" in listed_commands(shown.stdout)
    assert (ran.returncode, ran.stdout) == (0, "memos: 0\n"), ran.stderr


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"env": "staging"}, "LAPAK_ENV"),
        ({"web_workers": "lots"}, "LAPAK_WEB_WORKERS"),
        ({"database_url": "mysql://lapak@db/lapak"}, "LAPAK_DATABASE_URL"),
        ({"redis_url": "http://cache:6379"}, "LAPAK_REDIS_URL"),
        ({"env": "production", "secret_key": ""}, "LAPAK_SECRET_KEY"),
        ({"env": "production", "vault_keys": ""}, "LAPAK_VAULT_KEYS"),
        ({"vault_keys": "not-a-key"}, "LAPAK_VAULT_KEYS"),
        ({"modules": "user,payroll"}, "LAPAK_MODULES"),
        ({"modules": "auth"}, "LAPAK_MODULES"),
    ],
)
def test_bad_setting_makes_db_upgrade_exit_2_with_one_line(
    tmp_path: Path, variables: dict[str, str], named: str
) -> None:
    refused = lapak(tmp_path, "db", "upgrade", **variables)

    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("lapak: ")
    assert named in lines[0]
    assert refused.stdout == ""
    assert not (tmp_path / "lapak.db").exists()


def test_worker_refuses_an_unknown_queue_naming_the_queues(tmp_path: Path) -> None:
    refused = lapak(tmp_path, "worker", "--queue", "urgent")

    assert refused.returncode == 2
    assert f"no queue urgent; the queues are {', '.join(QUEUES)}" in refused.stderr
