"""HTTP conventions: problem+json errors, request ids, the OpenAPI docs, cursor pagination.

One app on SQLite serves every test here, with a throwaway ``probe`` module whose endpoints
raise each kind of error and list a table through :func:`app.http.keyset_page`.
"""

from __future__ import annotations

import base64
import json
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from app.db import Base, transaction
from tests.app.fake_modules import embedded_config, fake_module_packages, manifest_source

PROBLEM = "application/problem+json"
ITEM_COUNT = 24

PROBE_MODULE = {
    "__init__.py": manifest_source(
        "probe",
        body="""
            def load(hooks):
                from .api import blp

                hooks.blueprint(blp)
            """,
    ),
    "models.py": """
        import uuid
        from datetime import datetime
        from decimal import Decimal

        from sqlalchemy import Integer
        from sqlalchemy.orm import Mapped, mapped_column

        from app.db import Base


        class Item(Base):
            __tablename__ = "probe_item"

            id: Mapped[int] = mapped_column(Integer, primary_key=True)
            public_id: Mapped[uuid.UUID] = mapped_column(unique=True)
            rank: Mapped[int] = mapped_column(Integer)
            price: Mapped[Decimal]
            listed_at: Mapped[datetime]
        """,
    "api.py": """
        import marshmallow as ma
        from flask import abort
        from flask.views import MethodView
        from flask_smorest import Blueprint
        from sqlalchemy import select

        from app import errors
        from app.http import PageArgs, keyset_page, page_schema

        from .models import Item

        blp = Blueprint("probe", __name__, description="Exercises the HTTP conventions")


        class ItemSchema(ma.Schema):
            id = ma.fields.Integer()
            public_id = ma.fields.UUID()
            rank = ma.fields.Integer()
            price = ma.fields.Decimal(as_string=True)
            listed_at = ma.fields.AwareDateTime()


        ItemPageSchema = page_schema(ItemSchema)


        @blp.route("/items")
        class ItemsByRank(MethodView):
            @blp.arguments(PageArgs, location="query")
            @blp.response(200, ItemPageSchema)
            def get(self, page):
                return keyset_page(
                    select(Item), (Item.rank, Item.id), limit=page["limit"], cursor=page["cursor"]
                )


        @blp.route("/items/cheapest")
        class ItemsByPrice(MethodView):
            @blp.arguments(PageArgs, location="query")
            @blp.response(200, ItemPageSchema)
            def get(self, page):
                return keyset_page(
                    select(Item), (Item.price, Item.id), limit=page["limit"], cursor=page["cursor"]
                )


        @blp.route("/items/newest")
        class ItemsNewestFirst(MethodView):
            @blp.arguments(PageArgs, location="query")
            @blp.response(200, ItemPageSchema)
            def get(self, page):
                return keyset_page(
                    select(Item),
                    (Item.listed_at, Item.public_id),
                    limit=page["limit"],
                    cursor=page["cursor"],
                    descending=True,
                )


        class RankFilterArgs(PageArgs):
            rank = ma.fields.List(ma.fields.Integer(), load_default=list)


        @blp.route("/items/by-ranks")
        class ItemsOfRanks(MethodView):
            @blp.arguments(RankFilterArgs, location="query")
            @blp.response(200, ItemPageSchema)
            def get(self, page):
                return keyset_page(
                    select(Item).where(Item.rank.in_(page["rank"])),
                    (Item.rank, Item.id),
                    limit=page["limit"],
                    cursor=page["cursor"],
                )


        class EchoSchema(ma.Schema):
            name = ma.fields.String(required=True)
            count = ma.fields.Integer(required=True)


        class BasketLineSchema(ma.Schema):
            quantity = ma.fields.Integer(required=True)


        class BasketSchema(ma.Schema):
            lines = ma.fields.List(ma.fields.Nested(BasketLineSchema), required=True)


        @blp.route("/basket")
        class Basket(MethodView):
            @blp.arguments(BasketSchema)
            @blp.response(200, BasketSchema)
            def post(self, basket):
                return basket


        @blp.route("/sold-out")
        class SoldOut(MethodView):
            def post(self):
                raise errors.Invalid("not enough stock", errors={"lines.0.quantity": "only 3 left"})


        @blp.route("/unstorable")
        class Unstorable(MethodView):
            def get(self):
                from sqlalchemy.exc import DataError

                # As SQLAlchemy wraps PostgreSQL's "numeric field overflow".
                raise DataError(
                    "SELECT total FROM probe", {}, ValueError("numeric field overflow")
                )


        @blp.route("/echo")
        class Echo(MethodView):
            @blp.arguments(EchoSchema)
            @blp.response(200, EchoSchema)
            def post(self, echo):
                return echo


        class QuotaExceeded(errors.TooManyRequests):
            code = "quota-exceeded"
            title = "The import quota is used up"


        @blp.route("/quota")
        class Quota(MethodView):
            def post(self):
                raise QuotaExceeded(
                    "3 imports per hour; the next one is possible in 2 minutes",
                    headers={"Retry-After": "120"},
                    limit=3,
                    window_seconds=3600,
                )


        @blp.route("/taken")
        class Taken(MethodView):
            def post(self):
                raise errors.Invalid(
                    "the e-mail address is taken", errors={"email": ["already registered"]}
                )


        @blp.route("/posted")
        class Posted(MethodView):
            def post(self):
                # A natural thing to write in an ERP: the extra field is the order's state.
                raise errors.Conflict("the order is already posted", status="posted")


        @blp.route("/fail/<family>")
        class Fail(MethodView):
            def get(self, family):
                raise getattr(errors, family)(f"{family} raised by the probe")


        @blp.route("/crash")
        class Crash(MethodView):
            def get(self):
                raise RuntimeError("SELECT password_hash FROM user_account WHERE id = 1")


        @blp.route("/abort-500")
        class Abort500(MethodView):
            def get(self):
                abort(500, description="connection to postgresql://admin:hunter2@db refused")
        """,
}


