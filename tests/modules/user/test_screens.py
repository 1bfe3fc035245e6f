"""The user screens through the test client, against real PostgreSQL (a primary and its replica)
and Redis, and the embedded default where marked: who may open them, CSRF, refusals that change
nothing, and figures equal to the REST API's for the same data.

A browser admin (logged in through the web form) works the screens; a second admin reads the
REST API with a bearer token (one user cannot hold both: a login ends the user's other session).
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable, Iterator
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import run_jobs, wait_for_replica
from tests.modules.conftest import Caller, login
from tests.modules.user.test_imports import (
    HEADER,
    IMPORTS,
    all_errors,
    apps_with_settings,
    csv_bytes,
    import_job_count,
    numbered_rows,
    read_csv,
    user_count,
)
from tests.modules.web.conftest import add_user, hidden_token, web_login
from tests.servers import Services

USERS = "/web/user/"
NEW_USER = "/web/user/new"
IMPORTS_PAGE = "/web/user/imports"
TEMPLATE = "/web/user/imports/template.csv"
API_USERS = "/api/v1/users"
#: A file with one good row, a bad email, a bad role and a repeated email.
BAD_ROWS = [
    HEADER,
    ["good.one@example.test", "Good One", "customer", "081234567890"],
    ["not an email", "Nobody", "customer", ""],
    ["bad.role@example.test", "Bad Role", "king", ""],
    ["good.one@example.test", "Again", "staff", ""],
]


# --- helpers ---------------------------------------------------------------------------------


class _Tables(HTMLParser):
    """The cells' text of each ``<table id=...>``'s body rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(html: str, table_id: str | None = None) -> list[list[str]]:
    """The body rows of the table ``table_id`` (the page's first table if None)."""
    parser = _Tables()
    parser.feed(html)
    if table_id is None:
        return next(iter(parser.tables.values()))
    return parser.tables[table_id]


