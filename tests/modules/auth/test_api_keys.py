"""API keys: creating and managing them, and signed requests against real PostgreSQL and Redis
(and the embedded SQLite default), signed with the README's own snippet."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from app import clock
from app.clock import travel
from app.db import Session
from modules.auth.models import ApiKey
from modules.marketplace.models import Product
from modules.user.services import create_user, deactivate_user
from tests.modules.conftest import PASSWORD, Caller, login

README = Path(__file__).resolve().parents[3] / "README.md"
KEYS = "/api/v1/auth/api-keys"
ORDERS = "/api/v1/marketplace/orders"
PRODUCTS = "/api/v1/marketplace/products"
PRODUCT = {"name": "BANDENG", "list_price": "37000.00"}
PROBLEM = "urn:lapak:problem:"


def readme_signer() -> Callable[..., dict[str, str]]:
    """``lapak_signed_headers`` exactly as the README's API keys section prints it."""
    section = README.read_text(encoding="utf-8").split("## API keys", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace["lapak_signed_headers"]


lapak_signed_headers = readme_signer()


@dataclass(frozen=True)
class Key:
    id: str
    secret: str


def now_stamp() -> int:
    return int(clock.now().timestamp())


def create_key(client: FlaskClient, caller: Caller, scopes: list[str], **extra: Any) -> Key:
    response = client.post(KEYS, json={"name": "shop", "scopes": scopes, **extra},
                           headers=caller.headers)  # fmt: skip
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return Key(body["id"], body["secret"])


def signed(
    client: FlaskClient,
    key: Key,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
) -> TestResponse:
    """A request signed now (by the app's clock, which tests move) with the README snippet."""
    headers = lapak_signed_headers(
        key.id, key.secret, method, path, body, now_stamp() if timestamp is None else timestamp
    )
    return client.open(
        path, method=method, data=body, headers=headers, content_type="application/json"
    )


def product_count(app: Flask) -> int:
    with app.app_context():
        Session.remove()
        return Session().scalar(select(func.count()).select_from(Product)) or 0


def problem(response: TestResponse) -> str:
    return response.get_json()["type"].removeprefix(PROBLEM)


def body_of(product: dict[str, str]) -> bytes:
    return json.dumps(product).encode()


# --- the happy paths -------------------------------------------------------------------------


def test_a_signed_get_with_a_query_passes_as_the_keys_owner(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])
    assert key.id.startswith("lpk_")
    assert key.secret.startswith("lsk_")

    response = signed(client, key, "GET", f"{ORDERS}?limit=5&state=draft")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["items"] == []
    # The same path without its query is another signed string: a fresh signature passes too.
    assert signed(client, key, "GET", ORDERS).status_code == 200


