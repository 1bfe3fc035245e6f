"""Seller profiles: the default before any change, a seller's own changes, staff's commission
and schedule, who may do what, the payout account never shown or logged in clear and sealed in
the database, bad input refused without a trace, and the staff listing."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from app.vault import get_vault
from tests.conftest import wait_for_replica
from tests.modules.conftest import Caller, login
from tests.servers import Services

from .conftest import ACCOUNT_NUMBER, BANK, call, events, ok, problem, profile_rows, sql

DIGITS = ACCOUNT_NUMBER.replace("-", "")
TOO_LONG = "99887766554433221100998877665544332211"


def test_an_admin_made_seller_has_the_default_profile_until_a_change(
    client: FlaskClient, services: Services, admin: Caller, staff: Caller
) -> None:
    user = client.post("/api/v1/users", headers=admin.headers, json={
        "email": "budi@toko.example", "name": "Budi Santoso", "role": "seller",
        "phone": "0812-3456-789", "password": "correct horse battery staple",
    }).get_json()  # fmt: skip
    token = login(client, "budi@toko.example").get_json()["access_token"]
    seller = Caller("budi@toko.example", uuid.UUID(user["id"]), 0, token)

    own = ok(call(client, seller, "GET", "/me"))
    assert own == {
        "id": user["id"],
        "email": "budi@toko.example",
        "active": True,
        "display_name": "Budi Santoso",
        "contact_email": "budi@toko.example",
        "contact_phone": "+628123456789",
        "can_sell": True,
        "kyc": {"state": "unverified", "submitted_at": None, "reviewed_at": None,
                "rejection_reason": None},
        "bank_account": None,
        "commission_percent": None,
        "effective_commission_percent": "5.00",
        "payout_schedule": {"interval": "manual", "weekday": None},
        "created_at": own["created_at"],
        "updated_at": own["updated_at"],
    }  # fmt: skip
    assert profile_rows(services) == []  # nothing written by reading
    staff_view = ok(call(client, staff, "GET", f"/{user['id']}"))
    assert staff_view == {**own, "kyc": {**own["kyc"], "reviewed_by": None}}

    changed = ok(call(client, seller, "PATCH", "/me", json={"display_name": "Toko Budi Makmur"}))
    assert changed["display_name"] == "Toko Budi Makmur"
    assert changed["contact_phone"] == "+628123456789"  # the defaults were written with it
    assert len(profile_rows(services)) == 1
    assert events(services) == [
        ("seller.updated", {"seller": user["id"], "changed": ["display_name"], "by": user["id"]})
    ]


def test_a_seller_changes_contact_payout_account_and_schedule(
    client: FlaskClient, seller: Caller
) -> None:
    changed = ok(call(client, seller, "PATCH", "/me", json={
        "contact_email": "  Toko@Budi.CO.ID ", "contact_phone": "+62 812 0000 1111",
        "bank_account": {"bank_code": " cenaidja ", "holder_name": " Budi   Santoso ",
                         "account_number": " 8800 4412-3977 "},
        "payout_schedule": {"interval": "weekly", "weekday": "friday"},
    }))  # fmt: skip
    assert (changed["contact_email"], changed["contact_phone"]) == (
        "Toko@budi.co.id",
        "+6281200001111",
    )
    assert changed["bank_account"] == {
        "bank_code": "CENAIDJA",
        "holder_name": "Budi Santoso",
        "number": "•••• 3977",
        "last4": "3977",
        "updated_at": changed["bank_account"]["updated_at"],
    }
    assert changed["payout_schedule"] == {"interval": "weekly", "weekday": "friday"}
    removed = ok(call(client, seller, "PATCH", "/me", json={
        "contact_phone": None, "payout_schedule": {"interval": "manual"},
    }))  # fmt: skip
    assert removed["contact_phone"] is None
    assert removed["payout_schedule"] == {"interval": "manual", "weekday": None}


def test_admins_set_a_sellers_commission_and_staff_the_schedule(
    client: FlaskClient, services: Services, seller: Caller, staff: Caller, admin: Caller
) -> None:
    own = ok(call(client, admin, "PATCH", f"/{seller.uuid}", json={"commission_percent": "7.5"}))
    assert (own["commission_percent"], own["effective_commission_percent"]) == ("7.50", "7.50")
    weekly = {"interval": "weekly", "weekday": "monday"}
    by_staff = ok(call(client, staff, "PATCH", f"/{seller.uuid}", json={"payout_schedule": weekly}))
    assert by_staff["payout_schedule"] == weekly
    assert by_staff["commission_percent"] == "7.50"
    back = ok(call(client, admin, "PATCH", f"/{seller.uuid}", json={"commission_percent": None}))
    assert (back["commission_percent"], back["effective_commission_percent"]) == (None, "5.00")
    assert ok(call(client, seller, "GET", "/me"))["effective_commission_percent"] == "5.00"
    changes = [(p["changed"], p["by"], p.get("commission_percent")) for _, p in events(services)]
    assert changes == [
        (["commission_percent"], str(admin.uuid), {"from": None, "to": "7.50"}),
        (["payout_schedule"], str(staff.uuid), None),
        (["commission_percent"], str(admin.uuid), {"from": "7.50", "to": None}),
    ]


def test_staff_may_not_change_a_sellers_commission(
    client: FlaskClient, services: Services, seller: Caller, staff: Caller, admin: Caller
) -> None:
    ok(call(client, admin, "PATCH", f"/{seller.uuid}", json={"commission_percent": "7.5"}))
    rows, outbox = profile_rows(services), events(services)
    weekly = {"interval": "weekly", "weekday": "monday"}
    for body in (
        {"commission_percent": "1"},
        {"commission_percent": None},
        {"commission_percent": "7.50"},  # even the same value: the field is the admins'
        {"commission_percent": "1", "payout_schedule": weekly},  # all or nothing
    ):
        answer = call(client, staff, "PATCH", f"/{seller.uuid}", json=body)
        assert "admin" in problem(answer, 403, "commission-admin-only")["detail"]
    assert (profile_rows(services), events(services)) == (rows, outbox)
    assert ok(call(client, staff, "GET", f"/{seller.uuid}"))["commission_percent"] == "7.50"


def test_who_may_do_what(
    client: FlaskClient,
    services: Services,
    log_in_as: Callable[..., Caller],
    to_state: Callable[[Caller, str], dict[str, Any]],
) -> None:
    seller, rival = log_in_as("seller"), log_in_as("seller")
    customer, staff, admin = log_in_as("customer"), log_in_as("staff"), log_in_as("admin")
    to_state(seller, "pending")
    rows, outbox = profile_rows(services), events(services)
    reject = {"reason": "no"}
    for caller in (customer, rival, seller):  # not staff: not even a seller for themselves
        problem(call(client, caller, "GET", ""), 403, "forbidden")
        problem(call(client, caller, "GET", f"/{seller.uuid}"), 403, "forbidden")
        problem(call(client, caller, "PATCH", f"/{seller.uuid}", json={"commission_percent": "1"}),
                403, "forbidden")  # fmt: skip
        problem(call(client, caller, "POST", f"/{seller.uuid}/kyc/approve"), 403, "forbidden")
        problem(call(client, caller, "POST", f"/{seller.uuid}/kyc/reject", json=reject), 403,
                "forbidden")  # fmt: skip
    for caller in (customer, staff, admin):  # /me is a seller's own profile
        problem(call(client, caller, "GET", "/me"), 403, "forbidden")
        problem(call(client, caller, "PATCH", "/me", json={"display_name": "x"}), 403, "forbidden")
        problem(call(client, caller, "POST", "/me/kyc"), 403, "forbidden")
    problem(call(client, None, "GET", "/me"), 401, "unauthenticated")
    # A rival's own profile is theirs alone: they see nothing of the seller's.
    assert ok(call(client, rival, "GET", "/me"))["id"] == str(rival.uuid)
    assert (profile_rows(services), events(services)) == (rows, outbox)

    # Staff and admins alike review and read every seller; only sellers are sellers.
    for caller in (staff, admin):
        assert ok(call(client, caller, "GET", f"/{seller.uuid}"))["kyc"]["state"] == "pending"
        for who in (customer.uuid, staff.uuid, uuid.uuid4()):
            problem(call(client, caller, "GET", f"/{who}"), 404, "seller-not-found")
            problem(call(client, caller, "POST", f"/{who}/kyc/approve"), 404, "seller-not-found")
    assert ok(call(client, admin, "POST", f"/{seller.uuid}/kyc/approve"))["kyc"]["reviewed_by"] == (
        str(admin.uuid)
    )
    # Only admins make sellers (the user API); staff cannot.
    body = {"email": "new@seller.example", "role": "seller"}
    problem(client.post("/api/v1/users", json=body, headers=staff.headers), 403, "forbidden")
    assert client.post("/api/v1/users", json=body, headers=admin.headers).status_code == 201


def test_the_payout_account_is_sealed_masked_and_never_logged(
    app: Flask,
    client: FlaskClient,
    services: Services,
    seller: Caller,
    staff: Caller,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # every statement too
    answers = [
        call(client, seller, "PATCH", "/me", json={"bank_account": BANK}),
        call(client, seller, "GET", "/me"),
        call(client, seller, "POST", "/me/kyc"),
        call(client, staff, "GET", f"/{seller.uuid}"),
        call(client, staff, "GET", "", query_string={"kyc_state": "pending"}),
        call(client, staff, "POST", f"/{seller.uuid}/kyc/reject", json={"reason": "check"}),
        call(client, seller, "POST", "/me/kyc"),
        call(client, staff, "POST", f"/{seller.uuid}/kyc/approve"),
    ]
    # New accounts that break a rule: refused without repeating them.
    bad = [
        {**BANK, "account_number": TOO_LONG},
        {**BANK, "account_number": "7766-5544-33!"},
        {**BANK, "account_number": "7766-5544-3322", "bank_code": "?"},
    ]
    answers += [call(client, seller, "PATCH", "/me", json={"bank_account": b}) for b in bad]
    assert [a.status_code for a in answers] == [200] * 8 + [422] * 3
    texts = [a.get_data(as_text=True) for a in answers]
    for text in texts:
        for secret in (DIGITS, ACCOUNT_NUMBER, TOO_LONG, "7766-5544-33!", "776655443322",
                       "7766-5544-3322"):  # fmt: skip
            assert secret not in text
    assert answers[1].get_json()["bank_account"]["number"] == "•••• 3977"
    assert "7766" not in "".join(texts[8:])
    assert "INSERT INTO seller_profile" in caplog.text  # the statements were logged
    for secret in (DIGITS, ACCOUNT_NUMBER, "776655443322", "7766-5544-3322"):
        assert secret not in caplog.text
    for _, payload in events(services):
        assert DIGITS not in json.dumps(payload)
        assert ACCOUNT_NUMBER not in json.dumps(payload)

    ((stored, last4),) = sql(
        services, "SELECT bank_account_number, bank_account_last4 FROM seller_profile"
    )
    assert stored.startswith("gAAAAA")
    assert DIGITS not in stored
    assert last4 == "3977"
    with app.app_context():
        assert get_vault().unseal(stored) == DIGITS  # the account, sealed: readable to pay out


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_schema"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 101}, "display_name"),
        ({"contact_email": "not an email"}, "contact_email"),
        ({"contact_phone": "call me"}, "contact_phone"),
        ({"bank_account": {"bank_code": "014", "holder_name": "B"}}, "bank_account.account_number"),
        ({"bank_account": {**BANK, "bank_code": "01"}}, "bank_account.bank_code"),
        ({"bank_account": {**BANK, "holder_name": "  "}}, "bank_account.holder_name"),
        ({"bank_account": {**BANK, "account_number": "1234"}}, "bank_account.account_number"),
        ({"payout_schedule": {"interval": "weekly"}}, "payout_schedule.weekday"),
        ({"payout_schedule": {"interval": "manual", "weekday": "friday"}},
         "payout_schedule.weekday"),
        ({"payout_schedule": {"interval": "daily"}}, "payout_schedule.interval"),
        ({"payout_schedule": {"interval": "weekly", "weekday": "fri"}}, "payout_schedule.weekday"),
        ({"commission_percent": "0"}, "commission_percent"),  # staff set it, not the seller
        ({"can_sell": True}, "can_sell"),
        ({"kyc": {"state": "verified"}}, "kyc"),
        ({"display_name": "Good", "contact_email": "bad"}, "contact_email"),  # all or nothing
    ],
)  # fmt: skip
def test_bad_changes_are_422_and_change_nothing(
    client: FlaskClient,
    services: Services,
    seller: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
    body: dict[str, Any],
    field: str,
) -> None:
    before = to_state(seller, "verified")
    rows, outbox = profile_rows(services), events(services)
    refused = problem(call(client, seller, "PATCH", "/me", json=body), 422, "validation-failed")
    assert field in refused["errors"], refused["errors"]
    assert (profile_rows(services), events(services)) == (rows, outbox)
    assert ok(call(client, seller, "GET", "/me"))["display_name"] == before["display_name"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("", {}, "_schema"),
        ("", {"commission_percent": "100"}, "commission_percent"),
        ("", {"commission_percent": "-1"}, "commission_percent"),
        ("", {"commission_percent": "1.234"}, "commission_percent"),
        ("", {"commission_percent": 7.5}, "commission_percent"),
        ("", {"display_name": "Staff rename"}, "display_name"),
        ("", {"payout_schedule": {"interval": "weekly"}}, "payout_schedule.weekday"),
        ("/kyc/reject", {}, "reason"),
        ("/kyc/reject", {"reason": ""}, "reason"),
        ("/kyc/reject", {"reason": "   "}, "reason"),
        ("/kyc/reject", {"reason": "x" * 501}, "reason"),
    ],
)
def test_bad_staff_input_is_422_and_changes_nothing(
    client: FlaskClient,
    services: Services,
    seller: Caller,
    staff: Caller,
    admin: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = to_state(seller, "pending")
    rows, outbox = profile_rows(services), events(services)
    method = "POST" if path else "PATCH"
    caller = admin if "commission_percent" in body else staff  # only admins set it
    answer = call(client, caller, method, f"/{seller.uuid}{path}", json=body)
    assert field in problem(answer, 422, "validation-failed")["errors"]
    assert (profile_rows(services), events(services)) == (rows, outbox)
    assert ok(call(client, staff, "GET", f"/{seller.uuid}")) == before


def test_staff_list_sellers_with_filters_and_pages(
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    staff: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
) -> None:
    sellers = [log_in_as("seller") for _ in range(4)]
    log_in_as("customer")
    to_state(sellers[1], "pending")
    to_state(sellers[2], "verified")
    weekly = {"payout_schedule": {"interval": "weekly", "weekday": "friday"}}
    ok(call(client, staff, "PATCH", f"/{sellers[3].uuid}", json=weekly))

    def listed(**query: Any) -> list[str]:
        return [s["id"] for s in ok(call(client, staff, "GET", "", query_string=query))["items"]]

    ids = [str(s.uuid) for s in sellers]
    assert listed() == ids  # customers are not sellers
    assert listed(kyc_state="unverified") == [ids[0], ids[3]]  # with and without a row
    assert listed(kyc_state="pending") == [ids[1]]
    assert listed(kyc_state="verified") == [ids[2]]
    assert listed(kyc_state="rejected") == []
    assert listed(payout_interval="weekly") == [ids[3]]
    assert listed(payout_interval="manual") == ids[:3]
    assert listed(can_sell="true") == ids
    assert listed(can_sell="false") == []
    assert listed(email_prefix=sellers[2].email[:-3].upper()) == [ids[2]]

    first = call(client, staff, "GET", "", query_string={"limit": 3})
    page = ok(first)
    assert [s["id"] for s in page["items"]] == ids[:3]
    assert 'rel="next"' in first.headers["Link"]
    rest = ok(
        call(client, staff, "GET", "", query_string={"limit": 3, "cursor": page["next_cursor"]})
    )
    assert ([s["id"] for s in rest["items"]], rest["next_cursor"]) == (ids[3:], None)
    verified = next(s for s in page["items"] if s["id"] == ids[2])
    assert verified["kyc"]["reviewed_by"] == str(staff.uuid)
    assert verified["bank_account"]["number"] == "•••• 3977"
    for bad in ({"kyc_state": "approved"}, {"limit": 0}, {"payout_interval": "daily"}):
        problem(call(client, staff, "GET", "", query_string=bad), 422, "validation-failed")
    problem(call(client, staff, "GET", "", query_string={"cursor": "nope"}), 400, "invalid-cursor")


def test_concurrent_first_changes_write_one_profile(
    app: Flask, services: Services, seller: Caller
) -> None:
    statuses: list[int] = []
    start = threading.Barrier(6)

    def change(index: int) -> None:
        start.wait()
        body = {"display_name": f"Toko {index}"}
        statuses.append(call(app.test_client(), seller, "PATCH", "/me", json=body).status_code)

    threads = [threading.Thread(target=change, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    assert len(profile_rows(services)) == 1


def test_a_payout_account_no_vault_key_opens_breaks_no_read_of_the_profile(
    client: FlaskClient,
    services: Services,
    log_in_as: Callable[..., Caller],
    staff: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
) -> None:
    seller, other = log_in_as("seller"), log_in_as("seller")
    to_state(seller, "verified")
    to_state(other, "unverified")
    foreign = Fernet(Fernet.generate_key()).encrypt(b"1234567890").decode()  # a dropped key's
    sql(services, "UPDATE seller_profile SET bank_account_number = %s RETURNING id", foreign)
    wait_for_replica(services)

    listed = ok(call(client, staff, "GET", ""))["items"]
    assert [s["bank_account"]["number"] for s in listed] == ["•••• 3977", "•••• 3977"]
    assert ok(call(client, staff, "GET", f"/{seller.uuid}"))["bank_account"]["last4"] == "3977"
    assert ok(call(client, seller, "GET", "/me"))["kyc"]["state"] == "verified"
    # Writes that do not touch the account lock and show the profile without opening it.
    ok(call(client, seller, "PATCH", "/me", json={"display_name": "Toko Baru"}))
    weekly = {"interval": "weekly", "weekday": "friday"}
    ok(call(client, staff, "PATCH", f"/{seller.uuid}", json={"payout_schedule": weekly}))
    # A new account (other last four) replaces it, unopened, and is reviewed again.
    new_account = {**BANK, "account_number": "0099 1234 5678"}
    changed = ok(call(client, seller, "PATCH", "/me", json={"bank_account": new_account}))
    assert (changed["bank_account"]["last4"], changed["kyc"]["state"]) == ("5678", "pending")