def by_id(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, f"no #{element_id} on the page"
    return unescape(found.group(1)).strip()


def notices(html: str) -> str:
    """The text of the layout's notices and of the page's problem, whitespace folded."""
    texts = re.findall(r'<(?:p|div) class="notice[^"]*"[^>]*>(.*?)</(?:p|div)>', html, re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", " ".join(texts))).split())


def browser_of(app: Flask, role: str = "admin") -> tuple[FlaskClient, str]:
    """A test client logged in through the web form as a new user of ``role``."""
    client = app.test_client()
    email = add_user(app, role)
    response = web_login(client, email)
    assert response.status_code == 303, response.text
    return client, email


def token_of(client: FlaskClient) -> str:
    page = client.get(NEW_USER)
    assert page.status_code == 200, page.headers.get("Location")
    return hidden_token(page.text)


def api_admin(app: Flask) -> Caller:
    """Another admin, logged in to the REST API of ``app``."""
    email = add_user(app, "admin")
    response = login(app.test_client(), email)
    assert response.status_code == 200, response.get_json()
    return Caller(email, uuid.uuid4(), 0, response.get_json()["access_token"])


def api_pages(app: Flask, caller: Caller, path: str, **query: Any) -> list[dict]:
    """Every item of a REST listing, following ``next_cursor``."""
    client = app.test_client()
    items: list[dict] = []
    cursor = None
    while True:
        args = {**query, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, query_string=args, headers=caller.headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def screen_pages(client: FlaskClient, path: str, **query: Any) -> Iterator[str]:
    """Each page of a screen's listing, following its "Next page" link."""
    response = client.get(path, query_string=query)
    for _ in range(100):
        assert response.status_code == 200, response.text
        yield response.text
        found = re.search(r'<a href="([^"]+)" rel="next">', response.text)
        if not found:
            return
        response = client.get(unescape(found.group(1)))
    raise AssertionError("the pages never ended")


def upload_page(
    client: FlaskClient,
    content: bytes,
    *,
    token: str | None,
    filename: str = "users.csv",
    htmx: bool = False,
    **form: str,
) -> TestResponse:
    """Post the upload form as a browser does: the token in the form, or in the header as the
    page's htmx sends it."""
    data: dict[str, Any] = {"file": (io.BytesIO(content), filename, "text/csv"), **form}
    headers = {}
    if htmx:
        headers = {"HX-Request": "true", **({"X-CSRF-Token": token} if token else {})}
    elif token:
        data["csrf_token"] = token
    return client.post(IMPORTS_PAGE, data=data, headers=headers, content_type="multipart/form-data")


def job_id_of(response: TestResponse) -> str:
    target = response.headers.get("HX-Redirect") or response.headers["Location"]
    path = urlsplit(target).path
    assert path.startswith(f"{IMPORTS_PAGE}/"), target
    return path.rsplit("/", 1)[1]


def api_job(app: Flask, caller: Caller, job_id: str) -> dict:
    response = app.test_client().get(f"{IMPORTS}/{job_id}", headers=caller.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


FIGURES = {
    "rows-done": "processed_rows",
    "rows-total": "total_rows",
    "percent": "percent",
    "rate": "rows_per_second",
    "count-created": "created",
    "count-updated": "updated",
    "count-skipped": "skipped",
    "count-failed": "failed",
}


def figures_on(html: str) -> dict[str, str]:
    return {key: by_id(html, element_id) for element_id, key in FIGURES.items()}


def figures_of(job: dict) -> dict[str, str]:
    return {key: str(job[key]) for key in FIGURES.values()}


def failed_rows_of(errors: list[dict]) -> list[list[str]]:
    """REST row errors as the screens' table shows them."""
    return [
        [str(e["row"]), e["column"] or "", e["value"] or "", e["message"], e["code"] or ""]
        for e in errors
    ]


def run_queued(app: Flask) -> None:
    """Work the import to its end: RQ in this process, or the embedded default's threads."""
    if app.extensions["lapak.jobs"].embedded:
        app.extensions["lapak.jobs"].wait_embedded()
    else:
        run_jobs(app)


# --- who may open the screens ----------------------------------------------------------------

PAGES = [USERS, NEW_USER, IMPORTS_PAGE, TEMPLATE]


@pytest.mark.parametrize("role", ["staff", "customer", "seller"])
def test_other_roles_get_a_page_saying_the_screens_are_for_admins(app: Flask, role: str) -> None:
    client, _ = browser_of(app, role)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.mimetype == "text/html"
        assert "this needs the role admin" in response.text
    menu = client.get("/web/desk/chart").text
    assert f'href="{USERS}"' not in menu
    assert f'href="{IMPORTS_PAGE}"' not in menu


def test_without_a_session_the_screens_go_to_the_login_page(app: Flask) -> None:
    client = app.test_client()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 303, path
        assert urlsplit(response.headers["Location"]).path == "/web/login"
        assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == [path]


def test_admins_open_the_screens_from_the_menu(app: Flask) -> None:
    client, _ = browser_of(app)
    home = client.get("/web/desk/chart")
    assert f'<a href="{USERS}">Users</a>' in home.text
    assert f'<a href="{IMPORTS_PAGE}">Imports</a>' in home.text
    for path in PAGES:
        assert client.get(path).status_code == 200, path
    template = client.get(TEMPLATE)
    assert template.mimetype == "text/csv"
    assert template.text == "email,name,role,phone,password_hash\r\n"


# --- the user list ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"role": "staff"},
        {"active": "false"},
        {"active": "true", "role": "customer"},
        {"email_prefix": "Sc"},
        {"email_prefix": "nobody"},
    ],
)
def test_the_list_shows_what_the_api_lists_with_the_same_filters_page_by_page(
    app: Flask,
    services: Services,
    make_user: Callable[..., Any],
    query: dict[str, str],
) -> None:
    client, _ = browser_of(app)
    caller = api_admin(app)
    for index, role in enumerate(["staff", "customer", "customer", "seller", "staff"]):
        make_user(f"scr.{index}@example.test", role=role, active=index % 2 == 0)
    make_user("Screen.Upper@example.test", role="customer")
    make_user("other@example.test", role="customer", password=None)
    wait_for_replica(services)  # the screen reads the replica, as the API does

    listed = [
        row
        for html in screen_pages(client, USERS, limit=2, **query)
        for row in table(html)
        if len(row) > 1
    ]
    expected = api_pages(app, caller, API_USERS, limit=2, **query)

    assert [row[0] for row in listed] == [user["email"] for user in expected]
    for row, user in zip(listed, expected, strict=True):
        status = "Active" if user["active"] else "Deactivated"
        if not user["has_password"]:
            status += " No password yet"
        assert row[1:5] == [user["name"], user["role"], user["phone"] or "", status]
        assert row[6] == ("Deactivate" if user["active"] else "Activate")
    if query.get("email_prefix") == "nobody":
        assert listed == []
        page = client.get(USERS, query_string=query).text
        assert "No user matches these filters." in page


def test_the_list_keeps_its_filters_on_its_pages(app: Flask, make_user: Callable[..., Any]) -> None:
    client, _ = browser_of(app)
    for index in range(3):
        make_user(f"keep.{index}@example.test", role="staff")
    first = client.get(USERS, query_string={"role": "staff", "limit": 1}).text
    next_link = unescape(re.search(r'<a href="([^"]+)" rel="next">', first).group(1))
    assert parse_qs(urlsplit(next_link).query).keys() == {"role", "limit", "cursor"}
    second = client.get(next_link).text
    assert "selected>staff</option>" in second
    assert "First page" in second


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"role": "king"}, 422, "Must be one of: admin, staff, customer, seller."),
        ({"active": "maybe"}, 422, "Not a valid boolean."),
        ({"limit": "0"}, 422, "Must be greater than or equal to 1"),
        ({"cursor": "forged"}, 400, "the cursor was altered"),
    ],
)
def test_a_wrong_filter_is_shown_on_the_page(
    app: Flask, query: dict[str, str], status: int, message: str
) -> None:
    client, _ = browser_of(app)
    response = client.get(USERS, query_string=query)
    assert response.status_code == status
    assert message in unescape(response.text)
    assert "<table" not in response.text


