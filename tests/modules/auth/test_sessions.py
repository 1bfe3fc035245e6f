"""Login, single session, expiry, logout and revocation against real PostgreSQL and Redis."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select

from app.clock import travel
from app.db import Session
from modules.auth.models import AuthSession
from modules.auth.services import check_sessions
from modules.user.models import User
from tests.modules.conftest import PASSWORD, Caller, bearer, login

SESSION = "/api/v1/auth/session"


def live_sessions(app: Flask, user_id: int) -> list[AuthSession]:
    with app.app_context():
        Session.remove()
        return list(
            Session().scalars(
                select(AuthSession).where(
                    AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
                )
            )
        )


def problem_type(response: object) -> str:
    return response.get_json()["type"]  # type: ignore[attr-defined]


def test_login_returns_a_token_with_the_documented_claims(
    app: Flask, client: FlaskClient, make_user: Callable
) -> None:
    _, user_uuid, _ = make_user("Buyer@Example.COM", role="customer")
    response = login(client, "buyer@example.com", User_Agent="pytest-device-a")
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(user_uuid)
    assert claims["email"] == "Buyer@example.com"
    assert claims["role"] == "customer"
    assert claims["sid"] == body["session"]["id"]
    assert (claims["iss"], claims["aud"]) == ("lapak", "lapak-api")
    assert {"iat", "exp", "jti"} <= set(claims)

    session = client.get(SESSION, headers=bearer(body["access_token"])).get_json()
    assert session["id"] == body["session"]["id"]
    assert session["user_agent"] == "pytest-device-a"
    assert session["ip"] == "127.0.0.1"


def test_a_token_answer_is_never_cached(client: FlaskClient, make_user: Callable) -> None:
    make_user("cached@example.com", role="customer")
    response = login(client, "cached@example.com")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"  # RFC 6749 5.1
    assert response.headers["Pragma"] == "no-cache"


def test_a_new_login_ends_the_other_session(
    app: Flask, client: FlaskClient, make_user: Callable
) -> None:
    user_id, _, email = make_user()
    device_a = login(client, email).get_json()["access_token"]
    assert client.get(SESSION, headers=bearer(device_a)).status_code == 200

    device_b = login(client, email).get_json()["access_token"]

    refused = client.get(SESSION, headers=bearer(device_a))
    assert refused.status_code == 401
    assert refused.content_type == "application/problem+json"
    assert problem_type(refused) == "urn:lapak:problem:session-replaced"
    assert client.get(SESSION, headers=bearer(device_b)).status_code == 200
    [live] = live_sessions(app, user_id)
    assert str(live.sid) == jwt.decode(device_b, options={"verify_signature": False})["sid"]


def test_twenty_concurrent_logins_leave_exactly_one_live_session(
    make_app: Callable[..., Flask], config: dict, make_user: Callable
) -> None:
    # Twenty logins in flight at once are more than the throttle lets through by default.
    app = make_app(module_env={**config["module_env"], "login_max_account_failures": "20"})
    user_id, _, email = make_user()
    tokens: list[str] = []
    failures: list[int] = []
    start = threading.Barrier(20)

    def log_in() -> None:
        client = app.test_client()
        start.wait()
        response = login(client, email)
        if response.status_code == 200:
            tokens.append(response.get_json()["access_token"])
        else:
            failures.append(response.status_code)

    threads = [threading.Thread(target=log_in) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert len(tokens) == 20
    assert len(live_sessions(app, user_id)) == 1
    client = app.test_client()
    working = [t for t in tokens if client.get(SESSION, headers=bearer(t)).status_code == 200]
    assert len(working) == 1


def test_logout_ends_the_session(app: Flask, client: FlaskClient, customer: Caller) -> None:
    assert client.post("/api/v1/auth/logout", headers=customer.headers).status_code == 204
    refused = client.get(SESSION, headers=customer.headers)
    assert refused.status_code == 401
    assert problem_type(refused) == "urn:lapak:problem:session-revoked"
    assert live_sessions(app, customer.user_id) == []


def test_idle_session_expires_and_activity_slides_the_idle_expiry(
    app: Flask, client: FlaskClient, customer: Caller
) -> None:
    # Idle timeout is 30 minutes: activity every 20 minutes keeps the session alive ...
    for step in (20, 40, 60):
        with travel(timedelta(minutes=step)):
            assert client.get(SESSION, headers=customer.headers).status_code == 200
    # ... and 31 idle minutes after the last activity end it.
    with travel(timedelta(minutes=60 + 31)):
        expired = client.get(SESSION, headers=customer.headers)
    assert expired.status_code == 401
    assert problem_type(expired) == "urn:lapak:problem:session-expired"
    assert "idle" in expired.get_json()["detail"]


@pytest.mark.parametrize(
    ("later", "problem", "reason"),
    [
        (timedelta(minutes=31), "urn:lapak:problem:session-expired", "idle"),
        (timedelta(hours=13), "urn:lapak:problem:token-expired", "expired"),
    ],
    ids=["idle session", "expired token"],
)
def test_an_expired_session_or_token_says_to_log_in_again(
    client: FlaskClient, customer: Caller, later: timedelta, problem: str, reason: str
) -> None:
    with travel(later):
        expired = client.get(SESSION, headers=customer.headers)
    assert expired.status_code == 401
    assert expired.content_type == "application/problem+json"
    body = expired.get_json()
    assert body["type"] == problem
    assert reason in body["detail"]
    assert "log in again" in body["detail"]
    assert "log in again" in body["title"]
    # RFC 6750: an expired token is an invalid_token, so clients know to get a new one.
    assert expired.headers["WWW-Authenticate"] == 'Bearer realm="lapak", error="invalid_token"'


def test_last_seen_is_written_at_most_once_a_minute(
    app: Flask, client: FlaskClient, customer: Caller
) -> None:
    [before] = live_sessions(app, customer.user_id)
    with travel(timedelta(seconds=30)):
        client.get(SESSION, headers=customer.headers)
    [unchanged] = live_sessions(app, customer.user_id)
    assert unchanged.last_seen_at == before.last_seen_at
    with travel(timedelta(seconds=90)):
        client.get(SESSION, headers=customer.headers)
        client.get(SESSION, headers=customer.headers)
    [touched] = live_sessions(app, customer.user_id)
    assert touched.last_seen_at > before.last_seen_at
    assert touched.idle_expires_at > before.idle_expires_at


def test_session_ends_at_its_absolute_lifetime_despite_activity(
    app: Flask, client: FlaskClient, customer: Caller
) -> None:
    for minutes in range(25, 12 * 60, 25):
        with travel(timedelta(minutes=minutes)):
            assert client.get(SESSION, headers=customer.headers).status_code == 200, minutes
    with travel(timedelta(hours=12, minutes=1)):
        expired = client.get(SESSION, headers=customer.headers)
    assert expired.status_code == 401
    # The token's exp is the absolute expiry, so the token itself is refused as expired.
    assert "expired" in expired.get_json()["detail"]


def test_deactivating_a_user_stops_their_token_at_once(
    app: Flask, client: FlaskClient, admin: Caller, customer: Caller
) -> None:
    assert client.get(SESSION, headers=customer.headers).status_code == 200  # cached now
    deactivated = client.post(f"/api/v1/users/{customer.uuid}/deactivate", headers=admin.headers)
    assert deactivated.status_code == 200
    refused = client.get(SESSION, headers=customer.headers)
    assert refused.status_code == 401
    assert problem_type(refused) == "urn:lapak:problem:session-revoked"
    assert login(client, customer.email).status_code == 401


def test_role_change_takes_effect_on_the_next_request(
    app: Flask, client: FlaskClient, admin: Caller, staff: Caller
) -> None:
    users = "/api/v1/users"
    assert client.get(users, headers=staff.headers).status_code == 403
    promoted = client.patch(f"{users}/{staff.uuid}", json={"role": "admin"}, headers=admin.headers)
    assert promoted.status_code == 200
    assert client.get(users, headers=staff.headers).status_code == 200


def test_admin_revokes_every_session_of_a_user(
    client: FlaskClient, admin: Caller, customer: Caller
) -> None:
    path = f"/api/v1/auth/users/{customer.uuid}/revoke-sessions"
    assert client.post(path, headers=customer.headers).status_code == 403
    revoked = client.post(path, headers=admin.headers)
    assert revoked.get_json() == {"revoked": 1}
    assert client.get(SESSION, headers=customer.headers).status_code == 401


def test_login_rehashes_a_password_made_with_older_parameters(
    make_app: Callable[..., Flask], app: Flask, make_user: Callable
) -> None:
    user_id, _, email = make_user()
    stronger = make_app(
        module_env={"password_memory_kib": "20480", "password_time_cost": "2",
                    "password_parallelism": "1"}
    )  # fmt: skip
    with stronger.app_context():
        old_hash = Session().get(User, user_id).password_hash
    assert "m=19456" in old_hash
    assert login(stronger.test_client(), email).status_code == 200
    with stronger.app_context():
        Session.remove()
        new_hash = Session().get(User, user_id).password_hash
    assert "m=20480" in new_hash
    assert login(stronger.test_client(), email, PASSWORD).status_code == 200


def test_inactive_or_passwordless_users_cannot_log_in(
    client: FlaskClient, make_user: Callable
) -> None:
    _, _, inactive = make_user(active=False)
    _, _, imported = make_user(password=None)
    for email in (inactive, imported):
        refused = login(client, email)
        assert refused.status_code == 401
        assert problem_type(refused) == "urn:lapak:problem:invalid-credentials"


def test_an_imported_bcrypt_hash_logs_in_and_is_replaced_by_argon2id(
    app: Flask, client: FlaskClient, make_user: Callable
) -> None:
    import bcrypt
    from sqlalchemy import update

    user_id, _, email = make_user(password=None)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    with app.app_context():
        Session().execute(update(User).where(User.id == user_id).values(password_hash=legacy))
        Session().commit()
    assert login(client, email, "not the password").status_code == 401
    assert login(client, email).status_code == 200
    with app.app_context():
        Session.remove()
        assert Session().get(User, user_id).password_hash.startswith("$argon2id$")
    assert login(client, email).status_code == 200


def sid_of(token: str) -> uuid.UUID:
    return uuid.UUID(jwt.decode(token, options={"verify_signature": False})["sid"])


def test_many_sessions_are_checked_in_one_query_each_with_its_own_verdict(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    roles = ("customer", "seller", "staff", "customer", "admin")
    fine, replaced, left, deactivated, stale = (log_in_as(role) for role in roles)
    assert login(client, replaced.email).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=left.headers).status_code == 204
    with app.app_context():
        Session().get(User, deactivated.user_id).active = False
        Session().commit()
    unknown = uuid.uuid4()
    asked = [(sid_of(c.token), c.uuid) for c in (fine, replaced, left, deactivated)]
    asked += [(sid_of(stale.token), fine.uuid), (unknown, fine.uuid)]  # another's sid; no such

    with app.app_context():
        engine = app.extensions["lapak.db"].primary
        statements: list[str] = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            verdicts = check_sessions(asked)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        with travel(timedelta(minutes=31)):
            idle = check_sessions([(sid_of(fine.token), fine.uuid)])

    assert len(statements) == 1
    assert [getattr(verdicts[sid], "code", "ok") for sid, _ in asked] == [
        "ok", "session-replaced", "session-revoked", "session-revoked", "session-revoked",
        "session-revoked",
    ]  # fmt: skip
    assert verdicts[sid_of(fine.token)].role == "customer"  # type: ignore[union-attr]
    assert "deactivated" in str(verdicts[sid_of(deactivated.token)].detail)  # type: ignore[union-attr]
    assert idle[sid_of(fine.token)].code == "session-expired"  # type: ignore[union-attr]