@pytest.fixture(scope="module")
def probe_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A directory for the database and a module package holding ``probe``."""
    directory = tmp_path_factory.mktemp("http")
    with fake_module_packages(directory / "packages") as packages:
        yield directory, packages.package({"probe": PROBE_MODULE})


@pytest.fixture(scope="module")
def probe_app(probe_site: tuple[Path, str]) -> Iterator[Flask]:
    directory, package = probe_site
    app = create_app(embedded_config(directory, module_packages=("modules", package)))
    item = import_module(f"{package}.probe.models").Item
    database = app.extensions["lapak.db"]
    Base.metadata.create_all(database.primary, tables=[item.__table__])
    insert_items(app, item)
    yield app
    database.dispose()


def insert_items(app: Flask, item: Any) -> None:
    """Rows whose sort keys tie in groups, inserted in shuffled order so ids do not follow them."""
    shuffled = list(range(ITEM_COUNT))
    random.Random(7).shuffle(shuffled)
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    with app.app_context(), transaction() as session:
        session.add_all(
            item(
                public_id=uuid.UUID(int=random.Random(n).getrandbits(128)),
                rank=n // 4,
                price=Decimal(n % 5) + Decimal("0.25"),
                listed_at=start + timedelta(hours=n // 3),
            )
            for n in shuffled
        )


@pytest.fixture
def client(probe_app: Flask) -> FlaskClient:
    """The probe app's client (in this file it replaces the PostgreSQL one of conftest.py)."""
    return probe_app.test_client()