def test_a_signed_post_with_a_body_passes_and_acts_as_the_owner(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    key = create_key(client, admin, ["products:write", "products:read"])
    response = signed(client, key, "POST", PRODUCTS, body_of(PRODUCT))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["name"] == "BANDENG"
    assert product_count(app) == 1


def test_a_key_needs_the_views_scope_and_people_only_views_refuse_keys(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    key = create_key(client, admin, ["orders:read"])
    response = signed(client, key, "POST", PRODUCTS, body_of(PRODUCT))
    assert response.status_code == 403
    assert problem(response) == "scope-missing"
    assert "products:write" in response.get_json()["detail"]
    assert product_count(app) == 0
    # User administration and key management are for people only.
    for path in ("/api/v1/users", KEYS, "/api/v1/auth/session"):
        refused = signed(client, key, "GET", path)
        assert refused.status_code == 403, path
        assert problem(refused) == "scope-missing"


# --- the catalogue of refusals ---------------------------------------------------------------


def _drop(header: str) -> Callable[..., Any]:
    def mutate(request: dict[str, Any], key: Key) -> None:
        del request["headers"][header]

    return mutate


def _sign_other(send: str | None = None, **changes: Any) -> Callable[..., Any]:
    """Sign one request, send another: to ``send`` if given, the signed fields in ``changes``
    differ."""

    def mutate(request: dict[str, Any], key: Key) -> None:
        signed_as = {"method": "POST", **request, **changes}
        request["path"] = send or request["path"]
        request["headers"] = lapak_signed_headers(
            key.id,
            key.secret,
            signed_as["method"],
            signed_as["path"],
            signed_as["body"],
            now_stamp(),
        )

    return mutate


def _set_header(header: str, value: Callable[[Key], str]) -> Callable[..., Any]:
    def mutate(request: dict[str, Any], key: Key) -> None:
        request["headers"][header] = value(key)

    return mutate


def _flip_a_body_byte(request: dict[str, Any], key: Key) -> None:
    body = bytearray(request["body"])
    body[body.index(b"3")] = ord("4")  # 37000.00 -> 47000.00 after signing
    request["body"] = bytes(body)


def _stamped(offset: int) -> Callable[..., Any]:
    def mutate(request: dict[str, Any], key: Key) -> None:
        request["headers"] = lapak_signed_headers(
            key.id, key.secret, "POST", request["path"], request["body"], now_stamp() + offset
        )

    return mutate


def _alter_timestamp(request: dict[str, Any], key: Key) -> None:
    request["headers"]["X-Timestamp"] = str(int(request["headers"]["X-Timestamp"]) - 1)


def _wrong_secret(request: dict[str, Any], key: Key) -> None:
    request["headers"] = lapak_signed_headers(
        key.id, "lsk_" + "x" * 43, "POST", request["path"], request["body"], now_stamp()
    )


REFUSALS = {
    "no X-API-Key": (_drop("X-API-Key"), "api-key-missing"),
    "no X-Timestamp": (_drop("X-Timestamp"), "api-timestamp-missing"),
    "no X-Signature": (_drop("X-Signature"), "api-signature-missing"),
    "unknown key": (_set_header("X-API-Key", lambda k: "lpk_" + "0" * 22), "api-key-unknown"),
    "not a key id": (_set_header("X-API-Key", lambda k: "sk_live_123"), "api-key-unknown"),
    "timestamp not a number": (
        _set_header("X-Timestamp", lambda k: "12:00"),
        "api-timestamp-malformed",
    ),
    "wrong secret": (_wrong_secret, "api-signature-invalid"),
    "one body byte flipped": (_flip_a_body_byte, "api-signature-invalid"),
    "path swapped": (_sign_other(path=ORDERS), "api-signature-invalid"),
    "query swapped": (
        _sign_other(send=f"{PRODUCTS}?x=1", path=f"{PRODUCTS}?x=2"),
        "api-signature-invalid",
    ),
    "query dropped": (_sign_other(path=f"{PRODUCTS}?x=1"), "api-signature-invalid"),
    "query added": (_sign_other(send=f"{PRODUCTS}?x=1"), "api-signature-invalid"),
    "method swapped": (_sign_other(method="PUT"), "api-signature-invalid"),
    "zero signature": (_set_header("X-Signature", lambda k: "0" * 64), "api-signature-invalid"),
    "timestamp altered": (_alter_timestamp, "api-signature-invalid"),
    "signature not hex": (_set_header("X-Signature", lambda k: "é" * 64), "api-signature-invalid"),
    "too old": (_stamped(-301), "api-timestamp-too-old"),
    "too far ahead": (_stamped(+301), "api-timestamp-too-new"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_signature_is_refused_with_its_own_type_and_nothing_is_done(
    app: Flask, client: FlaskClient, admin: Caller, case: str
) -> None:
    mutate, code = REFUSALS[case]
    key = create_key(client, admin, ["products:write"])
    body = body_of(PRODUCT)
    request = {
        "path": PRODUCTS,
        "body": body,
        "headers": lapak_signed_headers(key.id, key.secret, "POST", PRODUCTS, body, now_stamp()),
    }
    mutate(request, key)
    response = client.post(request["path"], data=request["body"], headers=request["headers"],
                           content_type="application/json")  # fmt: skip
    assert response.status_code == 401, response.get_json()
    assert problem(response) == code
    assert response.get_json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("LapakSignature")
    assert product_count(app) == 0


def test_a_signed_request_is_accepted_once(app: Flask, client: FlaskClient, admin: Caller) -> None:
    key = create_key(client, admin, ["products:write"])
    body = body_of(PRODUCT)
    headers = lapak_signed_headers(key.id, key.secret, "POST", PRODUCTS, body, now_stamp())
    first = client.post(PRODUCTS, data=body, headers=headers, content_type="application/json")
    assert first.status_code == 201
    again = client.post(PRODUCTS, data=body, headers=headers, content_type="application/json")
    assert again.status_code == 401
    assert problem(again) == "api-request-replayed"
    assert product_count(app) == 1


def test_revoked_expired_and_deactivated_owners_keys_are_refused(
    app: Flask, client: FlaskClient, admin: Caller, log_in_as: Callable[..., Caller]
) -> None:
    revoked = create_key(client, admin, ["products:write"])
    assert client.post(f"{KEYS}/{revoked.id}/revoke", headers=admin.headers).status_code == 200
    response = signed(client, revoked, "POST", PRODUCTS, body_of(PRODUCT))
    assert (response.status_code, problem(response)) == (401, "api-key-revoked")

    soon = (clock.now() + timedelta(minutes=10)).isoformat()
    expiring = create_key(client, admin, ["products:write"], expires_at=soon)
    with travel(timedelta(minutes=11)):
        response = signed(client, expiring, "POST", PRODUCTS, body_of(PRODUCT))
    assert (response.status_code, problem(response)) == (401, "api-key-expired")

    seller = log_in_as("seller")
    sellers_key = create_key(client, seller, ["orders:read"])
    with app.app_context():
        deactivate_user(seller.uuid)
    response = signed(client, sellers_key, "GET", ORDERS)
    assert (response.status_code, problem(response)) == (401, "api-key-owner-inactive")
    assert product_count(app) == 0


# --- roll ------------------------------------------------------------------------------------


def test_a_rolled_keys_old_secret_verifies_during_the_grace_period_only(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    old = create_key(client, seller, ["orders:read"])
    rolled = client.post(f"{KEYS}/{old.id}/roll", json={"grace_hours": 2}, headers=seller.headers)
    assert rolled.status_code == 200, rolled.get_json()
    body = rolled.get_json()
    new = Key(body["id"], body["secret"])
    assert new.id == old.id
    assert new.secret != old.secret
    assert body["previous_secret_valid_until"] is not None

    assert signed(client, old, "GET", ORDERS).status_code == 200
    assert signed(client, new, "GET", ORDERS).status_code == 200
    with travel(timedelta(hours=2, seconds=1)):
        late = signed(client, old, "GET", ORDERS)
        assert (late.status_code, problem(late)) == (401, "api-signature-invalid")
        assert signed(client, new, "GET", ORDERS).status_code == 200


def test_a_roll_without_grace_ends_the_old_secret_now_and_bounds_are_checked(
    client: FlaskClient, log_in_as: Callable[..., Caller], admin: Caller
) -> None:
    seller = log_in_as("seller")
    old = create_key(client, seller, ["orders:read"])
    too_long = client.post(f"{KEYS}/{old.id}/roll", json={"grace_hours": 169},
                           headers=seller.headers)  # fmt: skip
    assert too_long.status_code == 422
    # Only the owner rolls (an admin would learn a secret that is not theirs).
    assert client.post(f"{KEYS}/{old.id}/roll", json={}, headers=admin.headers).status_code == 404
    rolled = client.post(f"{KEYS}/{old.id}/roll", json={"grace_hours": 0}, headers=seller.headers)
    assert rolled.status_code == 200
    assert problem(signed(client, old, "GET", ORDERS)) == "api-signature-invalid"
    new = Key(old.id, rolled.get_json()["secret"])
    assert signed(client, new, "GET", ORDERS).status_code == 200
    # The default grace applies without a body value; a revoked key cannot be rolled.
    default = client.post(f"{KEYS}/{old.id}/roll", json={}, headers=seller.headers)
    assert default.status_code == 200
    assert client.post(f"{KEYS}/{old.id}/revoke", headers=admin.headers).status_code == 200
    refused = client.post(f"{KEYS}/{old.id}/roll", json={}, headers=seller.headers)
    assert (refused.status_code, problem(refused)) == (409, "api-key-not-live")


# --- creating, listing, showing --------------------------------------------------------------


def test_scopes_are_checked_against_the_catalogue_and_the_owners_role(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    unknown = client.post(KEYS, json={"name": "x", "scopes": ["orders:read", "orders:delete"]},
                          headers=seller.headers)  # fmt: skip
    assert unknown.status_code == 422
    assert "orders:delete" in str(unknown.get_json()["errors"]["scopes"])
    not_for_sellers = client.post(KEYS, json={"name": "x", "scopes": ["orders:write"]},
                                  headers=seller.headers)  # fmt: skip
    assert not_for_sellers.status_code == 422
    past = client.post(
        KEYS,
        json={"name": "x", "scopes": ["orders:read"], "expires_at": "2020-01-01T00:00:00Z"},
        headers=seller.headers,
    )
    assert past.status_code == 422
    for role in ("customer", "staff"):
        person = log_in_as(role)
        refused = client.post(KEYS, json={"name": "x", "scopes": ["orders:read"]},
                              headers=person.headers)  # fmt: skip
        assert refused.status_code == 403, role
    listed = client.get(KEYS, headers=seller.headers).get_json()
    assert listed["items"] == []


def test_keys_are_listed_and_shown_to_their_owner_and_admins_without_the_secret(
    client: FlaskClient, log_in_as: Callable[..., Caller], admin: Caller
) -> None:
    seller, other = log_in_as("seller"), log_in_as("seller")
    key = create_key(client, seller, ["orders:read", "payments:read"])
    listed = client.get(KEYS, headers=seller.headers).get_json()["items"]
    assert [k["id"] for k in listed] == [key.id]
    assert listed[0]["scopes"] == ["orders:read", "payments:read"]
    assert listed[0]["state"] == "active"
    assert listed[0]["owner"] == str(seller.uuid)
    shown = client.get(f"{KEYS}/{key.id}", headers=seller.headers)
    assert shown.status_code == 200
    for answer in (shown.get_data(as_text=True), str(listed)):
        assert key.secret not in answer
        assert "secret" not in answer.replace("previous_secret", "")

    assert client.get(f"{KEYS}/{key.id}", headers=other.headers).status_code == 404
    assert client.post(f"{KEYS}/{key.id}/revoke", headers=other.headers).status_code == 404
    assert client.get(KEYS, headers=other.headers).get_json()["items"] == []
    assert client.get(KEYS, query_string={"owner": str(seller.uuid)},
                      headers=other.headers).get_json()["items"] == []  # fmt: skip

    by_admin = client.get(KEYS, query_string={"owner": str(seller.uuid)}, headers=admin.headers)
    assert [k["id"] for k in by_admin.get_json()["items"]] == [key.id]
    assert client.get(f"{KEYS}/{key.id}", headers=admin.headers).status_code == 200
    revoked = client.post(f"{KEYS}/{key.id}/revoke", headers=admin.headers).get_json()
    assert revoked["state"] == "revoked"
    # Revoking again changes nothing.
    again = client.post(f"{KEYS}/{key.id}/revoke", headers=seller.headers).get_json()
    assert again["revoked_at"] == revoked["revoked_at"]


def test_the_secret_is_stored_sealed(app: Flask, client: FlaskClient, admin: Caller) -> None:
    key = create_key(client, admin, ["orders:read"])
    with app.extensions["lapak.db"].primary.connect() as connection:
        stored = connection.exec_driver_sql("SELECT secret FROM auth_api_key").scalar_one()
    assert key.secret not in stored
    assert stored.startswith("gAAAAA")
    with app.app_context():
        sealed = Session().scalars(select(ApiKey).where(ApiKey.key_id == key.id)).one()
        assert sealed.secret == key.secret
        assert repr(sealed.secret) == "'[unsealed]'"


# --- sessions and keys are independent -------------------------------------------------------


def test_keys_and_the_owners_session_do_not_end_each_other(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])
    assert signed(client, key, "GET", f"{ORDERS}?limit=1").status_code == 200
    # The key's use leaves the person's session alone...
    assert client.get("/api/v1/auth/session", headers=seller.headers).status_code == 200
    # ...and a new login (which ends the old session) leaves the key alone. (Another query: the
    # same request signed in the same second has the same signature, a replay.)
    assert login(client, seller.email, PASSWORD).status_code == 200
    assert client.get("/api/v1/auth/session", headers=seller.headers).status_code == 401
    assert signed(client, key, "GET", f"{ORDERS}?limit=2").status_code == 200


def test_last_used_at_is_written_at_most_once_a_minute(
    app: Flask, client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read"])

    def last_used() -> datetime | None:
        return client.get(f"{KEYS}/{key.id}", headers=seller.headers).get_json()["last_used_at"]

    assert last_used() is None
    assert signed(client, key, "GET", ORDERS).status_code == 200
    first = last_used()
    assert first is not None
    with travel(timedelta(seconds=30)):
        assert signed(client, key, "GET", ORDERS).status_code == 200
        assert last_used() == first
    with travel(timedelta(seconds=61)):
        assert signed(client, key, "GET", ORDERS).status_code == 200
        later = last_used()
    assert later is not None
    assert datetime.fromisoformat(later) - datetime.fromisoformat(first) >= timedelta(seconds=61)


# --- the legacy signature --------------------------------------------------------------------


def test_a_legacy_key_signs_timestamp_and_body_only(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    key = create_key(client, admin, ["products:write"], signature_version="legacy")
    body = body_of(PRODUCT)
    stamp = str(now_stamp())
    legacy = hmac.new(key.secret.encode(), stamp.encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-API-Key": key.id, "X-Timestamp": stamp, "X-Signature": legacy}
    response = client.post(PRODUCTS, data=body, headers=headers, content_type="application/json")
    assert response.status_code == 201, response.get_json()
    # The v1 form is not accepted for a legacy key.
    v1 = signed(client, key, "POST", PRODUCTS, body)
    assert problem(v1) == "api-signature-invalid"
    assert product_count(app) == 1


# --- the embedded default --------------------------------------------------------------------


def test_signed_requests_work_on_the_embedded_default(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    client = app.test_client()
    with app.app_context():
        create_user("toko@example.test", role="seller", password=PASSWORD)
    token = login(client, "toko@example.test").get_json()["access_token"]
    caller = Caller("toko@example.test", None, 0, token)  # type: ignore[arg-type]
    key = create_key(client, caller, ["orders:read"])
    headers = lapak_signed_headers(key.id, key.secret, "GET", f"{ORDERS}?limit=2", b"",
                                   now_stamp())  # fmt: skip
    assert client.get(f"{ORDERS}?limit=2", headers=headers).status_code == 200
    replayed = client.get(f"{ORDERS}?limit=2", headers=headers)
    assert (replayed.status_code, problem(replayed)) == (401, "api-request-replayed")
    too_old = signed(client, key, "GET", ORDERS, timestamp=now_stamp() - 400)
    assert (too_old.status_code, problem(too_old)) == (401, "api-timestamp-too-old")


@pytest.mark.parametrize(
    ("scope", "path"),
    [
        ("settlements:read", "/api/v1/sellers/me/balance"),
        ("settlements:read", "/api/v1/settlements"),
        ("payments:read", "/api/v1/payments"),
        ("ledger:read", "/api/v1/ledger/accounts"),
        ("products:read", PRODUCTS),
    ],
)
def test_a_sellers_key_reads_what_its_scopes_open(
    client: FlaskClient, log_in_as: Callable[..., Caller], scope: str, path: str
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, [scope])
    response = signed(client, key, "GET", path)
    assert response.status_code == 200, response.get_json()
    refused = signed(client, key, "GET", ORDERS)
    assert (refused.status_code, problem(refused)) == (403, "scope-missing")


def test_a_legacy_get_signature_fits_every_get_path_which_is_why_it_is_weaker(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    key = create_key(client, seller, ["orders:read", "payments:read"], signature_version="legacy")
    stamp = str(now_stamp())
    legacy = hmac.new(key.secret.encode(), stamp.encode(), hashlib.sha256).hexdigest()
    headers = {"X-API-Key": key.id, "X-Timestamp": stamp, "X-Signature": legacy}
    # Signed "for" the orders, sent to the payments: nothing in the signature tells them apart.
    assert client.get("/api/v1/payments", headers=headers).status_code == 200
    # Only the replay cache stops the same signature a second time.
    again = client.get(ORDERS, headers=headers)
    assert (again.status_code, problem(again)) == (401, "api-request-replayed")


def test_a_bearer_token_is_checked_first_when_both_are_sent(
    client: FlaskClient, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    headers = {**seller.headers, "X-API-Key": "lpk_nonsense", "X-Signature": "00"}
    # The person's token decides (people are not limited by scopes) ...
    assert client.get("/api/v1/auth/session", headers=headers).status_code == 200
    # ... and without any credentials the refusal names both ways in.
    refused = client.get(ORDERS)
    assert (refused.status_code, problem(refused)) == (401, "unauthenticated")
    assert "X-API-Key" in refused.get_json()["detail"]