# --- creating users --------------------------------------------------------------------------


def test_an_admin_creates_a_user_with_the_api_s_rules(app: Flask) -> None:
    client, _ = browser_of(app)
    caller = api_admin(app)
    form = {
        "email": "  Sari@Example.CO.ID ",
        "name": " Sari Wulandari ",
        "role": "staff",
        "phone": "0812-3456-789",
        "password": "kopi tubruk pagi hari",
        "csrf_token": token_of(client),
    }
    response = client.post(NEW_USER, data=form)

    assert response.status_code == 303
    assert response.headers["Location"] == f"{USERS}?email_prefix=Sari@example.co.id"
    listed = client.get(response.headers["Location"])
    assert "Sari@example.co.id was created as staff; they can log in now." in notices(listed.text)
    (user,) = api_pages(app, caller, API_USERS, email_prefix="sari@")
    assert {k: user[k] for k in ("email", "name", "role", "phone", "active", "has_password")} == {
        "email": "Sari@example.co.id",
        "name": "Sari Wulandari",
        "role": "staff",
        "phone": "+628123456789",
        "active": True,
        "has_password": True,
    }
    assert (
        login(app.test_client(), "sari@example.co.id", "kopi tubruk pagi hari").status_code == 200
    )


def test_the_first_password_is_kept_as_typed_spaces_and_all(app: Flask) -> None:
    client, _ = browser_of(app)
    password = "  spaces around it  "
    form = {"email": "spaced@example.test", "password": password, "csrf_token": token_of(client)}
    assert client.post(NEW_USER, data=form).status_code == 303
    assert login(app.test_client(), "spaced@example.test", password).status_code == 200
    assert login(app.test_client(), "spaced@example.test", password.strip()).status_code == 401


