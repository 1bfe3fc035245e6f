"""Becoming a seller under each ``LAPAK_SELLER_SIGNUP``: closed (admins make sellers), review
(sign up, sell once verified) and open (sell at once); bad sign-ups write nothing; bad settings
refuse to start; and the whole flow on the embedded default."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.test import TestResponse

from app.config import SettingsError
from app.db import Session, close_session, transaction
from app.vault import get_vault
from modules.seller.sign_up import SignUp
from modules.user.passwords import Passwords
from modules.user.services import create_user
from tests.modules.conftest import PASSWORD, Caller, bearer, login
from tests.servers import Services

from .conftest import ACCOUNT_NUMBER, BANK, call, events, ok, problem, sql

SIGN_UP = {
    "email": "budi@toko.example",
    "password": PASSWORD,
    "name": "Budi Santoso",
    "phone": "0812 3456 789",
    "display_name": "Toko Budi Makmur",
}
PRODUCTS = "/api/v1/marketplace/products"
PRODUCT = {"name": "lele", "list_price": "20000"}


def sign_up_mode(config: dict[str, Any], mode: str) -> None:
    config["module_env"] = {**config["module_env"], "seller_signup": mode}


@pytest.fixture
def review(config: dict[str, Any]) -> None:
    sign_up_mode(config, "review")


@pytest.fixture
def open_sign_up(config: dict[str, Any]) -> None:
    sign_up_mode(config, "open")


def signed_up(client: FlaskClient, body: dict[str, Any] = SIGN_UP) -> tuple[dict[str, Any], Caller]:
    answer = call(client, None, "POST", "/sign-up", json=body)
    made = ok(answer, 201)
    assert answer.headers["Location"].endswith("/api/v1/sellers/me")
    token = login(client, body["email"], body["password"]).get_json()["access_token"]
    return made, Caller(body["email"], uuid.UUID(made["id"]), 0, token)


def users(services: Services) -> int:
    return sql(services, "SELECT count(*) FROM user_account")[0][0]


def test_closed_by_default_admins_make_sellers(
    client: FlaskClient, services: Services, admin: Caller
) -> None:
    before = users(services)
    refused = problem(call(client, None, "POST", "/sign-up", json=SIGN_UP), 403,
                      "seller-sign-up-closed")  # fmt: skip
    assert "admin" in refused["detail"]
    assert users(services) == before
    assert sql(services, "SELECT count(*) FROM seller_profile") == [(0,)]
    body = {**SIGN_UP, "role": "seller"}
    del body["display_name"]
    assert client.post("/api/v1/users", json=body, headers=admin.headers).status_code == 201
    seller = bearer(login(client, SIGN_UP["email"]).get_json()["access_token"])
    assert client.post(PRODUCTS, json=PRODUCT, headers=seller).status_code == 201


@pytest.mark.usefixtures("review")
def test_review_sellers_sell_once_staff_verify_them(
    client: FlaskClient, services: Services, staff: Caller, admin: Caller
) -> None:
    made, seller = signed_up(client)
    assert (made["display_name"], made["contact_email"], made["contact_phone"]) == (
        "Toko Budi Makmur",
        "budi@toko.example",
        "+628123456789",
    )
    assert (made["can_sell"], made["kyc"]["state"], made["active"]) == (False, "unverified", True)
    ((role, password_hash),) = sql(
        services, "SELECT role, password_hash FROM user_account WHERE email = %s", SIGN_UP["email"]
    )
    assert role == "seller"
    assert password_hash.startswith("$argon2id$")
    assert events(services) == [
        ("seller.signed_up", {"seller": made["id"], "mode": "review", "can_sell": False})
    ]
    assert (
        ok(call(client, staff, "GET", "", query_string={"can_sell": "false"}))["items"][0]["id"]
        == made["id"]
    )

    # Logged in, they complete their profile, but may not put anything on sale yet.
    refused = client.post(PRODUCTS, json=PRODUCT, headers=seller.headers)
    problem(refused, 403, "selling-not-allowed")
    for_them = {**PRODUCT, "seller": made["id"]}
    assert (
        "seller"
        in problem(
            client.post(PRODUCTS, json=for_them, headers=admin.headers), 422, "validation-failed"
        )["errors"]
    )
    ok(call(client, seller, "PATCH", "/me", json={"bank_account": BANK}))
    ok(call(client, seller, "POST", "/me/kyc"))
    problem(client.post(PRODUCTS, json=PRODUCT, headers=seller.headers), 403,
            "selling-not-allowed")  # fmt: skip
    ok(call(client, staff, "POST", f"/{made['id']}/kyc/reject", json={"reason": "blurry"}))
    problem(client.post(PRODUCTS, json=PRODUCT, headers=seller.headers), 403,
            "selling-not-allowed")  # fmt: skip

    ok(call(client, seller, "POST", "/me/kyc"))
    verified = ok(call(client, staff, "POST", f"/{made['id']}/kyc/approve"))
    assert verified["can_sell"] is True
    product = client.post(PRODUCTS, json=PRODUCT, headers=seller.headers)
    assert product.status_code == 201, product.get_json()
    assert client.post(PRODUCTS, json=for_them, headers=admin.headers).status_code == 201


@pytest.mark.usefixtures("open_sign_up")
def test_open_sign_up_sells_at_once_but_is_not_verified(
    client: FlaskClient, services: Services
) -> None:
    body = {"email": "sari@toko.example", "password": PASSWORD}
    made, seller = signed_up(client, body)
    assert (made["can_sell"], made["kyc"]["state"]) == (True, "unverified")
    assert made["display_name"] == "sari"  # no names given: the email's
    assert client.post(PRODUCTS, json=PRODUCT, headers=seller.headers).status_code == 201
    assert events(services)[0] == (
        "seller.signed_up",
        {"seller": made["id"], "mode": "open", "can_sell": True},
    )


@pytest.mark.usefixtures("review")
@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**SIGN_UP, "email": "not-an-email"}, 422, "email"),
        ({**SIGN_UP, "password": "short"}, 422, "password"),
        ({**SIGN_UP, "password": SIGN_UP["email"]}, 422, "password"),
        ({k: v for k, v in SIGN_UP.items() if k != "password"}, 422, "password"),
        ({**SIGN_UP, "phone": "call me"}, 422, "phone"),
        ({**SIGN_UP, "display_name": "  "}, 422, "display_name"),
        ({**SIGN_UP, "role": "admin"}, 422, "role"),
        ({**SIGN_UP, "can_sell": True}, 422, "can_sell"),
        ({**SIGN_UP, "email": "Taken@Toko.example"}, 409, "email"),
    ],
)
def test_a_bad_sign_up_writes_nothing(
    client: FlaskClient,
    services: Services,
    make_user: Callable[..., Any],
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    make_user("taken@toko.example", role="customer")
    before = users(services)
    answer = call(client, None, "POST", "/sign-up", json=body)
    refused = problem(answer, status, "email-taken" if status == 409 else "validation-failed")
    assert field in refused["errors"]
    assert users(services) == before
    assert sql(services, "SELECT count(*) FROM seller_profile") == [(0,)]
    assert events(services) == []
    assert PASSWORD not in answer.get_data(as_text=True)


@pytest.mark.parametrize("value", ["maybe", "", "closed,open", "1"])
def test_a_bad_sign_up_setting_refuses_to_start(
    make_embedded_app: Callable[..., Flask], value: str
) -> None:
    with pytest.raises(SettingsError, match="LAPAK_SELLER_SIGNUP must be one of closed, review"):
        make_embedded_app(module_env={"seller_signup": value})


def test_the_settings_read_any_letter_case(make_embedded_app: Callable[..., Flask]) -> None:
    app = make_embedded_app(module_env={"seller_signup": " Open "})
    assert app.extensions["seller.settings"].sign_up == "open"


def test_the_embedded_default_runs_the_whole_flow(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app(module_env={"seller_signup": "review"})
    with app.app_context(), transaction():
        create_user("staff@example.test", role="staff", password=PASSWORD)
    client = app.test_client()
    staff = bearer(login(client, "staff@example.test").get_json()["access_token"])
    made, seller = signed_up(client)
    assert made["can_sell"] is False
    ok(call(client, seller, "PATCH", "/me", json={
        "bank_account": BANK, "payout_schedule": {"interval": "weekly", "weekday": "friday"},
    }))  # fmt: skip
    ok(call(client, seller, "POST", "/me/kyc"))
    pending = client.get("/api/v1/sellers", query_string={"kyc_state": "pending"}, headers=staff)
    assert [s["id"] for s in ok(pending)["items"]] == [made["id"]]
    approved = ok(client.post(f"/api/v1/sellers/{made['id']}/kyc/approve", headers=staff))
    assert (approved["kyc"]["state"], approved["can_sell"]) == ("verified", True)
    assert approved["bank_account"]["number"] == "•••• 3977"
    assert client.post(PRODUCTS, json=PRODUCT, headers=seller.headers).status_code == 201
    again = client.post(f"/api/v1/sellers/{made['id']}/kyc/approve", headers=staff)
    problem(again, 409, "invalid-kyc-transition")
    with app.app_context():
        stored = Session().execute(text("SELECT bank_account_number FROM seller_profile")).scalar()
        close_session()
        assert stored.startswith("gAAAAA")
        assert get_vault().unseal(stored) == ACCOUNT_NUMBER.replace("-", "")


def sign_up_from(client: FlaskClient, email: str, ip: str, **headers: str) -> TestResponse:
    body = {"email": email, "password": PASSWORD}
    return client.post(
        "/api/v1/sellers/sign-up", json=body, environ_base={"REMOTE_ADDR": ip}, headers=headers
    )


def throttled(answer: TestResponse) -> int:
    """The answer is a sign-up throttle; its Retry-After in seconds."""
    body = problem(answer, 429, "sign-up-throttled")
    wait = answer.headers["Retry-After"]
    assert wait.isdigit(), wait  # delay-seconds, not an HTTP date
    assert 0 < int(wait) <= 3600
    assert body["retry_after"] == int(wait)
    return int(wait)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords hashed from now on (argon2, the cost the throttle spares)."""
    hashed: list[str] = []
    real = Passwords.hash

    def counting(self: Passwords, password: str) -> str:
        hashed.append(password)
        return real(self, password)

    monkeypatch.setattr(Passwords, "hash", counting)
    return hashed


