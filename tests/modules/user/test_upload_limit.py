"""The body limit (``LAPAK_MAX_JSON_BYTES``) bounds JSON bodies, not CSV imports."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from tests.modules.conftest import Caller
from tests.modules.user.test_imports import HEADER, csv_bytes, numbered_rows, upload


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