def test_a_user_created_without_a_password_needs_an_activation_token(app: Flask) -> None:
    client, _ = browser_of(app)
    form = {"email": "agus@example.test", "name": "", "role": "customer", "phone": "",
            "password": "", "csrf_token": token_of(client)}  # fmt: skip
    response = client.post(NEW_USER, data=form, follow_redirects=True)
    assert "they need an activation token to log in" in notices(response.text)
    assert table(response.text)[0][:5] == [
        "agus@example.test", "", "customer", "", "Active No password yet"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"email": "not an email"}, "email", "is not a valid email address"),
        ({"email": ""}, "email", "Missing data for required field."),
        ({"password": "short"}, "password", "at least 10 characters"),
        ({"phone": "12"}, "phone", ""),
        ({"role": "king"}, "role", "Must be one of"),
        ({"name": "Nul\x00Byte"}, "name", "cannot be stored"),
        ({"name": "x" * 201}, "name", "Longer than maximum length 200."),
    ],
)
def test_the_create_form_shows_what_is_wrong_and_creates_nothing(
    app: Flask, changes: dict[str, str], field: str, message: str
) -> None:
    client, _ = browser_of(app)
    before = user_count(app)
    form = {
        "email": "new@example.test",
        "name": "New",
        "role": "staff",
        "phone": "",
        "password": "a long enough password",
        "csrf_token": token_of(client),
        **changes,
    }
    response = client.post(NEW_USER, data=form)

    assert response.status_code == 422
    page = unescape(response.text)
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]+)</p>', page)
    assert error, page
    assert message in error.group(1)
    assert f'aria-describedby="{field}-error' in page
    assert 'type="password"' in page
    assert "a long enough password" not in page
    if field != "email":
        assert 'value="new@example.test"' in page
    assert user_count(app) == before


def test_a_taken_email_is_refused_in_any_letter_case(
    app: Flask, make_user: Callable[..., Any]
) -> None:
    make_user("taken@example.test")
    client, _ = browser_of(app)
    before = user_count(app)
    form = {"email": "TAKEN@example.test", "role": "customer", "csrf_token": token_of(client)}
    response = client.post(NEW_USER, data=form)
    assert response.status_code == 409
    assert "TAKEN@example.test is already registered" in unescape(response.text)
    assert user_count(app) == before


def test_text_the_database_cannot_store_is_refused_as_the_api_refuses_it(
    either_app: Flask,
) -> None:
    """SQLite would store a NUL: the screens refuse it before any database sees it."""
    client, _ = browser_of(either_app)
    before = user_count(either_app)
    form = {"email": "nul@example.test", "name": "Nul\x00Byte", "csrf_token": token_of(client)}
    response = client.post(NEW_USER, data=form)
    assert response.status_code == 422
    assert "Name: contains a control character" in unescape(response.text)
    assert user_count(either_app) == before


# --- deactivate, activate --------------------------------------------------------------------


def test_deactivate_and_activate_from_the_list_and_return_to_it(
    app: Flask, make_user: Callable[..., Any]
) -> None:
    _, target, _ = make_user("leaving@example.test", role="staff")
    client, _ = browser_of(app)
    caller = api_admin(app)
    token = token_of(client)
    kept = {"role": "staff", "email_prefix": "leav", "limit": "20"}

    response = client.post(f"{USERS}{target}/deactivate", data={"csrf_token": token, **kept})

    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == USERS
    assert parse_qs(location.query) == {key: [value] for key, value in kept.items()}
    page = client.get(response.headers["Location"]).text
    assert "leaving@example.test was deactivated: they can no longer log in." in notices(page)
    assert api_user(app, caller, target)["active"] is False
    assert login(app.test_client(), "leaving@example.test").status_code == 401

    response = client.post(f"{USERS}{target}/activate", data={"csrf_token": token})
    assert response.headers["Location"] == USERS
    assert "leaving@example.test is active again." in notices(client.get(USERS).text)
    assert api_user(app, caller, target)["active"] is True


def api_user(app: Flask, caller: Caller, user_uuid: uuid.UUID) -> dict:
    response = app.test_client().get(f"{API_USERS}/{user_uuid}", headers=caller.headers)
    assert response.status_code == 200
    return response.get_json()