@pytest.mark.parametrize("redis", ["redis", "redis down", "embedded"])
def test_sign_ups_per_ip_are_throttled_before_any_password_is_hashed(
    make_app: Callable[..., Flask],
    make_embedded_app: Callable[..., Flask],
    config: dict[str, Any],
    services: Services,
    hashes: list[str],
    redis: str,
) -> None:
    env = {**config["module_env"], "seller_signup": "open", "seller_signup_max_per_ip": "2"}
    if redis == "embedded":
        client = make_embedded_app(module_env=env).test_client()
    else:
        down = {"redis_url": "redis://127.0.0.1:9/0"} if redis == "redis down" else {}
        client = make_app(module_env=env, **down).test_client()
    ok(sign_up_from(client, "a@toko.example", "192.0.2.7"), 201)
    # A taken email counts too: the limit bounds how many emails one address probes.
    problem(sign_up_from(client, "a@toko.example", "192.0.2.7"), 409, "email-taken")
    assert len(hashes) == 2

    throttled(sign_up_from(client, "b@toko.example", "192.0.2.7"))
    assert len(hashes) == 2  # refused before the argon2 hash
    if redis != "embedded":
        assert sql(services, "SELECT count(*) FROM user_account WHERE email LIKE 'b@%%'") == [(0,)]
    ok(sign_up_from(client, "b@toko.example", "198.51.100.3"), 201)  # another client