def assert_problem(response: TestResponse, status: int, type_: str = "about:blank") -> dict:
    """The response is an RFC 9457 problem with ``status`` and ``type_``; returns its body."""
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = json.loads(response.data)
    assert body["status"] == status
    assert body["type"] == type_
    assert body["title"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


# --- problem+json -----------------------------------------------------------------------------


def test_unknown_path_is_a_404_problem(client: FlaskClient) -> None:
    response = client.get("/api/v1/no-such-thing")

    body = assert_problem(response, 404)
    assert body["title"] == "Not Found"
    assert body["instance"] == "/api/v1/no-such-thing"


def test_wrong_method_is_a_405_problem_that_keeps_the_allow_header(client: FlaskClient) -> None:
    response = client.delete("/health/live")

    body = assert_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


def test_schema_validation_failure_is_a_422_problem_with_field_errors(client: FlaskClient) -> None:
    response = client.post("/api/v1/probe/echo", json={"count": "several"})

    body = assert_problem(response, 422, "urn:lapak:problem:validation-failed")
    assert body["errors"] == {
        "name": ["Missing data for required field."],
        "count": ["Not a valid integer."],
    }


def test_field_errors_of_nested_lists_are_dotted_paths_to_lists_of_messages(
    client: FlaskClient,
) -> None:
    response = client.post(
        "/api/v1/probe/basket",
        json={"lines": [{"quantity": 1}, {"quantity": "x"}], "extra": 1},
    )

    body = assert_problem(response, 422, "urn:lapak:problem:validation-failed")
    assert body["errors"] == {
        "lines.1.quantity": ["Not a valid integer."],
        "extra": ["Unknown field."],
    }


def test_a_domain_error_field_message_becomes_a_list(client: FlaskClient) -> None:
    response = client.post("/api/v1/probe/sold-out")

    body = assert_problem(response, 422, "urn:lapak:problem:validation-failed")
    assert body["errors"] == {"lines.0.quantity": ["only 3 left"]}


def test_valid_input_passes_the_schema(client: FlaskClient) -> None:
    response = client.post("/api/v1/probe/echo", json={"name": "rice", "count": 3})

    assert (response.status_code, response.json) == (200, {"name": "rice", "count": 3})


def test_malformed_json_body_is_a_typed_400_problem_saying_where(client: FlaskClient) -> None:
    response = client.post("/api/v1/probe/echo", data="{", content_type="application/json")

    body = assert_problem(response, 400, "urn:lapak:problem:malformed-json")
    assert "line 1 column 2" in body["detail"]


def test_a_value_the_database_refuses_is_a_422_not_a_500(client: FlaskClient) -> None:
    response = client.get("/api/v1/probe/unstorable")

    body = assert_problem(response, 422, "urn:lapak:problem:value-not-storable")
    assert "nothing was saved" in body["detail"]
    assert "SELECT" not in response.get_data(as_text=True)


def test_unhandled_exception_is_a_500_problem_without_the_exception(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/api/v1/probe/crash", headers={"X-Request-ID": "crash-1"})

    body = assert_problem(response, 500)
    assert set(body) == {"type", "title", "status", "detail", "instance", "request_id"}
    assert body["request_id"] == "crash-1"
    text = response.get_data(as_text=True)
    for leak in ("password_hash", "SELECT", "RuntimeError", "Traceback", 'File "'):
        assert leak not in text
    # ...but operators get the whole story in the log.
    [record] = [r for r in caplog.records if r.getMessage() == "unhandled RuntimeError"]
    assert record.exc_info is not None


def test_http_500_raised_by_a_view_hides_its_description(client: FlaskClient) -> None:
    response = client.get("/api/v1/probe/abort-500")

    body = assert_problem(response, 500)
    assert "hunter2" not in response.get_data(as_text=True)
    assert body["detail"].startswith("An unexpected error occurred")


def test_domain_error_keeps_its_type_extra_fields_and_headers(client: FlaskClient) -> None:
    response = client.post("/api/v1/probe/quota")

    body = assert_problem(response, 429, "urn:lapak:problem:quota-exceeded")
    assert response.headers["Retry-After"] == "120"
    assert body["title"] == "The import quota is used up"
    assert body["detail"] == "3 imports per hour; the next one is possible in 2 minutes"
    assert (body["limit"], body["window_seconds"]) == (3, 3600)
    assert body["instance"] == "/api/v1/probe/quota"


def test_invalid_domain_error_carries_its_field_errors(client: FlaskClient) -> None:
    response = client.post("/api/v1/probe/taken")

    body = assert_problem(response, 422, "urn:lapak:problem:validation-failed")
    assert body["errors"] == {"email": ["already registered"]}
    assert body["detail"] == "the e-mail address is taken"


def test_extra_fields_cannot_overwrite_the_problem_members(client: FlaskClient) -> None:
    response = client.post("/api/v1/probe/posted")

    assert_problem(response, 409, "urn:lapak:problem:conflict")


@pytest.mark.parametrize(
    ("family", "status", "code"),
    [
        ("DomainError", 400, "error"),
        ("BadRequest", 400, "bad-request"),
        ("Unauthenticated", 401, "unauthenticated"),
        ("PermissionDenied", 403, "forbidden"),
        ("NotFound", 404, "not-found"),
        ("Conflict", 409, "conflict"),
        ("PayloadTooLarge", 413, "payload-too-large"),
        ("Invalid", 422, "validation-failed"),
        ("TooManyRequests", 429, "too-many-requests"),
        ("UpstreamFailed", 502, "upstream-failed"),
        ("ServiceUnavailable", 503, "service-unavailable"),
        ("UpstreamTimeout", 504, "upstream-timeout"),
    ],
)
def test_each_domain_error_family_maps_to_its_status(
    client: FlaskClient, family: str, status: int, code: str
) -> None:
    response = client.get(f"/api/v1/probe/fail/{family}")

    body = assert_problem(response, status, f"urn:lapak:problem:{code}")
    assert body["detail"] == f"{family} raised by the probe"


# --- request ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offered", ["req-42", "2f1c:9.b_x-Y", "0" * 128, "c0ffee00-1234-4abc-8def-000000000000"]
)
def test_sane_request_id_is_echoed(client: FlaskClient, offered: str) -> None:
    ok = client.get("/health/live", headers={"X-Request-ID": offered})
    failed = client.get("/api/v1/nowhere", headers={"X-Request-ID": offered})

    assert ok.headers["X-Request-ID"] == offered
    assert assert_problem(failed, 404)["request_id"] == offered


@pytest.mark.parametrize(
    "offered",
    [
        "0" * 129,
        "has space",
        'quote"d',
        "it's",
        "<script>alert(1)</script>",
        "semi;colon",
        "a,b",
        "",
    ],
)
def test_unsafe_request_id_is_replaced(client: FlaskClient, offered: str) -> None:
    ok = client.get("/health/live", headers={"X-Request-ID": offered})
    failed = client.get("/api/v1/nowhere", headers={"X-Request-ID": offered})

    for response in (ok, failed):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert assert_problem(failed, 404)["request_id"] != offered


def test_request_id_with_a_trailing_newline_is_replaced(client: FlaskClient) -> None:
    # Test clients refuse such a header, so set it in the WSGI environ as a server would.
    response = client.get("/health/live", environ_overrides={"HTTP_X_REQUEST_ID": "req-42\n"})

    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_each_request_gets_its_own_id(client: FlaskClient) -> None:
    ids = {client.get("/health/live").headers["X-Request-ID"] for _ in range(5)}

    assert len(ids) == 5


def test_readiness_on_the_embedded_defaults_is_ok(client: FlaskClient) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["checks"]["primary"]["ok"] is True
    assert response.json["checks"]["redis"] == {"ok": True, "mode": "embedded"}
    assert client.get("/health/live").json == {"status": "ok"}


# --- OpenAPI and docs -------------------------------------------------------------------------


def test_openapi_document_is_openapi_3_1_and_lists_the_endpoints(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    spec = json.loads(response.data)
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "Lapak"
    for path in ("/health/live", "/health/ready", "/api/v1/modules", "/api/v1/probe/items"):
        assert path in spec["paths"]
    parameters = spec["paths"]["/api/v1/probe/items"]["get"]["parameters"]
    assert {(p["name"], p["in"]) for p in parameters} == {("limit", "query"), ("cursor", "query")}


def openapi(client: FlaskClient) -> dict[str, Any]:
    return json.loads(client.get("/api/v1/openapi.json").data)


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                yield method.upper(), path, operation


def test_every_error_response_is_declared_as_problem_json(client: FlaskClient) -> None:
    wrong = [
        (method, path, status, sorted(response.get("content", {})))
        for method, path, operation in operations(openapi(client))
        for status, response in operation["responses"].items()
        if status >= "4" and list(response.get("content", {})) != [PROBLEM]
    ]
    assert wrong == []


def test_no_operation_hides_its_error_statuses_behind_default(client: FlaskClient) -> None:
    hiding = [
        (m, p)
        for m, p, operation in operations(openapi(client))
        if "default" in operation["responses"]
    ]
    assert hiding == []


def test_the_problem_schema_admits_extension_members(client: FlaskClient) -> None:
    problem_schema = openapi(client)["components"]["schemas"]["Problem"]

    assert problem_schema.get("additionalProperties", True) is not False
    assert set(problem_schema["required"]) == {"type", "title", "status"}
    assert problem_schema["properties"]["errors"]["additionalProperties"] == {
        "type": "array",
        "items": {"type": "string"},
    }


def test_each_operation_declares_the_statuses_its_inputs_can_cause(client: FlaskClient) -> None:
    spec = openapi(client)

    def statuses(method: str, path: str) -> set[str]:
        return set(spec["paths"][path][method]["responses"])

    assert {"400", "413", "415", "422", "500", "503"} <= statuses("post", "/api/v1/probe/echo")
    assert {"400", "422"} <= statuses("get", "/api/v1/probe/items")  # a bad cursor, a bad limit
    assert "404" in statuses("get", "/api/v1/probe/fail/{family}")
    # Nothing but the process answers these: never a 503.
    assert statuses("get", "/health/live") == {"200", "500"}
    assert statuses("get", "/api/v1/modules") == {"200", "500"}
    for method, path, operation in operations(spec):
        declared = set(operation["responses"])
        if "{" in path:
            assert "404" in declared, (method, path)
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert {"400", "413", "415", "422"} <= declared, (method, path)
        if operation.get("security"):
            assert "401" in declared, (method, path)


def test_the_headers_of_an_error_are_declared_with_it(client: FlaskClient) -> None:
    spec = openapi(client)
    for method, path, operation in operations(spec):
        responses = operation["responses"]
        for status, header in (("401", "WWW-Authenticate"), ("429", "Retry-After"),
                               ("503", "Retry-After")):  # fmt: skip
            if status in responses:
                assert header in responses[status].get("headers", {}), (method, path, status)
    locked = spec["paths"]["/api/v1/auth/login"]["post"]["responses"]["429"]
    assert locked["content"][PROBLEM]["schema"] == {
        "$ref": "#/components/schemas/LoginLockedProblem"
    }


def test_request_strings_declare_the_text_the_database_can_store(client: FlaskClient) -> None:
    spec = openapi(client)
    schemas = spec["components"]["schemas"]
    storable = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F]*$"

    assert schemas["LineIn"]["properties"]["product"]["pattern"] == storable
    assert schemas["Login"]["properties"]["email"]["pattern"] == storable
    query = spec["paths"]["/api/v1/marketplace/products"]["get"]["parameters"]
    assert {p["name"]: p["schema"].get("pattern") for p in query}["city"] == storable
    # Stricter rules stay; answers are not requests.
    assert schemas["PaymentIn"]["properties"]["method"].get("pattern") is None  # an enum
    assert "pattern" not in schemas["Product"]["properties"]["name"]


def test_a_rule_over_the_whole_body_is_declared(client: FlaskClient) -> None:
    schemas = openapi(client)["components"]["schemas"]

    assert schemas["UserUpdate"]["minProperties"] == 1  # "give at least one field to change"


def test_the_declared_statuses_are_the_ones_the_server_gives(client: FlaskClient) -> None:
    spec = openapi(client)
    answers = {
        ("post", "/api/v1/probe/echo"): client.post(
            "/api/v1/probe/echo", data="{", content_type="application/json"
        ),
        ("get", "/api/v1/probe/items"): client.get("/api/v1/probe/items?cursor=forged"),
        ("get", "/api/v1/probe/fail/{family}"): client.get("/api/v1/probe/fail/NotFound"),
    }
    for (method, path), response in answers.items():
        assert response.content_type == PROBLEM
        assert str(response.status_code) in spec["paths"][path][method]["responses"]


def test_every_link_names_an_operation_and_its_parameters(client: FlaskClient) -> None:
    spec = openapi(client)
    checked = 0
    for method, path, operation in operations(spec):
        for response in operation["responses"].values():
            for name, link in response.get("links", {}).items():
                pointer = link["operationRef"].removeprefix("#/paths/")
                target_path, target_method = pointer.rsplit("/", 1)
                target_path = target_path.replace("~1", "/").replace("~0", "~")
                target = spec["paths"][target_path][target_method]
                names = {p["name"] for p in spec["paths"][target_path].get("parameters", [])}
                names |= {p["name"] for p in target.get("parameters", [])}
                assert set(link.get("parameters", {})) <= names, (method, path, name)
                checked += 1
    assert checked >= 10


def test_docs_page_uses_only_local_assets_and_they_are_served(client: FlaskClient) -> None:
    page = client.get("/api/v1/docs")

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, "the docs page loads no assets"
    assert "http://" not in html
    assert "https://" not in html
    assert '"/api/v1/openapi.json"' in html
    for asset in assets:
        assert asset.startswith("/api/v1/docs/assets/")
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.get_data()) > 1000, asset
        served.close()


