"""``lapak users create-admin`` and ``lapak demo`` as an operator runs them, on PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.cli import main as lapak_main
from app.db import Session
from modules.user.cli import DEMO_ADMIN_EMAIL, DEMO_USERS
from modules.user.models import User
from modules.user.passwords import passwords
from tests.servers import Services

ROOT = Path(__file__).resolve().parents[3]
LAPAK = Path(sys.executable).with_name("lapak")
GOOD_PASSWORD = "correct horse battery staple"


def lapak(
    services: Services, tmp_path: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``lapak`` on the test PostgreSQL (no Redis: jobs run in-process)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    environment.update(
        LAPAK_ENV="test",
        LAPAK_DATABASE_URL=services.database_url,
        LAPAK_REDIS_URL=services.redis_url,
        LAPAK_SECRET_KEY="c" * 48,
        LAPAK_INSTANCE_PATH=str(tmp_path / "instance"),
        LAPAK_LOG_LEVEL="WARNING",
        # OWASP's argon2id minimum keeps the test fast.
        LAPAK_PASSWORD_MEMORY_KIB="19456",
        LAPAK_PASSWORD_TIME_COST="2",
        LAPAK_PASSWORD_PARALLELISM="1",
        PYTHONPATH=str(ROOT),
    )
    return subprocess.run(
        [str(LAPAK), *args],
        cwd=tmp_path,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        start_new_session=True,  # no controlling terminal: a prompt can never block the test
    )


def stored(app: Flask, email: str) -> User | None:
    with app.app_context():
        return Session().scalars(select(User).where(User.email_key == email.lower())).first()


@pytest.mark.slow
def test_create_admin_reads_the_password_from_stdin(
    app: Flask, services: Services, tmp_path: Path
) -> None:
    result = lapak(
        services,
        tmp_path,
        "users",
        "create-admin",
        "Boss@Example.com",
        "--name",
        "Ibu Boss",
        "--password-stdin",
        stdin=GOOD_PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "Created admin Boss@example.com" in result.stdout
    assert GOOD_PASSWORD not in result.stdout + result.stderr
    admin = stored(app, "boss@example.com")
    assert admin is not None
    assert (admin.role, admin.name, admin.active) == ("admin", "Ibu Boss", True)
    with app.app_context():
        assert passwords().verify(admin.password_hash, GOOD_PASSWORD)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("tooShort1", "the password must be at least 10 characters"),
        ("boss.person@example.com", "the password must not be your email address"),
        ("", "no password on stdin"),
    ],
)
def test_create_admin_refuses_a_bad_password_without_echoing_it(
    app: Flask, services: Services, tmp_path: Path, password: str, message: str
) -> None:
    result = lapak(
        services,
        tmp_path,
        "users",
        "create-admin",
        "boss.person@example.com",
        "--password-stdin",
        stdin=password + "\n",
    )
    assert result.returncode == 1
    assert message in result.stderr
    if password:
        assert password not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert stored(app, "boss.person@example.com") is None


@pytest.mark.slow
def test_create_admin_refuses_a_taken_email_in_any_case(
    app: Flask, services: Services, tmp_path: Path
) -> None:
    first = lapak(
        services, tmp_path, "users", "create-admin", "root@example.com", "--password-stdin",
        stdin=GOOD_PASSWORD,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = lapak(
        services, tmp_path, "users", "create-admin", "ROOT@example.com", "--password-stdin",
        stdin="another good password\n",
    )  # fmt: skip
    assert again.returncode == 1
    assert "ROOT@example.com is already registered" in again.stderr
    with app.app_context():
        assert passwords().verify(stored(app, "root@example.com").password_hash, GOOD_PASSWORD)


def test_create_admin_asks_twice_with_hidden_input(app: Flask) -> None:
    runner = app.test_cli_runner()
    mismatch = runner.invoke(
        args=["users", "create-admin", "ask@example.com"],
        input=f"{GOOD_PASSWORD}\n{GOOD_PASSWORD}x\n{GOOD_PASSWORD}\n{GOOD_PASSWORD}\n",
    )
    assert mismatch.exit_code == 0, mismatch.output
    assert "Repeat the password" in mismatch.output
    assert "Error: The two entered values do not match." in mismatch.output
    assert GOOD_PASSWORD not in mismatch.output
    with app.app_context():
        assert passwords().verify(stored(app, "ask@example.com").password_hash, GOOD_PASSWORD)


def test_create_admin_refuses_an_invalid_email(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "create-admin", "not-an-email", "--password-stdin"],
        input=GOOD_PASSWORD + "\n",
    )
    assert result.exit_code == 1
    assert "the email is not a valid email address" in result.output


@pytest.mark.slow
def test_demo_prints_a_fresh_admin_password_once_and_never_resets_it(
    app: Flask, services: Services, tmp_path: Path
) -> None:
    first = lapak(services, tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    match = re.search(rf"{re.escape(DEMO_ADMIN_EMAIL)}\s+password: (\S+)", first.stdout)
    assert match, first.stdout
    password = match.group(1)
    assert len(password) >= 20
    admin = stored(app, DEMO_ADMIN_EMAIL)
    with app.app_context():
        assert passwords().verify(admin.password_hash, password)
    demo_emails = [email for email, *_ in DEMO_USERS]
    for email in demo_emails:
        assert email in first.stdout
        user = stored(app, email)
        assert user is not None
        assert user.password_hash is None

    second = lapak(services, tmp_path, "demo")
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout
    assert "password:" not in second.stdout
    assert password not in second.stdout
    assert stored(app, DEMO_ADMIN_EMAIL).password_hash == admin.password_hash
    with app.app_context():
        assert Session().scalar(select(func.count()).select_from(User)) == 1 + len(DEMO_USERS)


def test_demo_is_refused_in_production(make_app: Callable[..., Flask]) -> None:
    app = make_app(env="production")
    result = app.test_cli_runner().invoke(lapak_main, ["demo"])
    assert result.exit_code == 1
    assert "refused in LAPAK_ENV=production" in result.output
    assert stored(app, DEMO_ADMIN_EMAIL) is None
