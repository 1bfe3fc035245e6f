"""Signed requests across processes and Redis outages, and the refusals that must not leak:
replays in the database, an unreadable secret, best-effort ``last_used_at``, the raw path."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app import clock
from app.clock import travel
from app.config import SettingsError
from modules.auth import replay
from modules.auth.api_keys import MAX_LIVE_KEYS, IssuedKey
from modules.auth.models import ApiKey
from modules.auth.signing import raw_path, request_target
from modules.user.services import create_user
from tests.conftest import redis_outage_app
from tests.modules.auth.test_api_keys import (
    KEYS,
    ORDERS,
    PRODUCTS,
    Key,
    body_of,
    create_key,
    lapak_signed_headers,
    now_stamp,
    problem,
    signed,
)
from tests.modules.conftest import PASSWORD, Caller, login
from tests.servers import RedisServer

PRODUCT = {"name": "BANDENG", "list_price": "37000.00"}


def embedded_seller(app: Flask, email: str) -> Caller:
    client = app.test_client()
    with app.app_context():
        create_user(email, role="seller", password=PASSWORD)
    token = login(client, email).get_json()["access_token"]
    return Caller(email, None, 0, token)  # type: ignore[arg-type]


# --- replays across processes and outages ----------------------------------------------------


def test_two_processes_on_one_sqlite_file_accept_a_signed_request_once(
    make_embedded_app: Callable[..., Flask],
) -> None:
    one, two = make_embedded_app(), make_embedded_app()  # two workers, one database file
    seller = embedded_seller(one, "toko@example.test")
    key = create_key(one.test_client(), seller, ["orders:read"])
    headers = lapak_signed_headers(key.id, key.secret, "GET", ORDERS, b"", now_stamp())
    assert one.test_client().get(ORDERS, headers=headers).status_code == 200
    replayed = two.test_client().get(ORDERS, headers=headers)
    assert (replayed.status_code, problem(replayed)) == (401, "api-request-replayed")


def test_no_replay_opens_across_a_redis_outage(
    make_app: Callable[..., Flask],
    own_redis: RedisServer,
    log_in_as: Callable[..., Caller],
) -> None:
    app = redis_outage_app(make_app, own_redis)
    client = app.test_client()
    key = create_key(client, log_in_as("seller"), ["orders:read"])

    def request(path: str, stamp: int) -> dict[str, str]:
        return lapak_signed_headers(key.id, key.secret, "GET", path, b"", stamp)

    accepted_by_redis = request(f"{ORDERS}?n=1", now_stamp())
    forward_dated = request(f"{ORDERS}?n=2", now_stamp() + 120)
    assert client.get(f"{ORDERS}?n=1", headers=accepted_by_redis).status_code == 200
    assert client.get(f"{ORDERS}?n=2", headers=forward_dated).status_code == 200

    own_redis.stop()
    # Redis may have seen a request signed before the outage: refused, whatever it was.
    before = client.get(f"{ORDERS}?n=1", headers=accepted_by_redis)
    assert (before.status_code, problem(before)) == (401, "api-request-signed-before-outage")
    # A forward-dated one is in the database as well.
    ahead = client.get(f"{ORDERS}?n=2", headers=forward_dated)
    assert (ahead.status_code, problem(ahead)) == (401, "api-request-replayed")
    with travel(timedelta(seconds=2)):
        during = request(f"{ORDERS}?n=3", now_stamp())
        assert client.get(f"{ORDERS}?n=3", headers=during).status_code == 200
        again = client.get(f"{ORDERS}?n=3", headers=during)
        assert (again.status_code, problem(again)) == (401, "api-request-replayed")

        own_redis.start()
        # Redis never saw it, the database did: still refused once Redis is back.
        back = client.get(f"{ORDERS}?n=3", headers=during)
        assert (back.status_code, problem(back)) == (401, "api-request-replayed")
        assert (
            client.get(f"{ORDERS}?n=4", headers=request(f"{ORDERS}?n=4", now_stamp())).status_code
            == 200
        )


# --- refusals that must not leak or fail ----------------------------------------------------


def test_an_unreadable_secret_is_a_503_naming_the_key_only(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = create_key(client, log_in_as("seller"), ["orders:read"])
    foreign = Fernet(Fernet.generate_key()).encrypt(key.secret.encode()).decode()
    with app.extensions["lapak.db"].primary.begin() as connection:
        connection.execute(
            text("UPDATE auth_api_key SET secret = :s WHERE key_id = :k"),
            {"s": foreign, "k": key.id},
        )
    caplog.set_level(logging.WARNING, logger="lapak.auth")
    response = signed(client, key, "GET", ORDERS)
    assert response.status_code == 503, response.get_json()
    assert problem(response) == "api-key-secret-unreadable"
    assert int(response.headers["Retry-After"]) > 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert key.id in logged
    assert key.secret not in logged
    assert foreign not in logged


def test_a_failed_last_used_at_write_does_not_fail_the_request(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = create_key(client, log_in_as("seller"), ["orders:read"])
    caplog.set_level(logging.WARNING, logger="lapak.auth")
    with app.extensions["lapak.db"].primary.connect() as holder:
        # Another transaction holds the key's row (a lock timeout on PostgreSQL).
        holder.execute(
            text("SELECT id FROM auth_api_key WHERE key_id = :k FOR UPDATE"), {"k": key.id}
        )
        response = signed(client, key, "GET", ORDERS)
        holder.rollback()
    assert response.status_code == 200, response.get_json()
    assert any(
        "last_used_at" in r.getMessage() and key.id in r.getMessage() for r in caplog.records
    )


def test_a_revoked_keys_state_is_told_only_to_a_correctly_signed_request(
    client: FlaskClient, admin: Caller
) -> None:
    key = create_key(client, admin, ["products:write"])
    assert client.post(f"{KEYS}/{key.id}/revoke", headers=admin.headers).status_code == 200
    forged = Key(key.id, "lsk_" + "x" * 43)
    response = signed(client, forged, "POST", PRODUCTS, body_of(PRODUCT))
    assert (response.status_code, problem(response)) == (401, "api-signature-invalid")
    response = signed(client, key, "POST", PRODUCTS, body_of(PRODUCT))
    assert (response.status_code, problem(response)) == (401, "api-key-revoked")


def test_a_legacy_key_may_not_send_an_unsafe_request_without_a_body(
    client: FlaskClient, admin: Caller
) -> None:
    key = create_key(client, admin, ["products:write"], signature_version="legacy")
    stamp = str(now_stamp())
    # The signature of no body: the same as that of any GET in this second.
    legacy = hmac.new(key.secret.encode(), stamp.encode(), hashlib.sha256).hexdigest()
    headers = {"X-API-Key": key.id, "X-Timestamp": stamp, "X-Signature": legacy}
    response = client.post(PRODUCTS, headers=headers)
    assert (response.status_code, problem(response)) == (401, "api-legacy-empty-body")


# --- the raw path ----------------------------------------------------------------------------


def test_the_raw_path_is_signed_as_sent() -> None:
    environ = {"RAW_URI": "/api/v1/files/a%2Fb?x=1", "REQUEST_URI": "/ignored"}
    assert raw_path(environ) == "/api/v1/files/a%2Fb"
    assert request_target("/api/v1/files/a/b", b"x=1", raw=raw_path(environ)) == (
        "/api/v1/files/a%2Fb?x=1"
    )
    assert raw_path({"REQUEST_URI": "/a%2fb"}) == "/a%2fb"
    # Without it (or with an absolute form) the decoded path is encoded again.
    assert raw_path({"RAW_URI": "http://x/a"}) is None
    assert request_target("/a/b", b"", raw=raw_path({})) == "/a/b"


def test_a_path_sent_with_needless_escapes_verifies_as_sent(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    key = create_key(client, log_in_as("seller"), ["orders:read"])
    sent = ORDERS.replace("/orders", "/%6Frders")  # "o" escaped: the same route
    response = signed(client, key, "GET", sent)
    assert response.status_code == 200, response.get_json()


# --- managing keys ---------------------------------------------------------------------------


def test_expired_keys_do_not_count_against_the_live_key_limit(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    soon = (clock.now() + timedelta(minutes=5)).isoformat()
    for _ in range(MAX_LIVE_KEYS):
        create_key(client, seller, ["orders:read"], expires_at=soon)
    full = client.post(KEYS, json={"name": "x", "scopes": ["orders:read"]},
                       headers=seller.headers)  # fmt: skip
    assert full.status_code == 422
    with travel(timedelta(minutes=6)):
        create_key(client, seller, ["orders:read"])


def test_a_huge_grace_period_is_a_422_not_an_overflow(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])
    for hours in (10**20, 10**6, 169):
        response = client.post(f"{KEYS}/{key.id}/roll", json={"grace_hours": hours},
                               headers=seller.headers)  # fmt: skip
        assert response.status_code == 422, (hours, response.get_json())
        assert "grace_hours" in str(response.get_json()["errors"])


def test_the_configured_maximum_grace_is_bounded_too(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    with pytest.raises(SettingsError, match="MAX_GRACE_HOURS must be at most"):
        make_app(module_env={**config["module_env"], "api_key_max_grace_hours": str(10**12)})


def test_an_issued_keys_repr_hides_the_secret() -> None:
    issued = IssuedKey(ApiKey(key_id="lpk_x"), "lsk_very-secret")
    assert "lsk_very-secret" not in repr(issued)


def test_the_replay_purge_is_a_periodic_job(app: Flask) -> None:
    periodic = app.extensions["lapak.registry"].wiring.periodic
    assert any(p.func is replay.forget_expired for p in periodic)