# --- cursor pagination ------------------------------------------------------------------------


def expected_ids(probe_app: Flask, order: str) -> list[int]:
    items = client_items(probe_app)
    keys = {
        "rank": lambda i: (i["rank"], i["id"]),
        "price": lambda i: (Decimal(i["price"]), i["id"]),
        "newest": lambda i: (i["listed_at"], uuid.UUID(i["public_id"])),
    }
    return [i["id"] for i in sorted(items, key=keys[order], reverse=order == "newest")]


def client_items(probe_app: Flask) -> list[dict[str, Any]]:
    """Every row, in one page of 200 (the maximum)."""
    response = probe_app.test_client().get("/api/v1/probe/items?limit=200")
    assert response.json["next_cursor"] is None
    return response.json["items"]


def walk(client: FlaskClient, url: str) -> list[TestResponse]:
    """Follow ``rel="next"`` links from ``url`` to the last page; returns every page."""
    pages = [client.get(url)]
    while "Link" in pages[-1].headers:
        assert len(pages) <= ITEM_COUNT, "pagination does not end"
        link = re.fullmatch(r'<([^>]+)>; rel="next"', pages[-1].headers["Link"])
        assert link, pages[-1].headers["Link"]
        pages.append(client.get(link.group(1)))
    return pages


@pytest.mark.parametrize(
    ("endpoint", "order"),
    [("items", "rank"), ("items/cheapest", "price"), ("items/newest", "newest")],
)
def test_pages_cover_every_row_once_in_order(
    probe_app: Flask, client: FlaskClient, endpoint: str, order: str
) -> None:
    pages = walk(client, f"/api/v1/probe/{endpoint}?limit=5")

    assert [p.status_code for p in pages] == [200] * 5
    assert [len(p.json["items"]) for p in pages] == [5, 5, 5, 5, 4]
    ids = [item["id"] for page in pages for item in page.json["items"]]
    assert ids == expected_ids(probe_app, order)
    assert sorted(ids) == list(range(1, ITEM_COUNT + 1))


