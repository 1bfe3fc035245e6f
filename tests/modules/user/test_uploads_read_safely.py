"""CSV uploads through the request reader of ``app/reading.py``: its body limit
(``LAPAK_MAX_JSON_BYTES``) bounds JSON bodies, not imports; its text rule holds for form fields
and file names."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from tests.modules.conftest import Caller
from tests.modules.user.test_imports import (
    HEADER,
    csv_bytes,
    import_job_count,
    numbered_rows,
    upload,
)


def test_a_csv_import_may_be_larger_than_the_json_body_limit(
    make_app: Callable[..., Flask], admin: Caller
) -> None:
    client = make_app(max_json_bytes=1000).test_client()
    content = csv_bytes([HEADER, *numbered_rows(100)])
    assert len(content) > 4000

    assert upload(client, admin, content).status_code == 202
    too_big = client.post(
        "/api/v1/users",
        json={"email": "big@example.test", "name": "n" * 2000},
        headers=admin.headers,
    )
    assert too_big.status_code == 413
    assert too_big.get_json()["type"] == "urn:lapak:problem:payload-too-large"


def test_a_control_character_in_a_form_field_or_file_name_is_a_422_naming_it(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    content = csv_bytes([HEADER, *numbered_rows(2)])

    in_name = upload(client, admin, content, filename="users\x00.csv")
    in_field = upload(client, admin, content, mode="create\x00")

    for response, field in ((in_name, "file"), (in_field, "mode")):
        assert response.status_code == 422, response.get_json()
        assert list(response.get_json()["errors"]) == [field]
    assert import_job_count(app) == 0