def test_the_last_active_admin_is_not_deactivated(app: Flask) -> None:
    client, email = browser_of(app)
    token = token_of(client)
    (me,) = [row for row in table(client.get(USERS).text) if row[0] == email]
    user_id = re.search(rf'action="{USERS}([0-9a-f-]+)/deactivate"', client.get(USERS).text).group(
        1
    )

    response = client.post(f"{USERS}{user_id}/deactivate", data={"csrf_token": token})

    assert response.status_code == 303
    page = client.get(USERS).text  # still logged in: nothing changed
    assert f"Not deactivated: {email} is the last active admin" in notices(page)
    assert me[4] == "Active"
    assert [row[4] for row in table(page) if row[0] == email] == ["Active"]


def test_an_unknown_user_is_a_not_found_page(app: Flask) -> None:
    client, _ = browser_of(app)
    response = client.post(
        f"{USERS}{uuid.uuid4()}/deactivate", data={"csrf_token": token_of(client)}
    )
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "No such user" in response.text


# --- CSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [None, "0" * 64])
def test_changes_without_the_session_s_csrf_token_are_refused_and_change_nothing(
    app: Flask, make_user: Callable[..., Any], sent: str | None
) -> None:
    _, target, _ = make_user("stays@example.test", role="staff")
    client, _ = browser_of(app)
    users_before = user_count(app)
    token = {"csrf_token": sent} if sent else {}

    created = client.post(NEW_USER, data={"email": "sneaky@example.test", **token})
    deactivated = client.post(f"{USERS}{target}/deactivate", data=token)
    uploaded = upload_page(client, csv_bytes([HEADER, *numbered_rows(2)]), token=sent)
    uploaded_htmx = upload_page(
        client, csv_bytes([HEADER, *numbered_rows(2)]), token=sent, htmx=True
    )

    for response in (created, deactivated, uploaded):
        assert response.status_code == 403
        assert "This change was refused" in response.text
    assert uploaded_htmx.status_code == 403
    assert user_count(app) == users_before
    assert import_job_count(app) == 0
    page = client.get(USERS, query_string={"email_prefix": "stays"}).text
    assert table(page)[0][4] == "Active"


# --- imports ---------------------------------------------------------------------------------


def test_an_upload_imports_as_the_api_does_and_its_page_shows_the_api_s_figures(
    either_app: Flask, services: Services
) -> None:
    app = either_app
    client, _ = browser_of(app)
    caller = api_admin(app)
    content = csv_bytes(BAD_ROWS)

    response = upload_page(
        client, content, token=token_of(client), filename="pelanggan.csv", default_role="staff"
    )

    assert response.status_code == 303
    job_id = job_id_of(response)
    page = client.get(f"{IMPORTS_PAGE}/{job_id}")
    assert page.status_code == 200
    assert "Import of pelanggan.csv" in page.text
    run_queued(app)

    job = api_job(app, caller, job_id)
    assert job["status"] == "succeeded_with_errors"
    assert (job["total_rows"], job["created"], job["failed"]) == (4, 1, 3)
    assert job["default_role"] == "staff"
    fragment = client.get(f"{IMPORTS_PAGE}/{job_id}/progress").text
    assert figures_on(fragment) == figures_of(job)
    assert by_id(fragment, "job-status") == "Finished, with failed rows"
    assert 'max="4" value="4"' in fragment
    assert "hx-trigger" not in fragment  # it has ended: the page stops asking
    errors = all_errors(app.test_client(), caller, job_id)
    assert table(fragment, "failed-rows") == failed_rows_of(errors)
    # Filled in once the import has ended: the status line and the download.
    assert 'id="import-outcome" hx-swap-oob="innerHTML"' in fragment
    assert f'href="{IMPORTS_PAGE}/{job_id}/failed.csv"' in fragment
    page = client.get(f"{IMPORTS_PAGE}/{job_id}").text
    assert figures_on(page) == figures_of(job)
    assert (
        "Finished, with failed rows: 4 of 4 rows, 1 created, 0 updated, 0 skipped, 3 failed."
        in (" ".join(by_id(page, "import-outcome").split()))
    )

    # Read whole at once (buffered): a streamed answer left unread keeps its transaction open.
    download = client.get(f"{IMPORTS_PAGE}/{job_id}/failed.csv", buffered=True)
    expected = app.test_client().get(
        f"{IMPORTS}/{job_id}/errors?format=csv", headers=caller.headers, buffered=True
    )
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"] == expected.headers["Content-Disposition"]
    assert download.data == expected.data
    assert [row[0] for row in read_csv(download.text)[1:]] == [
        "not an email", "bad.role@example.test", "good.one@example.test"
    ]  # fmt: skip

    if not app.extensions["lapak.jobs"].embedded:
        wait_for_replica(services)  # the list reads the replica, as the API's does
    listed = client.get(IMPORTS_PAGE).text
    assert table(listed)[0][:1] == ["pelanggan.csv"]
    assert table(listed)[0][2:] == ["Finished, with failed rows", "4 / 4", "1", "0", "0", "3"]