def test_probe_rows_tie_on_every_first_sort_key(probe_app: Flask) -> None:
    # Guards the data the pagination tests rely on: with pages of five, boundaries fall in ties.
    items = client_items(probe_app)
    for key in ("rank", "price", "listed_at"):
        values = [item[key] for item in items]
        assert all(values.count(value) >= 3 for value in values), key


def test_next_link_carries_the_cursor_and_the_other_arguments(client: FlaskClient) -> None:
    first = client.get("/api/v1/probe/items?limit=5")

    link = re.fullmatch(r'<([^>]+)>; rel="next"', first.headers["Link"])
    assert link
    url = urlsplit(link.group(1))
    assert url.path == "/api/v1/probe/items"
    assert parse_qs(url.query) == {"limit": ["5"], "cursor": [first.json["next_cursor"]]}


def test_last_page_has_a_null_cursor_and_no_link(client: FlaskClient) -> None:
    pages = walk(client, "/api/v1/probe/items?limit=6")  # 24 rows: exactly four full pages

    assert [len(p.json["items"]) for p in pages] == [6, 6, 6, 6]
    assert all(p.json["next_cursor"] for p in pages[:-1])
    assert "next_cursor" in pages[-1].json
    assert pages[-1].json["next_cursor"] is None
    assert "Link" not in pages[-1].headers


