"""Login throttling: per-account and per-IP lockouts with Retry-After, and no user enumeration.

Unknown emails and wrong passwords must be indistinguishable: the same answers before and after
a lockout, and the same argon2 cost (a dummy hash is verified when there is no user).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable
from typing import Any, Literal

import pytest
import redis
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.modules.conftest import PASSWORD
from tests.servers import Services

LOGIN = "/api/v1/auth/login"
PROBLEM = "application/problem+json"
LOCKED = "urn:lapak:problem:login-locked"
INVALID = "urn:lapak:problem:invalid-credentials"
WRONG = "not the password at all"
LOCKOUT_SECONDS = 30


def attempt(
    client: FlaskClient, email: str, password: str = PASSWORD, ip: str = "127.0.0.1"
) -> TestResponse:
    return client.post(
        LOGIN,
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


@pytest.fixture
def throttled_app(make_app: Callable[..., Flask], config: dict[str, Any]) -> Callable[..., Flask]:
    """An app with small limits: ``throttled_app(account=3, ip=50, redis_url=None)``."""

    def build(account: int = 3, ip: int = 50, **overrides: Any) -> Flask:
        return make_app(
            module_env={
                **config["module_env"],  # the fast argon2 parameters of the test harness
                "login_max_account_failures": str(account),
                "login_max_ip_failures": str(ip),
                "login_lockout_seconds": str(LOCKOUT_SECONDS),
            },
            **overrides,
        )

    return build


def assert_locked(response: TestResponse) -> int:
    """The response is a lockout; returns its Retry-After in seconds."""
    assert response.status_code == 429, response.get_json()
    assert response.content_type == PROBLEM
    assert response.get_json()["type"] == LOCKED
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after  # delay-seconds, not an HTTP date
    assert 0 < int(retry_after) <= LOCKOUT_SECONDS
    return int(retry_after)


def comparable(response: TestResponse) -> dict[str, Any]:
    """What a client can see of a failed login, minus what differs on every request."""
    body = {k: v for k, v in response.get_json().items() if k != "request_id"}
    varying = ("X-Request-ID", "Date")
    header_names = sorted(name for name, _ in response.headers.items() if name not in varying)
    # Retry-After counts down by the second; the two lockouts may be read a second apart.
    shown = re.sub(r"\d+", "N", repr(sorted(body.items())))
    return {"status": response.status_code, "body": shown, "headers": header_names}


def test_account_locks_after_the_failure_limit_even_for_the_right_password(
    throttled_app: Callable[..., Flask], make_user: Callable[..., Any]
) -> None:
    client = throttled_app(account=3).test_client()
    _, _, email = make_user()
    for _ in range(3):
        assert attempt(client, email, WRONG).status_code == 401
    assert_locked(attempt(client, email))  # the right password, refused unchecked
    assert_locked(attempt(client, email.upper()))  # the lock is on the email, in any case


def test_lockout_does_not_reveal_whether_the_email_exists(
    throttled_app: Callable[..., Flask], make_user: Callable[..., Any]
) -> None:
    client = throttled_app(account=3).test_client()
    _, _, known = make_user()
    unknown = "nobody.here@example.test"
    failures = [(attempt(client, known, WRONG), attempt(client, unknown, WRONG)) for _ in range(3)]
    for wrong_password, unknown_email in failures:
        assert wrong_password.get_json()["type"] == INVALID
        assert comparable(wrong_password) == comparable(unknown_email)
        challenge = wrong_password.headers["WWW-Authenticate"]
        assert challenge == unknown_email.headers["WWW-Authenticate"]
    locked_known, locked_unknown = attempt(client, known), attempt(client, unknown)
    assert_locked(locked_known)
    assert_locked(locked_unknown)
    assert comparable(locked_known) == comparable(locked_unknown)
    assert {k: locked_known.get_json()[k] for k in ("type", "title", "status")} == {
        k: locked_unknown.get_json()[k] for k in ("type", "title", "status")
    }


def test_ip_limit_locks_that_ip_across_emails_but_not_another_ip(
    throttled_app: Callable[..., Flask], make_user: Callable[..., Any]
) -> None:
    client = throttled_app(account=100, ip=4).test_client()
    _, _, victim = make_user()
    attacker, neighbour = "203.0.113.7", "198.51.100.20"
    for index in range(4):  # four different emails: no account reaches its own limit
        assert attempt(client, f"guess.{index}@example.test", WRONG, ip=attacker).status_code == 401
    assert_locked(attempt(client, victim, ip=attacker))
    assert_locked(attempt(client, "guess.new@example.test", WRONG, ip=attacker))
    assert attempt(client, victim, ip=neighbour).status_code == 200


def test_a_successful_login_resets_the_account_counter(
    throttled_app: Callable[..., Flask], make_user: Callable[..., Any]
) -> None:
    client = throttled_app(account=3).test_client()
    _, _, email = make_user()
    for _ in range(3):  # two failures, then a success, three times: never three in a row
        assert attempt(client, email, WRONG).status_code == 401
        assert attempt(client, email, WRONG).status_code == 401
        assert attempt(client, email).status_code == 200
    # Without the resets the account would have six failures and be locked by now.
    assert attempt(client, email, WRONG).status_code == 401


def test_embedded_throttle_locks_without_redis(
    throttled_app: Callable[..., Flask], make_user: Callable[..., Any], services: Services
) -> None:
    app = throttled_app(account=3, ip=5, redis_url=None)
    assert app.extensions["auth"].throttle.redis is None
    client = app.test_client()
    _, _, email = make_user()
    for _ in range(3):
        assert attempt(client, email, WRONG).status_code == 401
    assert_locked(attempt(client, email))
    # The per-IP limit too: two more failures from this IP with other emails reach five.
    for index in range(2):
        assert attempt(client, f"other.{index}@example.test", WRONG).status_code == 401
    assert_locked(attempt(client, "someone.else@example.test"))
    assert attempt(client, "someone.else@example.test", ip="192.0.2.1").status_code == 401
    # All of it lived in this process: nothing reached the Redis the other apps use.
    assert redis.Redis.from_url(services.redis_url).keys("lapak:auth:throttle:*") == []


@pytest.mark.parametrize("store", ["redis", "embedded"])
def test_parallel_guesses_get_no_more_password_checks_than_the_limit(
    throttled_app: Callable[..., Flask], make_user: Callable[..., Any], store: str
) -> None:
    app = throttled_app(account=3, **({"redis_url": None} if store == "embedded" else {}))
    _, _, email = make_user()
    guesses = 12
    start = threading.Barrier(guesses)
    statuses: list[int] = []

    def guess() -> None:
        client = app.test_client()
        start.wait()
        statuses.append(attempt(client, email, WRONG).status_code)

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [401] * 3 + [429] * (guesses - 3)
    # The account stays locked (the refused guesses may have lengthened the lockout).
    after = attempt(app.test_client(), email)
    assert after.status_code == 429
    assert int(after.headers["Retry-After"]) > 0


def test_a_success_does_not_use_up_the_ip_limit(
    throttled_app: Callable[..., Flask], make_user: Callable[..., Any]
) -> None:
    # Many people behind one NAT address log in all day: only failures count against the IP.
    client = throttled_app(account=100, ip=3).test_client()
    emails = [make_user()[2] for _ in range(2)]
    for _ in range(3):
        for email in emails:
            assert attempt(client, email).status_code == 200
    assert attempt(client, "guess@example.test", WRONG).status_code == 401
    assert attempt(client, emails[0]).status_code == 200


class CountingHasher(PasswordHasher):
    """argon2's own hasher, counting verifications (timings are for bench/, not tests)."""

    verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        type(self).verified += 1
        return super().verify(hash, password)


def test_unknown_email_and_passwordless_user_spend_one_argon2_verification_like_a_wrong_password(
    throttled_app: Callable[..., Flask], make_user: Callable[..., Any]
) -> None:
    app = throttled_app(account=100, ip=100)
    real = app.extensions["user.passwords"]
    counting = CountingHasher(
        time_cost=real.hasher.time_cost,
        memory_cost=real.hasher.memory_cost,
        parallelism=real.hasher.parallelism,
    )
    app.extensions["user.passwords"] = dataclasses.replace(real, hasher=counting)
    client = app.test_client()
    _, _, email = make_user()
    _, _, imported = make_user(password=None)
    for login_email in (email, "nobody@example.test", imported):
        CountingHasher.verified = 0
        assert attempt(client, login_email, WRONG).status_code == 401
        assert CountingHasher.verified == 1, login_email