def test_the_page_asks_for_its_progress_until_the_import_ends(app: Flask) -> None:
    client, _ = browser_of(app)
    caller = api_admin(app)
    response = upload_page(client, csv_bytes([HEADER, *numbered_rows(3)]), token=token_of(client))
    job_id = job_id_of(response)

    page = client.get(f"{IMPORTS_PAGE}/{job_id}").text
    fragment = client.get(f"{IMPORTS_PAGE}/{job_id}/progress").text

    job = api_job(app, caller, job_id)
    assert job["status"] == "queued"
    for html in (page, fragment):
        assert f'hx-get="{IMPORTS_PAGE}/{job_id}/progress" hx-trigger="every 1s"' in html
        assert by_id(html, "job-status") == "Waiting for a worker"
        assert figures_on(html) == {**figures_of(job), "rows_per_second": "\N{EN DASH}"}
    assert "hx-swap-oob" not in fragment
    assert "Stop the import" in page


def test_the_htmx_upload_goes_to_the_progress_page_and_options_reach_the_job(app: Flask) -> None:
    client, _ = browser_of(app)
    caller = api_admin(app)
    token = token_of(client)
    response = upload_page(
        client,
        csv_bytes([HEADER, *numbered_rows(2)], encoding="cp1252"),
        token=token,
        htmx=True,
        mode="upsert",
        dry_run="true",
        default_role="seller",
        encoding="cp1252",
    )
    assert response.status_code == 204
    job_id = job_id_of(response)
    job = api_job(app, caller, job_id)
    assert (job["mode"], job["dry_run"], job["default_role"], job["encoding"]) == (
        "upsert", True, "seller", "cp1252"
    )  # fmt: skip
    run_jobs(app)
    job = api_job(app, caller, job_id)
    assert job["created"] == 2
    assert user_count(app) == 2  # a dry run: only the two admins
    page = client.get(f"{IMPORTS_PAGE}/{job_id}").text
    assert "(a dry run: nothing was written)" in page