def test_next_link_keeps_repeated_filter_arguments(probe_app: Flask, client: FlaskClient) -> None:
    pages = walk(client, "/api/v1/probe/items/by-ranks?rank=1&rank=4&limit=3")

    ranks = [item["rank"] for page in pages for item in page.json["items"]]
    assert ranks == [1, 1, 1, 1, 4, 4, 4, 4]


def test_default_page_holds_up_to_fifty_items(client: FlaskClient) -> None:
    response = client.get("/api/v1/probe/items")

    assert len(response.json["items"]) == ITEM_COUNT
    assert response.json["next_cursor"] is None


def forge(cursor: str, key: list[Any]) -> str:
    """``cursor`` with its payload replaced by ``key`` and the original signature kept."""
    _payload, signature = cursor.rsplit(".", 1)
    payload = base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")
    return f"{payload}.{signature}"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c: forge(c, [0, 0]), id="payload-replaced"),
        pytest.param(lambda c: c[:-3] + ("AAA" if c[-3:] != "AAA" else "BBB"), id="signature"),
        pytest.param(lambda c: "not-a-cursor", id="garbage"),
        pytest.param(lambda c: c.split(".")[0], id="unsigned"),
    ],
)
def test_tampered_cursor_is_a_400_invalid_cursor_problem(client: FlaskClient, tamper: Any) -> None:
    cursor = client.get("/api/v1/probe/items?limit=5").json["next_cursor"]

    response = client.get("/api/v1/probe/items", query_string={"cursor": tamper(cursor)})

    body = assert_problem(response, 400, "urn:lapak:problem:invalid-cursor")
    assert body["title"] == "The cursor is not valid"


