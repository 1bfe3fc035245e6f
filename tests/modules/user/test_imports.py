"""User CSV imports over HTTP: upload, refusals, the job, its errors, cancel, list, template.

Real PostgreSQL and Redis: an upload waits on the RQ ``imports`` queue until ``run_jobs`` works
it in this process. The helpers at the top are shared by the other ``test_imports_*`` files.
"""

from __future__ import annotations

import csv
import io
import random
import re
import uuid
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from werkzeug.test import TestResponse

from app.db import Session
from app.events import OutboxEvent
from modules.user.models import ImportJob, User
from tests.conftest import run_jobs
from tests.modules.conftest import Caller

IMPORTS = "/api/v1/users/imports"
TEMPLATE = "/api/v1/users/import-template.csv"
PROBLEM = "application/problem+json"
FINISHED = ("succeeded", "succeeded_with_errors", "failed", "cancelled")
JOB_FIELDS = {
    "id", "status", "mode", "dry_run", "default_role", "filename", "encoding", "delimiter",
    "total_rows", "processed_rows", "created", "updated", "skipped", "failed", "percent",
    "rows_per_second", "unknown_columns", "error", "created_at", "started_at", "finished_at",
    "first_errors", "existing", "hint",
}  # fmt: skip
ERROR_FIELDS = {"row", "column", "value", "message", "code"}
ROLE_MESSAGE = "must be one of admin, staff, customer, seller"
PASSWORD_HASH_MESSAGE = "must be an argon2 or bcrypt hash; plain passwords are refused"
#: Wikipedia's bcrypt example, and the same shape as PHP/Laravel write it ($2y$).
BCRYPT_HASH = "$2a$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
BCRYPT_2Y_HASH = "$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a"
SAMPLE_CSV = Path(__file__).resolve().parents[2] / "fixtures" / "users_sample.csv"


# --- helpers shared by the import tests ------------------------------------------------------


