"""``lapak users import FILE``: the same import, run in-process, with the counts at the end."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.modules.conftest import Caller
from tests.modules.user.test_cli import lapak
from tests.modules.user.test_imports import (
    HEADER,
    IMPORTS,
    SAMPLE_CSV,
    csv_bytes,
    import_job_count,
    numbered_rows,
    stored_users,
    user_count,
)
from tests.servers import Services


def count_shown(output: str, what: str, number: int) -> bool:
    """``created: 200``, ``200 created`` and the like."""
    pattern = rf"\b{number}\b[^\n\d]{{0,20}}\b{what}\b|\b{what}\b[^\n\d]{{0,20}}\b{number}\b"
    return re.search(pattern, output, re.IGNORECASE) is not None


def write(tmp_path: Path, content: bytes, name: str = "users.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_cli_imports_the_sample_file_and_prints_the_counts(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    result = app.test_cli_runner().invoke(args=["users", "import", str(SAMPLE_CSV)])
    assert result.exit_code == 0, result.output
    assert count_shown(result.output, "created", 200), result.output
    assert user_count(app) == 1 + 200
    # The same import: it is a job like the uploaded ones.
    listed = client.get(IMPORTS, headers=admin.headers).get_json()["items"]
    assert len(listed) == 1
    assert (listed[0]["status"], listed[0]["created"], listed[0]["filename"]) == (
        "succeeded", 200, SAMPLE_CSV.name,
    )  # fmt: skip


def test_cli_exits_0_with_row_errors_and_shows_them_counted(app: Flask, tmp_path: Path) -> None:
    path = write(tmp_path, csv_bytes([HEADER, *numbered_rows(3), ["nope", "", "", ""]]))
    result = app.test_cli_runner().invoke(args=["users", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert count_shown(result.output, "created", 3), result.output
    assert count_shown(result.output, "failed", 1), result.output
    assert user_count(app) == 3


def test_cli_says_to_use_upsert_when_rows_name_existing_users(app: Flask, tmp_path: Path) -> None:
    path = write(tmp_path, csv_bytes([HEADER, *numbered_rows(2)]))
    app.test_cli_runner().invoke(args=["users", "import", str(path)])
    again = app.test_cli_runner().invoke(args=["users", "import", str(path)])
    assert again.exit_code == 0, again.output
    assert "2 rows name existing users; upload again with --mode upsert" in again.output


def test_cli_exits_1_when_the_import_fails(app: Flask, tmp_path: Path) -> None:
    path = write(tmp_path, b"mail,nama\nx@example.test,X\n")
    result = app.test_cli_runner().invoke(args=["users", "import", str(path)])
    assert result.exit_code == 1, result.output
    assert "no email column" in result.output
    assert user_count(app) == 0


def test_cli_refuses_a_file_that_is_not_csv(app: Flask, tmp_path: Path) -> None:
    path = write(tmp_path, b"")
    result = app.test_cli_runner().invoke(args=["users", "import", str(path)])
    assert result.exit_code != 0, result.output
    assert "empty" in result.output
    assert import_job_count(app) == 0


def test_cli_dry_run_writes_no_user(app: Flask, tmp_path: Path) -> None:
    path = write(tmp_path, csv_bytes([HEADER, *numbered_rows(2)]))
    result = app.test_cli_runner().invoke(args=["users", "import", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert count_shown(result.output, "created", 2), result.output
    assert user_count(app) == 0


def test_cli_upsert_default_role_and_encoding(
    app: Flask, tmp_path: Path, make_user: Callable[..., Any]
) -> None:
    make_user("ada@example.test", name="Ada", role="customer")
    content = "email,name,role\nada@example.test,Ada Baru,\nbaru@example.test,Jürgen,\n"
    path = write(tmp_path, content.encode("cp1252"))
    result = app.test_cli_runner().invoke(
        args=[
            "users",
            "import",
            str(path),
            "--mode",
            "upsert",
            "--default-role",
            "staff",
            "--encoding",
            "cp1252",
        ],
    )
    assert result.exit_code == 0, result.output
    assert count_shown(result.output, "created", 1), result.output
    assert count_shown(result.output, "updated", 1), result.output
    users = stored_users(app)
    assert (users["ada@example.test"]["name"], users["ada@example.test"]["role"]) == (
        "Ada Baru", "customer",
    )  # fmt: skip
    assert (users["baru@example.test"]["name"], users["baru@example.test"]["role"]) == (
        "Jürgen", "staff",
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [["--mode", "replace"], ["--default-role", "boss"], ["--encoding", "ebcdic"]],
)
def test_cli_refuses_unknown_options(app: Flask, tmp_path: Path, args: list[str]) -> None:
    path = write(tmp_path, csv_bytes([HEADER, *numbered_rows(1)]))
    result = app.test_cli_runner().invoke(args=["users", "import", str(path), *args])
    assert result.exit_code != 0, result.output
    assert import_job_count(app) == 0


@pytest.mark.slow
def test_installed_lapak_users_import_runs_the_import(
    app: Flask, services: Services, tmp_path: Path
) -> None:
    result = lapak(services, tmp_path, "users", "import", str(SAMPLE_CSV))
    assert result.returncode == 0, result.stderr
    assert count_shown(result.stdout + result.stderr, "created", 200), result.stdout
    assert user_count(app) == 200
