"""``/api/v1/users`` over HTTP with real logins: roles, listing, changes, activation, docs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.modules.conftest import PASSWORD, Caller, bearer, login
from tests.servers import Services

USERS = "/api/v1/users"
PROBLEM = "application/problem+json"
NEW_PASSWORD = "a brand new passphrase"
ADMIN_ENDPOINTS = [
    ("GET", USERS, None),
    ("POST", USERS, {"email": "x@example.com"}),
    ("GET", f"{USERS}/{{id}}", None),
    ("PATCH", f"{USERS}/{{id}}", {"name": "x"}),
    ("POST", f"{USERS}/{{id}}/deactivate", None),
    ("POST", f"{USERS}/{{id}}/activation", None),
]


def call(
    client: FlaskClient,
    method: str,
    path: str,
    caller: Caller | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> TestResponse:
    sent = {**(caller.headers if caller else {}), **(headers or {})}
    return client.open(path, method=method, json=json, headers=sent, **kwargs)


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    if code is not None:
        assert body["type"] == f"urn:lapak:problem:{code}"
    return body


def create(client: FlaskClient, admin: Caller, **fields: Any) -> dict[str, Any]:
    response = call(client, "POST", USERS, admin, json=fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# --- who may call what ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ENDPOINTS)
def test_admin_endpoints_refuse_anonymous_staff_and_customers(
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    make_user: Callable[..., tuple[int, uuid.UUID, str]],
    method: str,
    path: str,
    body: Any,
) -> None:
    _, target, _ = make_user("target@example.com", password=None)
    url = path.format(id=target)
    assert_problem(call(client, method, url, json=body), 401)
    assert_problem(call(client, method, url, json=body, headers=bearer("junk")), 401)
    for role in ("customer", "staff", "seller"):
        caller = log_in_as(role)
        refused = assert_problem(call(client, method, url, caller, json=body), 403, "forbidden")
        assert "admin" in refused["detail"]
    # Nothing was changed by the refused calls.
    admin = log_in_as("admin")
    shown = call(client, "GET", f"{USERS}/{target}", admin).get_json()
    assert (shown["name"], shown["active"]) == ("Test User", True)


def test_refusal_comes_before_input_validation(client: FlaskClient, customer: Caller) -> None:
    assert_problem(call(client, "POST", USERS, customer, json={"bogus": 1}), 403)
    assert_problem(call(client, "GET", f"{USERS}?limit=99999", customer), 403)


@pytest.mark.parametrize("role", ["customer", "staff", "seller", "admin"])
def test_me_shows_the_callers_own_record_without_secrets(
    client: FlaskClient, log_in_as: Callable[..., Caller], role: str
) -> None:
    caller = log_in_as(role)
    response = call(client, "GET", f"{USERS}/me", caller)
    assert response.status_code == 200
    me = response.get_json()
    assert set(me) == {
        "id",
        "email",
        "name",
        "phone",
        "role",
        "active",
        "has_password",
        "created_at",
        "updated_at",
    }
    assert (me["id"], me["email"], me["role"]) == (str(caller.uuid), caller.email, role)
    assert me["has_password"] is True
    assert me["created_at"].endswith("+00:00")
    assert "argon2" not in response.get_data(as_text=True)


def test_me_needs_a_login(client: FlaskClient) -> None:
    assert_problem(client.get(f"{USERS}/me"), 401)


# --- create ---------------------------------------------------------------------------------


def test_admin_creates_a_user_who_can_then_log_in(client: FlaskClient, admin: Caller) -> None:
    response = call(
        client,
        "POST",
        USERS,
        admin,
        json={
            "email": "Sari@Example.CO.ID",
            "name": "Sari Wulandari",
            "role": "staff",
            "phone": "0812-3456-789",
            "password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 201
    created = response.get_json()
    assert response.headers["Location"].endswith(f"{USERS}/{created['id']}")
    assert created["email"] == "Sari@example.co.id"
    assert (created["role"], created["phone"]) == ("staff", "+628123456789")
    assert created["has_password"] is True
    assert "password" not in created
    assert NEW_PASSWORD not in response.get_data(as_text=True)

    assert login(client, "sari@example.co.id", NEW_PASSWORD).status_code == 200
    assert client.get(response.headers["Location"], headers=admin.headers).status_code == 200


def test_create_without_a_password_makes_a_customer_who_cannot_log_in(
    client: FlaskClient, admin: Caller
) -> None:
    created = create(client, admin, email="imported@example.com")
    assert (created["role"], created["has_password"], created["name"]) == ("customer", False, "")
    assert created["phone"] is None
    assert_problem(login(client, "imported@example.com", PASSWORD), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "x@example.com", "role": "root"}, "role"),
        ({"email": "x@example.com", "unknown": 1}, "unknown"),
        ({"email": "x@example.com", "active": False}, "active"),
        ({"email": "x@example.com", "name": "n" * 201}, "name"),
    ],
)
def test_create_with_malformed_input_is_a_422_naming_the_field(
    client: FlaskClient, admin: Caller, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(call(client, "POST", USERS, admin, json=body), 422)
    assert field in problem["errors"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"email": "not-an-email"}, "email", "is not a valid email address"),
        ({"email": "x@example.com", "phone": "garbage"}, "phone", "is not a phone number"),
        ({"email": "x@example.com", "password": "short"}, "password", "at least 10"),
        (
            {"email": "longname@example.com", "password": "LongName@example.com"},
            "password",
            "email",
        ),
    ],
)
def test_create_that_breaks_a_rule_is_a_422_with_a_clear_message(
    client: FlaskClient, admin: Caller, body: dict[str, Any], field: str, message: str
) -> None:
    problem = assert_problem(call(client, "POST", USERS, admin, json=body), 422)
    assert any(message in m for m in problem["errors"][field])
    if "password" in body:
        assert body["password"] not in str(problem)


def test_create_with_a_taken_email_in_another_case_is_a_409(
    client: FlaskClient, admin: Caller
) -> None:
    create(client, admin, email="dup@example.com")
    problem = assert_problem(
        call(client, "POST", USERS, admin, json={"email": "DUP@Example.com"}), 409, "email-taken"
    )
    assert problem["errors"] == {"email": ["is taken"]}


# --- list and show --------------------------------------------------------------------------


def test_list_filters_and_pages_with_cursor_and_link(client: FlaskClient, admin: Caller) -> None:
    for index in range(5):
        create(client, admin, email=f"cust{index}@example.com")
    create(client, admin, email="cust_x@example.com", role="seller")
    create(client, admin, email="staffer@example.com", role="staff")

    first = call(client, "GET", f"{USERS}?role=customer&limit=2", admin)
    assert first.status_code == 200
    page = first.get_json()
    assert [u["email"] for u in page["items"]] == ["cust0@example.com", "cust1@example.com"]
    assert page["next_cursor"]
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"')
    assert "role=customer" in link
    assert "limit=2" in link

    emails = [u["email"] for u in page["items"]]
    cursor = page["next_cursor"]
    while cursor:
        query = {"role": "customer", "limit": 2, "cursor": cursor}
        page = call(client, "GET", USERS, admin, query_string=query).get_json()
        emails += [u["email"] for u in page["items"]]
        cursor = page["next_cursor"]
    assert emails == [f"cust{i}@example.com" for i in range(5)]

    prefixed = call(client, "GET", f"{USERS}?email_prefix=CUST_", admin).get_json()
    assert [u["email"] for u in prefixed["items"]] == ["cust_x@example.com"]
    assert prefixed["next_cursor"] is None
    staff = call(client, "GET", f"{USERS}?role=staff&active=true", admin).get_json()
    assert [u["email"] for u in staff["items"]] == ["staffer@example.com"]
    inactive = call(client, "GET", f"{USERS}?active=false", admin).get_json()
    assert inactive["items"] == []


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("limit=0", 422),
        ("limit=201", 422),
        ("role=root", 422),
        ("active=maybe", 422),
        ("cursor=forged", 400),
    ],
)
def test_list_refuses_bad_query_parameters(
    client: FlaskClient, admin: Caller, query: str, status: int
) -> None:
    assert_problem(call(client, "GET", f"{USERS}?{query}", admin), status)


def test_a_cursor_from_another_listing_is_refused(client: FlaskClient, admin: Caller) -> None:
    for index in range(3):
        create(client, admin, email=f"c{index}@example.com")
    cursor = call(client, "GET", f"{USERS}?limit=1", admin).get_json()["next_cursor"]
    assert_problem(
        call(client, "GET", f"/api/v1/notes/notes?cursor={cursor}", admin), 400, "invalid-cursor"
    )
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    assert_problem(call(client, "GET", f"{USERS}?cursor={tampered}", admin), 400)


def test_show_a_user_and_404_for_unknown_ids(client: FlaskClient, admin: Caller) -> None:
    created = create(client, admin, email="shown@example.com", name="Shown")
    shown = call(client, "GET", f"{USERS}/{created['id']}", admin)
    assert shown.status_code == 200
    assert shown.get_json() == created
    assert_problem(call(client, "GET", f"{USERS}/{uuid.uuid4()}", admin), 404, "user-not-found")
    assert_problem(call(client, "GET", f"{USERS}/not-a-uuid", admin), 404)


def test_reads_after_a_write_see_it_while_the_replica_lags(
    client: FlaskClient, admin: Caller, paused_replica: Services
) -> None:
    created = create(client, admin, email="fresh@example.com")
    assert call(client, "GET", f"{USERS}/{created['id']}", admin).status_code == 200
    listed = call(client, "GET", f"{USERS}?email_prefix=fresh", admin).get_json()
    assert [u["id"] for u in listed["items"]] == [created["id"]]


# --- update, deactivate ---------------------------------------------------------------------


def test_numbers_without_plus_or_00_are_indonesian_on_create_and_update(
    client: FlaskClient, admin: Caller
) -> None:
    created = create(client, admin, email="hp@example.com", phone="8123456789")
    assert created["phone"] == "+628123456789"
    response = call(client, "PATCH", f"{USERS}/{created['id']}", admin,
                    json={"phone": "811 1111 111"})  # fmt: skip
    assert response.get_json()["phone"] == "+628111111111"
    response = call(
        client, "PATCH", f"{USERS}/{created['id']}", admin, json={"phone": "+44 20 7946 0958"}
    )
    assert response.get_json()["phone"] == "+442079460958"


def test_patch_changes_only_the_given_fields(client: FlaskClient, admin: Caller) -> None:
    created = create(client, admin, email="p@example.com", name="Before", phone="08123456789")
    response = call(
        client, "PATCH", f"{USERS}/{created['id']}", admin, json={"role": "seller", "phone": None}
    )
    assert response.status_code == 200
    patched = response.get_json()
    assert (patched["role"], patched["phone"], patched["name"]) == ("seller", None, "Before")
    assert patched["updated_at"] >= created["updated_at"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({}, "_schema"),
        ({"email": "new@example.com"}, "email"),
        ({"role": "root"}, "role"),
        ({"active": "perhaps"}, "active"),
    ],
)
def test_patch_with_nothing_or_bad_fields_is_a_422(
    client: FlaskClient, admin: Caller, body: dict[str, Any], where: str
) -> None:
    created = create(client, admin, email="p@example.com")
    problem = assert_problem(
        call(client, "PATCH", f"{USERS}/{created['id']}", admin, json=body), 422
    )
    assert where in problem["errors"]


def test_deactivated_users_token_stops_working_at_once(
    client: FlaskClient, admin: Caller, log_in_as: Callable[..., Caller]
) -> None:
    customer = log_in_as("customer")
    assert call(client, "GET", f"{USERS}/me", customer).status_code == 200
    response = call(client, "POST", f"{USERS}/{customer.uuid}/deactivate", admin)
    assert response.status_code == 200
    assert response.get_json()["active"] is False
    assert_problem(call(client, "GET", f"{USERS}/me", customer), 401)
    assert_problem(login(client, customer.email, PASSWORD), 401)
    again = call(client, "POST", f"{USERS}/{customer.uuid}/deactivate", admin)
    assert again.status_code == 200


def test_role_change_applies_to_the_next_request(
    client: FlaskClient, admin: Caller, log_in_as: Callable[..., Caller]
) -> None:
    promoted = log_in_as("staff")
    assert_problem(call(client, "GET", USERS, promoted), 403)
    call(client, "PATCH", f"{USERS}/{promoted.uuid}", admin, json={"role": "admin"})
    assert call(client, "GET", USERS, promoted).status_code == 200


def test_the_last_admin_cannot_deactivate_or_demote_themselves(
    client: FlaskClient, admin: Caller
) -> None:
    for method, path, body in [
        ("POST", f"{USERS}/{admin.uuid}/deactivate", None),
        ("PATCH", f"{USERS}/{admin.uuid}", {"role": "staff"}),
        ("PATCH", f"{USERS}/{admin.uuid}", {"active": False}),
    ]:
        assert_problem(call(client, method, path, admin, json=body), 409, "last-admin")
    assert call(client, "GET", f"{USERS}/me", admin).get_json()["role"] == "admin"


def test_changes_to_unknown_users_are_404(client: FlaskClient, admin: Caller) -> None:
    missing = uuid.uuid4()
    assert_problem(call(client, "PATCH", f"{USERS}/{missing}", admin, json={"name": "x"}), 404)
    assert_problem(call(client, "POST", f"{USERS}/{missing}/deactivate", admin), 404)
    assert_problem(call(client, "POST", f"{USERS}/{missing}/activation", admin), 404)


# --- activation -----------------------------------------------------------------------------


def test_activation_token_lets_an_imported_user_choose_a_password_once(
    client: FlaskClient, admin: Caller
) -> None:
    created = create(client, admin, email="newbie@example.com")
    issued = call(client, "POST", f"{USERS}/{created['id']}/activation", admin)
    assert issued.status_code == 201
    assert issued.headers["Cache-Control"] == "no-store"
    body = issued.get_json()
    assert set(body) == {"token", "expires_at"}

    activated = client.post(
        "/api/v1/auth/activate", json={"token": body["token"], "password": NEW_PASSWORD}
    )
    assert activated.status_code == 200, activated.get_json()
    assert login(client, "newbie@example.com", NEW_PASSWORD).status_code == 200
    reused = client.post(
        "/api/v1/auth/activate", json={"token": body["token"], "password": "yet another one!"}
    )
    assert_problem(reused, 422)
    assert call(client, "GET", f"{USERS}/{created['id']}", admin).get_json()["has_password"]
    assert_problem(
        call(client, "POST", f"{USERS}/{created['id']}/activation", admin),
        409,
        "already-activated",
    )


def test_no_activation_token_for_an_inactive_user(client: FlaskClient, admin: Caller) -> None:
    created = create(client, admin, email="gone@example.com")
    call(client, "POST", f"{USERS}/{created['id']}/deactivate", admin)
    assert_problem(
        call(client, "POST", f"{USERS}/{created['id']}/activation", admin), 409, "user-inactive"
    )


# --- the API document -----------------------------------------------------------------------


def test_openapi_documents_schemas_security_and_errors(app: Flask, client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    listing = paths[USERS]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "limit",
        "cursor",
        "role",
        "active",
        "email_prefix",
    }
    assert listing["security"] == [{"bearerAuth": []}]
    assert {"200", "401", "403", "422"} <= set(listing["responses"])
    creating = paths[USERS]["post"]
    assert creating["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/UserCreate"
    )
    assert {"201", "401", "403", "409", "422"} <= set(creating["responses"])
    assert {"200", "401"} <= set(paths[f"{USERS}/me"]["get"]["responses"])
    # Open to anyone logged in, but a person's view: an API key gets the 403 it documents.
    me_refused = paths[f"{USERS}/me"]["get"]["responses"]["403"]["description"]
    assert me_refused.startswith("Not for API keys")
    for path in (
        f"{USERS}/{{user_id}}",
        f"{USERS}/{{user_id}}/deactivate",
        f"{USERS}/{{user_id}}/activation",
    ):
        for operation in paths[path].values():
            if isinstance(operation, dict) and "responses" in operation:
                assert {"401", "403", "404"} <= set(operation["responses"])
    schemas = spec["components"]["schemas"]
    # The hash never leaves: no user schema has it (imports mention the CSV column by name).
    user_schemas = {n: s for n, s in spec["components"]["schemas"].items() if n.startswith("User")}
    assert user_schemas
    assert all("password_hash" not in str(schema) for schema in user_schemas.values())
    assert set(schemas["User"]["properties"]) >= {"id", "email", "role", "has_password"}
    assert schemas["UserCreate"]["properties"]["password"]["writeOnly"] is True
    assert schemas["UserCreate"]["required"] == ["email"]
    assert schemas["ActivationIssued"]["properties"]["token"]["description"]