def csv_bytes(
    rows: Iterable[Sequence[str]],
    *,
    delimiter: str = ",",
    newline: str = "\n",
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
) -> bytes:
    """Rows written as a CSV file (quoted where needed) in ``encoding``."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def numbered_rows(count: int, start: int = 0, prefix: str = "user") -> list[list[str]]:
    """``count`` valid rows (email, name, role, phone) with distinct emails."""
    return [
        [f"{prefix}.{i}@example.test", f"User {i}", "customer", f"0812{i:08d}"]
        for i in range(start, start + count)
    ]


HEADER = ["email", "name", "role", "phone"]


def upload(
    client: FlaskClient,
    caller: Caller | None,
    content: bytes,
    *,
    filename: str = "users.csv",
    headers: dict[str, str] | None = None,
    **form: str,
) -> TestResponse:
    """POST ``content`` as the multipart field ``file`` with the given form fields."""
    data: dict[str, Any] = {"file": (io.BytesIO(content), filename, "text/csv"), **form}
    return client.post(
        IMPORTS,
        data=data,
        headers={**(caller.headers if caller else {}), **(headers or {})},
        content_type="multipart/form-data",
    )


def start_import(client: FlaskClient, caller: Caller, content: bytes, **options: str) -> dict:
    """Upload; assert the 202 with its Location; return the job as answered."""
    response = upload(client, caller, content, **options)
    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()
    assert response.headers["Location"].endswith(f"{IMPORTS}/{job['id']}")
    return job


def get_job(client: FlaskClient, caller: Caller, job_id: str) -> dict:
    response = client.get(f"{IMPORTS}/{job_id}", headers=caller.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def run_import(
    app: Flask, client: FlaskClient, caller: Caller, content: bytes, **options: str
) -> dict:
    """Upload, work the queues in this process, return the finished job."""
    job = start_import(client, caller, content, **options)
    run_jobs(app)
    finished = get_job(client, caller, job["id"])
    assert finished["status"] in FINISHED, finished
    return finished


def all_errors(client: FlaskClient, caller: Caller, job_id: str, limit: int = 100) -> list[dict]:
    """Every row error of a job, following ``next_cursor``."""
    items: list[dict] = []
    cursor = None
    for _ in range(1000):
        query: dict[str, Any] = {"limit": limit}
        if cursor:
            query["cursor"] = cursor
        response = client.get(f"{IMPORTS}/{job_id}/errors", query_string=query,
                              headers=caller.headers)  # fmt: skip
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("the errors never ended")


def error_triples(errors: Iterable[dict]) -> set[tuple[int, str | None, str]]:
    return {(e["row"], e["column"], e["message"]) for e in errors}


def stored_users(app: Flask) -> dict[str, dict[str, Any]]:
    """Every user as stored, by email key, read in a fresh session."""
    with app.app_context():
        Session.remove()
        return {
            user.email_key: {
                "email": user.email,
                "name": user.name,
                "role": user.role,
                "phone": user.phone,
                "password_hash": user.password_hash,
                "active": user.active,
                "updated_at": user.updated_at,
            }
            for user in Session().scalars(select(User))
        }


def user_count(app: Flask) -> int:
    with app.app_context():
        Session.remove()
        return Session().scalar(select(func.count()).select_from(User))


def import_job_count(app: Flask) -> int:
    with app.app_context():
        Session.remove()
        return Session().scalar(select(func.count()).select_from(ImportJob))


def imported_events(app: Flask) -> list[dict[str, Any]]:
    with app.app_context():
        Session.remove()
        statement = (
            select(OutboxEvent.payload)
            .where(OutboxEvent.name == "user.imported")
            .order_by(OutboxEvent.id)
        )
        return list(Session().scalars(statement))


def assert_counts_add_up(job: dict) -> None:
    assert job["processed_rows"] == job["total_rows"], job
    assert job["created"] + job["updated"] + job["skipped"] + job["failed"] == job["total_rows"]
    assert job["percent"] == 100
    expected = "succeeded_with_errors" if job["failed"] else "succeeded"
    assert job["status"] == expected, job


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    if code is not None:
        assert body["type"] == f"urn:lapak:problem:{code}", body
    return body


def stored_files(config: dict[str, Any]) -> list[Path]:
    directory = Path(config["instance_path"]) / "imports"
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


AppWith = Callable[..., tuple[Flask, FlaskClient]]


def apps_with_settings(make_app: Callable[..., Flask], config: dict[str, Any]) -> AppWith:
    """``build(import_max_rows=5)``: an app and its client with those import settings.

    The base module settings are kept; a first dict argument passes app overrides
    (``build({"redis_url": None}, import_chunk_rows=2)``).
    """

    def build(
        overrides: dict[str, Any] | None = None, **settings: Any
    ) -> tuple[Flask, FlaskClient]:
        env = {**config["module_env"], **{k: str(v) for k, v in settings.items()}}
        built = make_app(module_env=env, **(overrides or {}))
        return built, built.test_client()

    return build


@pytest.fixture
def app_with(make_app: Callable[..., Flask], config: dict[str, Any]) -> AppWith:
    return apps_with_settings(make_app, config)


def read_csv(body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body, newline="")))


# --- the upload and the job ------------------------------------------------------------------


def test_upload_answers_202_with_the_queued_job_and_the_worker_imports_it(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    content = csv_bytes([HEADER, *numbered_rows(3)])
    response = upload(client, admin, content, filename="pelanggan mei.csv")
    assert response.status_code == 202, response.get_data(as_text=True)
    queued = response.get_json()
    assert set(queued) >= JOB_FIELDS
    uuid.UUID(queued["id"])
    assert response.headers["Location"].endswith(f"{IMPORTS}/{queued['id']}")
    assert queued["status"] == "queued"
    assert queued["mode"] == "create"
    assert queued["dry_run"] is False
    assert queued["default_role"] == "customer"
    assert queued["filename"] == "pelanggan mei.csv"
    assert queued["encoding"] == "utf-8"
    assert queued["delimiter"] == ","
    assert queued["total_rows"] == 3  # known at upload
    assert queued["processed_rows"] == 0
    assert queued["percent"] == 0
    assert (queued["created"], queued["updated"], queued["skipped"], queued["failed"]) == (
        0, 0, 0, 0,
    )  # fmt: skip
    assert queued["unknown_columns"] == []
    assert queued["error"] is None
    assert queued["started_at"] is None
    assert queued["finished_at"] is None
    assert queued["first_errors"] == []
    assert user_count(app) == 1  # only the admin: nothing happens before the worker
    assert app.extensions["lapak.jobs"].queue("imports").count == 1

    run_jobs(app)

    job = get_job(client, admin, queued["id"])
    assert set(job) >= JOB_FIELDS
    assert job["status"] == "succeeded"
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (3, 0, 0, 0)
    assert_counts_add_up(job)
    assert job["rows_per_second"] is None or job["rows_per_second"] > 0
    created_at = datetime.fromisoformat(job["created_at"])
    started_at = datetime.fromisoformat(job["started_at"])
    finished_at = datetime.fromisoformat(job["finished_at"])
    assert created_at.tzinfo is not None
    assert created_at <= started_at <= finished_at
    users = stored_users(app)
    assert users["user.0@example.test"]["name"] == "User 0"
    assert users["user.2@example.test"]["phone"] == "+6281200000002"


def test_upload_stores_the_file_under_the_instance_imports_directory(
    client: FlaskClient, admin: Caller, config: dict[str, Any]
) -> None:
    content = csv_bytes([HEADER, *numbered_rows(2)])
    start_import(client, admin, content)
    assert [p.read_bytes() for p in stored_files(config)] == [content]


def test_a_filename_with_a_path_cannot_write_outside_the_imports_directory(
    client: FlaskClient, admin: Caller, config: dict[str, Any], tmp_path: Path
) -> None:
    content = csv_bytes([HEADER, *numbered_rows(1)])
    response = upload(client, admin, content, filename="../../../escaped.csv")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert "/" not in response.get_json()["filename"]
    imports = Path(config["instance_path"]) / "imports"
    for depth in range(5):
        assert not (imports.joinpath(*[".."] * depth) / "escaped.csv").resolve().exists()
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and imports not in p.parents]
    assert not [p for p in outside if p.read_bytes() == content]
    assert len(stored_files(config)) == 1


def test_the_sample_file_imports_200_users(app: Flask, client: FlaskClient, admin: Caller) -> None:
    job = run_import(app, client, admin, SAMPLE_CSV.read_bytes(), filename=SAMPLE_CSV.name)
    assert job["status"] == "succeeded", job
    assert job["total_rows"] == 200
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (200, 0, 0, 0)
    assert job["first_errors"] == []
    assert_counts_add_up(job)
    users = stored_users(app)
    assert len(users) == 201  # and the admin
    with SAMPLE_CSV.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            local, domain = row["email"].strip().rsplit("@", 1)
            user = users[row["email"].strip().lower()]
            assert user["email"] == f"{local}@{domain.lower()}"
            assert user["name"] == row["name"].strip()
            assert user["role"] == row["role"].strip().lower()
            assert user["phone"] == "+62" + row["phone"].strip()[1:]


def test_one_user_imported_event_per_finished_job_with_the_counts(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    first = run_import(app, client, admin, csv_bytes([HEADER, *numbered_rows(4)]))
    second = run_import(
        app, client, admin, csv_bytes([HEADER, *numbered_rows(2, start=3), ["bad", "", "", ""]])
    )
    assert (second["created"], second["failed"]) == (1, 2)
    events = imported_events(app)
    assert [e["import_id"] for e in events] == [first["id"], second["id"]]
    for event, job in zip(events, (first, second), strict=True):
        counts = event.get("counts", event)
        for key in ("created", "updated", "skipped", "failed"):
            assert counts[key] == job[key], (key, event)


def test_running_a_finished_import_again_changes_nothing(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    """RQ may run a job twice (a retry, a watchdog): the second run must be a no-op."""
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(5)]))
    queue = app.extensions["lapak.jobs"].queue("imports")
    [queued] = queue.jobs
    func, args = queued.func, queued.args
    run_jobs(app)
    done = get_job(client, admin, job["id"])
    queue.enqueue(func, *args)
    run_jobs(app)
    again = get_job(client, admin, job["id"])
    assert again == done
    assert user_count(app) == 1 + 5
    assert len(imported_events(app)) == 1


def test_jobs_run_in_a_thread_without_redis(app_with: AppWith, admin: Caller) -> None:
    embedded, embedded_client = app_with({"redis_url": None})
    job = start_import(embedded_client, admin, csv_bytes([HEADER, *numbered_rows(7)]))
    embedded.extensions["lapak.jobs"].wait_embedded()
    done = get_job(embedded_client, admin, job["id"])
    assert done["status"] == "succeeded", done
    assert done["created"] == 7
    assert_counts_add_up(done)
    assert user_count(embedded) == 1 + 7


# --- refusals before any work ----------------------------------------------------------------


def zipped_csv() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("users.csv", "email,name\na@example.com,A\n")
    return buffer.getvalue()


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"email,name,role\n", "no data rows", id="header-only"),
        pytest.param(b"email,name,role\r\n\r\n\r\n\r\n", "no data rows", id="header-and-blanks"),
        pytest.param(b",,\na@example.test,A,\n", "no header", id="blank-header"),
        pytest.param(
            b"email,name\na@example.com,A\x00\x00\x00\nb@example.com,B\n",
            "not a CSV text file",
            id="nul-bytes",
        ),
        pytest.param(zipped_csv(), "not a CSV text file", id="zip"),
        pytest.param(PNG, "not a CSV text file", id="png"),
        pytest.param(random.Random(4).randbytes(4096), "not a CSV text file", id="random"),
    ],
)
def test_files_that_cannot_be_imported_are_refused_with_what_is_wrong(
    app: Flask,
    client: FlaskClient,
    admin: Caller,
    config: dict[str, Any],
    content: bytes,
    detail: str,
) -> None:
    body = assert_problem(upload(client, admin, content), 422, "invalid-import-file")
    assert detail.lower() in body["detail"].lower(), body
    assert import_job_count(app) == 0
    assert stored_files(config) == []
    assert app.extensions["lapak.jobs"].queue("imports").count == 0


def test_a_file_over_the_byte_limit_is_refused_with_413(
    app_with: AppWith, admin: Caller, config: dict[str, Any]
) -> None:
    limited, limited_client = app_with(import_max_bytes=2000)
    small = csv_bytes([HEADER, *numbered_rows(5)])
    assert len(small) < 1000
    assert upload(limited_client, admin, small).status_code == 202
    big = csv_bytes([HEADER, *numbered_rows(60)])
    assert len(big) > 3000
    body = assert_problem(upload(limited_client, admin, big), 413, "payload-too-large")
    assert body.get("detail")
    assert import_job_count(limited) == 1
    assert len(stored_files(config)) == 1


@pytest.mark.slow
def test_the_byte_limit_defaults_to_200_mib(app_with: AppWith, admin: Caller) -> None:
    """Just above 200 MiB is refused by default (streamed, not built in memory twice)."""
    _, default_client = app_with()
    limit = 209715200
    row = b"x.%09d@example.test,Nama Yang Cukup Panjang Untuk Mengisi Baris\n"
    line_length = len(row % 0)
    content = b"email,name\n" + b"".join(row % i for i in range(limit // line_length + 2))
    assert len(content) > limit
    assert_problem(upload(default_client, admin, content), 413, "payload-too-large")


def test_more_rows_than_the_limit_are_refused_and_blank_lines_do_not_count(
    app_with: AppWith, admin: Caller, config: dict[str, Any]
) -> None:
    limited, limited_client = app_with(import_max_rows=5)
    at_limit = b"email,name\n\n" + b"".join(b"r%d@example.test,R\n\n" % i for i in range(5))
    accepted = upload(limited_client, admin, at_limit)
    assert accepted.status_code == 202, accepted.get_data(as_text=True)
    assert accepted.get_json()["total_rows"] == 5
    over = csv_bytes([HEADER, *numbered_rows(6)])
    body = assert_problem(upload(limited_client, admin, over), 422, "invalid-import-file")
    assert "5" in body["detail"], body
    assert import_job_count(limited) == 1
    assert len(stored_files(config)) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "replace"),
        ("mode", ""),
        ("encoding", "ebcdic"),
        ("encoding", "utf-32"),
        ("default_role", "boss"),
        ("default_role", "ADMIN OF ALL"),
        ("dry_run", "perhaps"),
    ],
)
def test_unknown_options_are_refused_with_422(
    app: Flask, client: FlaskClient, admin: Caller, field: str, value: str
) -> None:
    content = csv_bytes([HEADER, *numbered_rows(2)])
    assert_problem(upload(client, admin, content, **{field: value}), 422)
    assert import_job_count(app) == 0


def test_an_upload_without_a_file_is_refused_with_422(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    response = client.post(IMPORTS, data={"mode": "create"}, headers=admin.headers,
                           content_type="multipart/form-data")  # fmt: skip
    assert_problem(response, 422)
    assert import_job_count(app) == 0


def test_options_are_kept_on_the_job(app: Flask, client: FlaskClient, admin: Caller) -> None:
    content = csv_bytes([HEADER, *numbered_rows(2)])
    job = start_import(client, admin, content, mode="upsert", dry_run="true",
                       default_role="seller", encoding="cp1252")  # fmt: skip
    assert (job["mode"], job["dry_run"], job["default_role"], job["encoding"]) == (
        "upsert", True, "seller", "cp1252",
    )  # fmt: skip


# --- list, show, errors ----------------------------------------------------------------------


def test_imports_are_listed_newest_first_with_a_cursor(client: FlaskClient, admin: Caller) -> None:
    ids = [start_import(client, admin, csv_bytes([HEADER, *numbered_rows(1, i)]))["id"]
           for i in range(3)]  # fmt: skip
    first = client.get(IMPORTS, query_string={"limit": 2}, headers=admin.headers)
    assert first.status_code == 200, first.get_data(as_text=True)
    page = first.get_json()
    assert [job["id"] for job in page["items"]] == [ids[2], ids[1]]
    assert set(page["items"][0]) >= JOB_FIELDS - {"first_errors"}
    assert page["next_cursor"]
    second = client.get(IMPORTS, query_string={"limit": 2, "cursor": page["next_cursor"]},
                        headers=admin.headers).get_json()  # fmt: skip
    assert [job["id"] for job in second["items"]] == [ids[0]]
    assert second["next_cursor"] is None


def test_unknown_imports_are_404(client: FlaskClient, admin: Caller) -> None:
    missing = uuid.uuid4()
    for method, path in [
        ("GET", f"{IMPORTS}/{missing}"),
        ("GET", f"{IMPORTS}/{missing}/errors"),
        ("GET", f"{IMPORTS}/{missing}/errors?format=csv"),
        ("POST", f"{IMPORTS}/{missing}/cancel"),
        ("GET", f"{IMPORTS}/not-a-uuid"),
    ]:
        assert_problem(client.open(path, method=method, headers=admin.headers), 404)


def failing_rows(count: int) -> list[list[str]]:
    return [[f"broken-{i}", f"Broken {i}", "customer", ""] for i in range(count)]


def test_errors_are_paged_in_row_order(app: Flask, client: FlaskClient, admin: Caller) -> None:
    rows = [HEADER, ["ok@example.test", "Ok", "", ""], *failing_rows(25)]
    job = run_import(app, client, admin, csv_bytes(rows))
    assert (job["created"], job["failed"], job["status"]) == (1, 25, "succeeded_with_errors")
    pages = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"{IMPORTS}/{job['id']}/errors", query_string=query,
                              headers=admin.headers)  # fmt: skip
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            break
        assert len(pages) < 10
    assert [len(page) for page in pages] == [10, 10, 5]
    items = [item for page in pages for item in page]
    assert all(set(item) == ERROR_FIELDS for item in items)
    assert [item["row"] for item in items] == list(range(3, 28))
    assert items[0] == {
        "row": 3, "column": "email", "value": "broken-0",
        "message": "is not a valid email address", "code": "invalid",
    }  # fmt: skip
    assert job["first_errors"] == items[:10]


def test_a_job_without_errors_has_an_empty_error_list_and_csv(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    job = run_import(app, client, admin, csv_bytes([HEADER, *numbered_rows(2)]))
    assert all_errors(client, admin, job["id"]) == []
    response = client.get(f"{IMPORTS}/{job['id']}/errors?format=csv", headers=admin.headers)
    assert response.status_code == 200
    assert read_csv(response.get_data(as_text=True).lstrip("\ufeff")) == [[*HEADER, "error"]]


def test_errors_download_as_csv_to_fix_and_upload_again_with_formulas_neutralised(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    header = ["email", "name", "role", "phone", "notes"]
    rows = [
        header,
        ["bad-email-1", '=HYPERLINK("http://evil.example","klik")', "customer",
         "+628123456789", "@SUM(A1)"],
        ["good@example.test", "Good", "customer", "", "fine"],
        ["second@example.test", "-2+3", "manager", "\tx", "\rnote"],
        ["third@example.test", "Tiga", "customer", "", "=1+1"],  # created: not in the file
    ]  # fmt: skip
    # Every cell quoted: a bare CR would end the record, a quoted one is part of the cell.
    job = run_import(app, client, admin, csv_bytes(rows, quoting=csv.QUOTE_ALL))
    errors = all_errors(client, admin, job["id"])
    assert (job["created"], job["failed"]) == (2, 2), errors

    for request in (
        {"query_string": {"format": "csv"}, "headers": admin.headers},
        {"headers": {**admin.headers, "Accept": "text/csv"}},
    ):
        response = client.get(f"{IMPORTS}/{job['id']}/errors", **request)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/csv"
        assert "attachment" in response.headers.get("Content-Disposition", "")
        lines = read_csv(response.get_data(as_text=True).lstrip("\ufeff"))
        assert lines[0] == [*header, "error"]
        assert len(lines) == 3
        first, second = lines[1], lines[2]
        assert first[:5] == [
            "bad-email-1", "'=HYPERLINK(\"http://evil.example\",\"klik\")", "customer",
            "'+628123456789", "'@SUM(A1)",
        ]  # fmt: skip
        assert first[5].split("; ") == ["is not a valid email address"] or first[5].endswith(
            "is not a valid email address"
        )
        assert second[:5] == ["second@example.test", "'-2+3", "manager", "'\tx", "'\rnote"]
        row_messages = [e["message"] for e in errors if e["row"] == 4]
        assert len(row_messages) == 2, errors
        assert ROLE_MESSAGE in row_messages
        assert second[5] in {"; ".join(row_messages), "; ".join(reversed(row_messages))}


def test_error_csv_neutralises_header_cells_too(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    rows = [["email", "=cmd|' /C calc'!A0"], ["nope", "x"]]
    job = run_import(app, client, admin, csv_bytes(rows))
    assert job["unknown_columns"] == ["=cmd|' /C calc'!A0"]
    response = client.get(f"{IMPORTS}/{job['id']}/errors?format=csv", headers=admin.headers)
    lines = read_csv(response.get_data(as_text=True).lstrip("\ufeff"))
    assert lines[0] == ["email", "'=cmd|' /C calc'!A0", "error"]
    assert lines[1][:2] == ["nope", "x"]


# --- cancel ----------------------------------------------------------------------------------


def test_a_queued_import_can_be_cancelled_and_then_imports_nothing(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    job = start_import(client, admin, csv_bytes([HEADER, *numbered_rows(5)]))
    response = client.post(f"{IMPORTS}/{job['id']}/cancel", headers=admin.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    cancelled = response.get_json()
    assert cancelled["id"] == job["id"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] is not None
    run_jobs(app)
    after = get_job(client, admin, job["id"])
    assert after["status"] == "cancelled"
    assert after["processed_rows"] == 0
    assert after["created"] == 0
    assert user_count(app) == 1
    again = client.post(f"{IMPORTS}/{job['id']}/cancel", headers=admin.headers)
    assert_problem(again, 409, "import-finished")


def test_a_finished_import_cannot_be_cancelled(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    job = run_import(app, client, admin, csv_bytes([HEADER, *numbered_rows(2)]))
    response = client.post(f"{IMPORTS}/{job['id']}/cancel", headers=admin.headers)
    assert_problem(response, 409, "import-finished")
    assert get_job(client, admin, job["id"])["status"] == "succeeded"


# --- template --------------------------------------------------------------------------------


def test_template_is_the_header_row(client: FlaskClient, admin: Caller) -> None:
    response = client.get(TEMPLATE, headers=admin.headers)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    body = response.get_data(as_text=True).lstrip("\ufeff")
    assert body.splitlines() == ["email,name,role,phone,password_hash"]


def test_the_template_imports_as_a_file_with_no_data_rows(
    client: FlaskClient, admin: Caller
) -> None:
    template = client.get(TEMPLATE, headers=admin.headers).get_data()
    body = assert_problem(upload(client, admin, template), 422, "invalid-import-file")
    assert "no data rows" in body["detail"]


# --- who may call what -----------------------------------------------------------------------


@pytest.fixture
def finished_job(app: Flask, client: FlaskClient, admin: Caller) -> str:
    return run_import(app, client, admin, csv_bytes([HEADER, ["nope", "", "", ""]]))["id"]


ENDPOINTS = [
    ("POST", IMPORTS),
    ("GET", IMPORTS),
    ("GET", f"{IMPORTS}/{{id}}"),
    ("GET", f"{IMPORTS}/{{id}}/errors"),
    ("GET", f"{IMPORTS}/{{id}}/errors?format=csv"),
    ("POST", f"{IMPORTS}/{{id}}/cancel"),
    ("GET", TEMPLATE),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_only_admins_may_use_imports(
    app: Flask,
    client: FlaskClient,
    finished_job: str,
    admin: Caller,
    staff: Caller,
    customer: Caller,
    method: str,
    path: str,
) -> None:
    url = path.format(id=finished_job)

    def send(headers: dict[str, str]) -> TestResponse:
        if method == "POST" and path == IMPORTS:
            data = {"file": (io.BytesIO(b"email\nx@example.test\n"), "u.csv")}
            return client.post(url, data=data, headers=headers,
                               content_type="multipart/form-data")  # fmt: skip
        return client.open(url, method=method, headers=headers)

    assert_problem(send({}), 401)
    for caller in (staff, customer):
        body = assert_problem(send(caller.headers), 403)
        assert "items" not in body
        assert "total_rows" not in body
    assert import_job_count(app) == 1
    assert get_job(client, admin, finished_job)["status"] == "succeeded_with_errors"


def test_imports_are_documented_in_the_openapi_document(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    assert "multipart/form-data" in paths[IMPORTS]["post"]["requestBody"]["content"]
    assert {"202", "401", "403", "413", "422"} <= set(paths[IMPORTS]["post"]["responses"])
    assert f"{IMPORTS}/{{import_id}}" in paths or any(
        re.fullmatch(rf"{IMPORTS}/\{{[a-z_]+\}}", p) for p in paths
    )
    assert TEMPLATE in paths


def test_the_migrations_create_the_import_tables(app: Flask) -> None:
    """The harness builds the schema with ``upgrade`` only: the tables come from a revision."""
    with app.app_context():
        Session.remove()
        tables = set(
            Session().scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        )
    assert {"user_import_job", "user_import_error"} <= tables


def test_error_csv_keeps_columns_that_share_a_name(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    rows = [["email", "catatan", "catatan"], ["nope", "pertama", "kedua"]]
    job = run_import(app, client, admin, csv_bytes(rows))
    response = client.get(f"{IMPORTS}/{job['id']}/errors?format=csv", headers=admin.headers)
    lines = read_csv(response.get_data(as_text=True).lstrip("\ufeff"))
    assert lines[0] == ["email", "catatan", "catatan", "error"]
    assert lines[1][:3] == ["nope", "pertama", "kedua"]


def test_a_streamed_upload_over_the_limit_is_refused_like_a_declared_one(
    make_app: Callable[..., Flask], config: dict[str, Any], make_user: Callable[..., Any]
) -> None:
    from tests.modules.conftest import login

    app = make_app(module_env={**config["module_env"], "import_max_bytes": "1000"})
    client = app.test_client()
    _, _, email = make_user(role="admin")
    token = login(client, email).get_json()["access_token"]
    body = b"email\n" + b"someone@example.test\n" * 5000  # past the multipart allowance too

    def chunks() -> Any:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        yield body
        yield b"\r\n--b--\r\n"

    response = client.post(
        "/api/v1/users/imports",
        input_stream=io.BytesIO(b"".join(chunks())),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "multipart/form-data; boundary=b",
            "Transfer-Encoding": "chunked",
        },
        # As gunicorn says of a chunked body: no Content-Length, read to the end.
        environ_base={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"
    assert response.get_json()["type"] == "urn:lapak:problem:payload-too-large"