@pytest.mark.parametrize(
    ("content", "form", "message"),
    [
        (b"", {}, "the file is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), {}, "this is not a CSV text file"),
        (b"email,name\n", {}, "the file has a header but no data rows"),
        (b"email\na@example.test\n", {"mode": "replace"}, "Must be one of: create, upsert."),
        (b"email\na@example.test\n", {"encoding": "ebcdic"}, "Must be one of"),
        (b"email\na@example.test\n", {"default_role": "king"}, "Must be one of"),
        (b"email\na@example.test\n", {"dry_run": "perhaps"}, "Not a valid boolean."),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_a_file_or_option_that_cannot_be_imported_is_shown_on_the_form_and_starts_nothing(
    app: Flask, content: bytes, form: dict[str, str], message: str, htmx: bool
) -> None:
    client, _ = browser_of(app)
    response = upload_page(client, content, token=token_of(client), htmx=htmx, **form)

    # htmx swaps only 2xx answers: the form comes back, in place, with the reason.
    assert response.status_code == (200 if htmx else 422)
    assert message in unescape(response.text)
    assert '<form id="upload-form"' in response.text
    assert ("<!doctype html>" in response.text) is not htmx
    assert import_job_count(app) == 0


def test_no_file_chosen_is_shown_on_the_form(app: Flask) -> None:
    client, _ = browser_of(app)
    response = client.post(
        IMPORTS_PAGE,
        data={"csrf_token": token_of(client), "file": (io.BytesIO(b""), "")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "choose the CSV file to import" in response.text
    assert import_job_count(app) == 0


def test_a_file_over_the_import_limit_is_refused_with_the_limit(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app, _ = apps_with_settings(make_app, config)(import_max_bytes=1000)
    client, _ = browser_of(app)
    token = token_of(client)
    # Over the limit as it is stored; and over it with the multipart envelope's room, refused
    # on its Content-Length before the body is read.
    for rows in (40, 2000):
        content = csv_bytes([HEADER, *numbered_rows(rows)])
        assert len(content) > 1000 + (64 * 1024 if rows == 2000 else 0)
        for htmx in (False, True):
            response = upload_page(client, content, token=token, htmx=htmx)
            assert response.status_code == (200 if htmx else 413)
            assert "the file is larger than the limit of 1000 bytes" in response.text
            assert '<form id="upload-form"' in response.text
    assert import_job_count(app) == 0


def test_a_file_over_the_app_s_body_limit_is_imported_when_the_token_is_in_the_header(
    app: Flask,
) -> None:
    """The page's htmx sends the token in a header, so the form is parsed under the import's
    limit (200 MiB), not the app's (1 MiB)."""
    client, _ = browser_of(app)
    content = csv_bytes([HEADER, *numbered_rows(20_000)])
    assert len(content) > 1024 * 1024
    response = upload_page(client, content, token=token_of(client), htmx=True)
    assert response.status_code == 204, response.text
    assert import_job_count(app) == 1


def test_every_failed_row_is_on_the_failed_rows_pages(app: Flask) -> None:
    client, _ = browser_of(app)
    caller = api_admin(app)
    rows = [HEADER, *numbered_rows(3), *[[f"bad {i}", "", "", ""] for i in range(7)]]
    job_id = job_id_of(upload_page(client, csv_bytes(rows), token=token_of(client)))
    run_jobs(app)

    shown = [
        row
        for html in screen_pages(client, f"{IMPORTS_PAGE}/{job_id}/failed", limit=3)
        for row in table(html, "failed-rows")
    ]

    assert shown == failed_rows_of(all_errors(app.test_client(), caller, job_id))
    assert len(shown) == 7
    bad = client.get(f"{IMPORTS_PAGE}/{job_id}/failed", query_string={"cursor": "forged"})
    assert bad.status_code == 400
    assert "the cursor was altered" in bad.text


def test_an_import_is_stopped_from_its_page(app: Flask) -> None:
    client, _ = browser_of(app)
    caller = api_admin(app)
    token = token_of(client)
    job_id = job_id_of(upload_page(client, csv_bytes([HEADER, *numbered_rows(3)]), token=token))

    response = client.post(f"{IMPORTS_PAGE}/{job_id}/cancel", data={"csrf_token": token})
    assert response.headers["Location"] == f"{IMPORTS_PAGE}/{job_id}"
    page = client.get(response.headers["Location"]).text
    assert "The import was stopped; the rows already imported stay." in notices(page)
    assert api_job(app, caller, job_id)["status"] == "cancelled"
    assert by_id(page, "job-status") == "Cancelled"

    client.post(f"{IMPORTS_PAGE}/{job_id}/cancel", data={"csrf_token": token})
    assert "Nothing to stop: the import is already cancelled." in notices(client.get(USERS).text)
    assert client.post(f"{IMPORTS_PAGE}/{job_id}/cancel").status_code == 403


def test_an_unknown_import_is_a_not_found_page(app: Flask) -> None:
    client, _ = browser_of(app)
    for suffix in ("", "/progress", "/failed", "/failed.csv"):
        response = client.get(f"{IMPORTS_PAGE}/{uuid.uuid4()}{suffix}")
        assert response.status_code == 404, suffix
        assert "No such import" in response.text


def test_staff_cannot_upload(app: Flask) -> None:
    client, _ = browser_of(app, "staff")
    token = hidden_token(client.get("/web/desk/chart").text)
    response = upload_page(client, csv_bytes([HEADER, *numbered_rows(2)]), token=token)
    assert response.status_code == 403
    assert import_job_count(app) == 0
