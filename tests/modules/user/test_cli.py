"""``lapak users create-admin``, ``set-password`` and ``lapak demo`` as an operator runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.cli import main as lapak_main
from app.db import Session
from app.demo import DemoRun
from modules.ledger.models import Transaction as LedgerTransaction
from modules.marketplace.models import Product, SaleOrder
from modules.user.demo import DEMO_ADMIN_EMAIL, DEMO_INACTIVATED, DEMO_LOGINS
from modules.user.models import ROLES, User
from modules.user.passwords import passwords
from modules.user.services import create_user
from tests.conftest import run_jobs
from tests.modules.conftest import PASSWORD, Caller, login
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


def order_count(app: Flask) -> int:
    with app.app_context():
        return Session().scalar(select(func.count()).select_from(SaleOrder))


def demo_passwords(output: str) -> dict[str, str]:
    return dict(re.findall(r"(\S+@lapak\.local)\s+password: (\S+)", output))


def login_answer(client: FlaskClient, email: str, password: str) -> tuple[int, Any]:
    response = login(client, email, password)
    body = response.get_json()
    return response.status_code, {key: body.get(key) for key in ("type", "title", "detail")}


@pytest.mark.slow
def test_demo_makes_one_usable_user_per_role_and_prints_each_password_once(
    app: Flask, client: FlaskClient, services: Services, tmp_path: Path
) -> None:
    first = lapak(services, tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    # On PostgreSQL too (its jobs queued in Redis for a worker), the history is made.
    assert first.stdout.count("over the last 30 days") == 2, first.stdout
    orders = order_count(app)
    assert 35 <= orders <= 45
    printed = demo_passwords(first.stdout)
    assert set(printed) == {email for email, *_ in DEMO_LOGINS}, first.stdout
    assert {role for _, _, role, _ in DEMO_LOGINS} == set(ROLES)
    for email, _, role, _ in DEMO_LOGINS:
        assert len(printed[email]) >= 20
        response = login(client, email, printed[email])
        assert response.status_code == 200, response.get_json()
        token = response.get_json()["access_token"]
        me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.get_json()["role"] == role

    waiting = DEMO_INACTIVATED[0]
    assert stored(app, waiting).password_hash is None
    assert "POST /api/v1/users/{id}/activation" in first.stdout
    assert "POST /api/v1/auth/activate" in first.stdout
    assert f"lapak users set-password {waiting}" in first.stdout
    # No enumeration: a user without a password, or a wrong one, looks like an unknown email.
    unknown = login_answer(client, "nobody@lapak.local", "any password at all")
    assert unknown[0] == 401
    assert login_answer(client, waiting, "any password at all") == unknown
    assert login_answer(client, "dewi@lapak.local", "any password at all") == unknown

    hashes = {email: stored(app, email).password_hash for email in printed}
    second = lapak(services, tmp_path, "demo")
    assert second.returncode == 0, second.stderr
    assert "password:" not in second.stdout
    assert not any(password in second.stdout for password in printed.values())
    assert "The demo is already there" in second.stdout
    assert "nothing was changed" in second.stdout
    assert order_count(app) == orders
    assert "lapak users set-password EMAIL" in second.stdout
    assert {email: stored(app, email).password_hash for email in printed} == hashes
    with app.app_context():
        assert Session().scalar(select(func.count()).select_from(User)) == len(DEMO_LOGINS) + 1


# --- set-password ----------------------------------------------------------------------------


@pytest.mark.slow
def test_set_password_activates_an_imported_user_from_stdin(
    app: Flask, client: FlaskClient, services: Services, tmp_path: Path
) -> None:
    with app.app_context():
        create_user("imported@example.com", name="Imported")  # no password, as imports make
    result = lapak(
        services, tmp_path, "users", "set-password", "Imported@Example.com", "--password-stdin",
        stdin=GOOD_PASSWORD + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Password of imported@example.com set; the user is activated." in result.stdout
    assert GOOD_PASSWORD not in result.stdout + result.stderr
    assert login(client, "imported@example.com", GOOD_PASSWORD).status_code == 200


def test_set_password_ends_the_users_sessions(
    app: Flask, client: FlaskClient, customer: Caller
) -> None:
    assert client.get("/api/v1/users/me", headers=customer.headers).status_code == 200
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", customer.email, "--password-stdin"],
        input="a brand new passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "their sessions are ended" in result.output
    run_jobs(app)  # the user.password_set event reaches the auth module
    ended = client.get("/api/v1/users/me", headers=customer.headers)
    assert ended.status_code == 401
    assert ended.get_json()["type"].endswith(":session-revoked")
    assert login(client, customer.email, PASSWORD).status_code == 401
    assert login(client, customer.email, "a brand new passphrase").status_code == 200


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("known@example.com", "tooShort1", "the password must be at least 10 characters"),
        ("known@example.com", "known@example.com", "the password must not be your email address"),
        ("known@example.com", "", "no password on stdin"),
        ("unknown@example.com", GOOD_PASSWORD, "no user unknown@example.com"),
    ],
)
def test_set_password_refuses_what_the_api_refuses_without_echoing_it(
    app: Flask, make_user: Callable[..., Any], email: str, password: str, message: str
) -> None:
    make_user("known@example.com")
    before = stored(app, "known@example.com").password_hash
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", email, "--password-stdin"], input=password + "\n"
    )
    assert result.exit_code == 1
    assert message in result.output
    if password:
        assert f"{password}\n" not in result.output.replace(message, "")
    assert stored(app, "known@example.com").password_hash == before


def test_set_password_asks_twice_with_hidden_input(
    app: Flask, make_user: Callable[..., Any]
) -> None:
    make_user("ask@example.com")
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", "ask@example.com"],
        input=f"{GOOD_PASSWORD}\n{GOOD_PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "Repeat the password" in result.output
    assert GOOD_PASSWORD not in result.output
    with app.app_context():
        assert passwords().verify(stored(app, "ask@example.com").password_hash, GOOD_PASSWORD)


def test_demo_is_refused_in_production(make_app: Callable[..., Flask]) -> None:
    app = make_app(env="production")
    result = app.test_cli_runner().invoke(lapak_main, ["demo"])
    assert result.exit_code == 1
    assert "refused in LAPAK_ENV=production" in result.output
    assert stored(app, DEMO_ADMIN_EMAIL) is None
    with app.app_context():  # refused before any module's step: no catalogue, no history
        for table in (Product, SaleOrder, LedgerTransaction, DemoRun):
            assert Session().scalar(select(func.count()).select_from(table)) == 0