def test_the_sign_up_throttle_counts_the_client_behind_trusted_proxies(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    env = {**config["module_env"], "seller_signup": "review", "seller_signup_max_per_ip": "1"}
    client = make_app(module_env=env, trusted_proxy_hops=1).test_client()
    proxy = "10.0.0.5"
    ok(sign_up_from(client, "a@toko.example", proxy, **{"X-Forwarded-For": "203.0.113.1"}), 201)
    ok(sign_up_from(client, "b@toko.example", proxy, **{"X-Forwarded-For": "203.0.113.2"}), 201)
    throttled(sign_up_from(client, "c@toko.example", proxy, **{"X-Forwarded-For": "203.0.113.1"}))


@pytest.mark.parametrize("name", ["seller_signup_max_per_ip", "seller_signup_window_seconds"])
def test_a_bad_sign_up_throttle_setting_refuses_to_start(
    make_embedded_app: Callable[..., Flask], name: str
) -> None:
    with pytest.raises(SettingsError, match=f"LAPAK_{name.upper()}"):
        make_embedded_app(module_env={name: "0"})


def test_a_sign_up_request_does_not_show_its_password() -> None:
    request = SignUp(email="budi@toko.example", password=PASSWORD, name="Budi")
    assert PASSWORD not in repr(request)
    assert "budi@toko.example" in repr(request)