def test_cursor_from_another_listing_is_refused(client: FlaskClient) -> None:
    # Both listings sort by two keys, so only the cursor's binding to its endpoint tells them apart.
    cursor = client.get("/api/v1/probe/items?limit=5").json["next_cursor"]

    response = client.get("/api/v1/probe/items/cheapest", query_string={"cursor": cursor})

    assert_problem(response, 400, "urn:lapak:problem:invalid-cursor")


def test_cursor_signed_with_another_secret_is_refused(
    probe_app: Flask, probe_site: tuple[Path, str], client: FlaskClient
) -> None:
    directory, package = probe_site
    other = create_app(
        embedded_config(
            directory, module_packages=("modules", package), secret_key="other-" + "o" * 40
        )
    )
    foreign = other.test_client().get("/api/v1/probe/items?limit=5")
    assert foreign.status_code == 200  # same database, same listing, another secret

    response = client.get(
        "/api/v1/probe/items", query_string={"cursor": foreign.json["next_cursor"]}
    )

    assert_problem(response, 400, "urn:lapak:problem:invalid-cursor")
    other.extensions["lapak.db"].dispose()


@pytest.mark.parametrize("limit", ["0", "-1", "201", "ten"])
def test_limit_out_of_bounds_is_a_422_problem(client: FlaskClient, limit: str) -> None:
    response = client.get("/api/v1/probe/items", query_string={"limit": limit})

    body = assert_problem(response, 422, "urn:lapak:problem:validation-failed")
    assert list(body["errors"]) == ["limit"]


def test_a_control_character_in_a_query_argument_is_a_422_naming_it(client: FlaskClient) -> None:
    response = client.get("/api/v1/probe/items", query_string={"cursor": "a\x00b"})

    body = assert_problem(response, 422, "urn:lapak:problem:validation-failed")
    assert list(body["errors"]) == ["cursor"]


@pytest.mark.parametrize("limit", [1, 200])
def test_limit_bounds_are_inclusive(client: FlaskClient, limit: int) -> None:
    response = client.get("/api/v1/probe/items", query_string={"limit": limit})

    assert response.status_code == 200
    assert len(response.json["items"]) == min(limit, ITEM_COUNT)
