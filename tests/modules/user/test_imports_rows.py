"""What an import does with each row: files as people save them, every row error, upsert, dry run.

Each test builds its own nasty file and checks the exact counts, messages and stored users.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

import bcrypt
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from tests.modules.conftest import PASSWORD, Caller, login
from tests.modules.user.test_imports import (
    BCRYPT_2Y_HASH,
    BCRYPT_HASH,
    HEADER,
    PASSWORD_HASH_MESSAGE,
    ROLE_MESSAGE,
    AppWith,
    all_errors,
    apps_with_settings,
    assert_counts_add_up,
    csv_bytes,
    error_triples,
    numbered_rows,
    run_import,
    stored_users,
    upload,
    user_count,
)


@pytest.fixture
def app_with(make_app: Callable[..., Flask], config: dict[str, Any]) -> AppWith:
    return apps_with_settings(make_app, config)


MakeUser = Callable[..., Any]


def argon2_hash(password: str = PASSWORD) -> str:
    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1).hash(password)


# --- encodings -------------------------------------------------------------------------------

TEXT = "email,name\nmuller@example.test,Jürgen Müller\nnunez@example.test,Ñandú Núñez\n"


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        pytest.param(TEXT.encode("utf-8"), "utf-8", id="utf-8"),
        pytest.param(codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig", id="utf-8-bom"),
        pytest.param(TEXT.encode("utf-16"), "utf-16", id="utf-16-le-bom"),
        pytest.param(codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16", id="utf-16-be-bom"),
    ],
)
def test_unicode_encodings_are_detected(
    app: Flask, client: FlaskClient, admin: Caller, content: bytes, encoding: str
) -> None:
    job = run_import(app, client, admin, content)
    assert job["encoding"] == encoding
    assert job["unknown_columns"] == []  # the BOM is not part of the first header
    assert (job["created"], job["failed"]) == (2, 0), job
    users = stored_users(app)
    assert users["muller@example.test"]["name"] == "Jürgen Müller"
    assert users["nunez@example.test"]["name"] == "Ñandú Núñez"


def test_windows_1252_is_detected(app: Flask, client: FlaskClient, admin: Caller) -> None:
    text = "email,name,notes\nobrien@example.test,Seán O\u2019Brien,harga €5\n"
    job = run_import(app, client, admin, text.encode("cp1252"))
    assert job["encoding"] == "cp1252"
    assert job["created"] == 1, job
    assert stored_users(app)["obrien@example.test"]["name"] == "Seán O\u2019Brien"


def test_latin_1_is_detected(app: Flask, client: FlaskClient, admin: Caller) -> None:
    job = run_import(app, client, admin, TEXT.encode("latin-1"))
    assert job["encoding"] in ("cp1252", "latin-1")
    assert job["created"] == 2, job
    assert stored_users(app)["nunez@example.test"]["name"] == "Ñandú Núñez"


def test_ascii_is_reported_as_utf_8(app: Flask, client: FlaskClient, admin: Caller) -> None:
    job = run_import(app, client, admin, b"email\nplain@example.test\n")
    assert job["encoding"] == "utf-8"
    assert job["created"] == 1


def test_windows_1252_far_into_the_file_is_detected_before_the_import(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    """A sample of the head says ASCII; the encoding must be decided on the whole file."""
    rows = "".join(f"ascii.{i}@example.test,Nama Biasa Saja {i}\n" for i in range(40_000))
    content = b"email,name\n" + rows.encode() + "late@example.test,Müller\n".encode("cp1252")
    assert len(content) > 1_500_000
    job = run_import(app, client, admin, content)
    assert job["encoding"] == "cp1252"
    assert job["status"] == "succeeded", job
    assert job["created"] == 40_001
    assert stored_users(app)["late@example.test"]["name"] == "Müller"


def test_a_chosen_encoding_wins_over_detection(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    job = run_import(app, client, admin, TEXT.encode("utf-8"), encoding="cp1252")
    assert job["encoding"] == "cp1252"
    assert job["created"] == 2, job
    assert stored_users(app)["muller@example.test"]["name"] == "Jürgen Müller".encode().decode(
        "cp1252"
    )


def test_a_chosen_encoding_that_does_not_fit_is_refused_at_upload(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    response = upload(client, admin, TEXT.encode("cp1252"), encoding="utf-8")
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["type"] == "urn:lapak:problem:invalid-import-file"
    assert "utf-8" in body["detail"]
    assert user_count(app) == 1


def test_latin_1_can_be_chosen(app: Flask, client: FlaskClient, admin: Caller) -> None:
    job = run_import(app, client, admin, TEXT.encode("latin-1"), encoding="latin-1")
    assert job["encoding"] == "latin-1"
    assert stored_users(app)["muller@example.test"]["name"] == "Jürgen Müller"


# --- delimiters, quoting, line ends, blank lines ---------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiters_are_sniffed_even_when_cells_contain_the_others(
    app: Flask, client: FlaskClient, admin: Caller, delimiter: str
) -> None:
    rows = [
        HEADER,
        ["budi@example.test", "Budi, S.Kom; M.T.", "staff", "0812-3456-7890"],
        ["ani@example.test", "Ani\tTab", "", ""],
        ["cici@example.test", 'Cici "Ci" Lestari', "seller", ""],
    ]
    job = run_import(app, client, admin, csv_bytes(rows, delimiter=delimiter))
    assert job["delimiter"] == delimiter
    assert (job["created"], job["failed"]) == (3, 0), job
    users = stored_users(app)
    assert users["budi@example.test"]["name"] == "Budi, S.Kom; M.T."
    assert users["budi@example.test"]["phone"] == "+6281234567890"
    assert users["budi@example.test"]["role"] == "staff"
    assert users["cici@example.test"]["name"] == 'Cici "Ci" Lestari'


def test_a_single_column_file_imports(app: Flask, client: FlaskClient, admin: Caller) -> None:
    job = run_import(app, client, admin, b"email\r\nsatu@example.test\r\ndua@example.test\r\n")
    assert (job["created"], job["total_rows"]) == (2, 2), job
    users = stored_users(app)
    assert users["satu@example.test"]["role"] == "customer"
    assert users["satu@example.test"]["name"] == ""


def test_crlf_trailing_spaces_and_spaced_headers(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    content = (
        b" EMAIL , Name ,Role , Phone \r\n"
        b"  Siti.Aminah@Example.COM  ,  Siti Aminah  , Staff ,  0812 3456 789  \r\n"
        b"dewi@example.test,Dewi,customer,+62 812-3456-7891\r\n"
        b"eko@example.test,Eko,SELLER,0062 812 3456 7892\r\n"
    )
    job = run_import(app, client, admin, content)
    assert job["unknown_columns"] == []
    assert (job["created"], job["failed"]) == (3, 0), all_errors(client, admin, job["id"])
    users = stored_users(app)
    siti = users["siti.aminah@example.com"]
    assert siti["email"] == "Siti.Aminah@example.com"  # trimmed, domain lower-cased
    assert siti["name"] == "Siti Aminah"
    assert siti["role"] == "staff"
    assert siti["phone"] == "+628123456789"
    assert users["dewi@example.test"]["phone"] == "+6281234567891"
    assert users["eko@example.test"]["role"] == "seller"
    assert users["eko@example.test"]["phone"] == "+6281234567892"


def test_blank_lines_count_as_rows_but_not_in_the_totals(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    content = (
        b"email,name\n"  # row 1
        b"a@example.test,A\n"  # row 2
        b"\n"  # row 3
        b"not-an-email,B\n"  # row 4
        b"\n"  # row 5
        b"\n"  # row 6
        b"c@example.test,C\n"  # row 7
        b"A@EXAMPLE.TEST,A again\n"  # row 8
        b"\n\n"  # rows 9, 10
    )
    job = run_import(app, client, admin, content)
    assert job["total_rows"] == 4
    assert (job["created"], job["failed"]) == (2, 2)
    assert_counts_add_up(job)
    assert error_triples(all_errors(client, admin, job["id"])) == {
        (4, "email", "is not a valid email address"),
        (8, "email", "duplicates row 2"),
    }


def test_rows_of_empty_cells_are_blank_lines(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    """Spreadsheets save emptied rows as ``,,,``: they are blank, not rows without an email."""
    content = b"email,name,role\n,,\na@example.test,A,\n , ,\n,,\n"
    job = run_import(app, client, admin, content)
    assert job["total_rows"] == 1
    assert (job["created"], job["failed"]) == (1, 0), job


def test_quoted_fields_with_newlines_are_one_spreadsheet_row(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    rows = [
        ["email", "name", "alamat"],
        ["a@example.test", "Ani", "Jl. Merdeka 1\nRT 02/RW 03\r\nJakarta"],  # row 2
        ["nope", "Bad", "Jl. Sudirman, Blok A"],  # row 3 (line 6 of the file)
        ["b@example.test", "Budi, S.E.", '"Rumah" di\nujung'],  # row 4
        ["a@example.test", "Ani again", ""],  # row 5
    ]
    job = run_import(app, client, admin, csv_bytes(rows, newline="\r\n"))
    assert job["total_rows"] == 4
    assert job["unknown_columns"] == ["alamat"]
    assert (job["created"], job["failed"]) == (2, 2)
    assert error_triples(all_errors(client, admin, job["id"])) == {
        (3, "email", "is not a valid email address"),
        (5, "email", "duplicates row 2"),
    }
    assert stored_users(app)["b@example.test"]["name"] == "Budi, S.E."


def test_a_row_with_more_cells_than_the_header_is_that_rows_error(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    content = b"email,name\nok@example.test,Ok\nlong@example.test,Long,extra,more\n"
    job = run_import(app, client, admin, content)
    assert (job["created"], job["failed"], job["status"]) == (1, 1, "succeeded_with_errors")
    [error] = job["first_errors"]
    assert error["row"] == 3
    assert "cells" in error["message"]


def test_short_rows_have_blank_cells(app: Flask, client: FlaskClient, admin: Caller) -> None:
    content = b"email,name,role,phone\nshort@example.test\nshorter@example.test,Nama\n"
    job = run_import(app, client, admin, content)
    assert (job["created"], job["failed"]) == (2, 0), all_errors(client, admin, job["id"])
    assert stored_users(app)["shorter@example.test"]["name"] == "Nama"


# --- columns ---------------------------------------------------------------------------------


def test_headers_match_whatever_their_case_spaces_or_underscores(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    hashed = argon2_hash()
    rows = [
        [" EMAIL ", "NAME", "Password Hash", "phone", "ROLE", "E Mail", "Catatan"],
        ["hash@example.test", "Hash", hashed, "08123456789", "Admin", "x@example.test", "x"],
    ]
    job = run_import(app, client, admin, csv_bytes(rows))
    assert job["unknown_columns"] == ["E Mail", "Catatan"]
    assert (job["created"], job["failed"]) == (1, 0), all_errors(client, admin, job["id"])
    user = stored_users(app)["hash@example.test"]
    assert user["password_hash"] == hashed
    assert user["role"] == "admin"
    assert user["phone"] == "+628123456789"
    assert "x@example.test" not in stored_users(app)


def test_password_hash_column_with_underscore(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    rows = [["email", "password_hash"], ["bc@example.test", BCRYPT_HASH],
            ["laravel@example.test", BCRYPT_2Y_HASH]]  # fmt: skip
    job = run_import(app, client, admin, csv_bytes(rows))
    assert (job["created"], job["failed"]) == (2, 0), all_errors(client, admin, job["id"])
    assert stored_users(app)["bc@example.test"]["password_hash"] == BCRYPT_HASH
    assert stored_users(app)["laravel@example.test"]["password_hash"] == BCRYPT_2Y_HASH


def test_an_imported_bcrypt_hash_logs_in(app: Flask, client: FlaskClient, admin: Caller) -> None:
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    rows = [["email", "password_hash"], ["laravel.user@example.test", legacy]]
    job = run_import(app, client, admin, csv_bytes(rows))
    assert job["created"] == 1, job
    assert login(client, "laravel.user@example.test", PASSWORD + "x").status_code == 401
    assert login(client, "laravel.user@example.test", PASSWORD).status_code == 200


def test_an_imported_argon2_hash_logs_in(app: Flask, client: FlaskClient, admin: Caller) -> None:
    rows = [["email", "password_hash"], ["migrated@example.test", argon2_hash(PASSWORD)]]
    job = run_import(app, client, admin, csv_bytes(rows))
    assert job["created"] == 1
    assert login(client, "migrated@example.test", PASSWORD).status_code == 200
    assert login(client, "migrated@example.test", PASSWORD + "x").status_code == 401


def test_a_file_without_an_email_column_fails_with_one_clear_message(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    content = b"E Mail,Nama,Role\nx@example.test,X,customer\ny@example.test,Y,staff\n"
    job = run_import(app, client, admin, content)
    assert job["status"] == "failed"
    assert job["error"] in (
        "the file has no email column (found: E Mail, Nama, Role)",
        "the file has no email column (found: E Mail,Nama,Role)",
    ), job["error"]
    assert job["created"] == 0
    assert job["finished_at"] is not None
    assert user_count(app) == 1


# --- every row error -------------------------------------------------------------------------


def test_each_kind_of_bad_row_gets_its_message_and_counts_once(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("existing@example.test", name="Already Here")
    hashed = argon2_hash()
    header = ["email", "name", "role", "phone", "password_hash"]
    rows = [
        header,
        ["ok1@example.test", "Ok One", "customer", "08123456789", ""],  # 2 created
        ["", "No Email", "customer", "", ""],  # 3
        ["not-an-email", "Bad", "customer", "", ""],  # 4
        ["OK1@Example.TEST", "Dup", "customer", "", ""],  # 5
        ["ok5@example.test", "Bad Role", "manager", "", ""],  # 6
        ["ok6@example.test", "Bad Phone", "customer", "12ab", ""],  # 7
        ["ok7@example.test", "Plain", "customer", "", "hunter2hunter2"],  # 8
        ["ok8@example.test", "x" * 201, "customer", "", ""],  # 9
        ["bad@@x", "", "superuser", "abc", "P@ssw0rd!"],  # 10: four errors, one failed row
        ["EXISTING@Example.test", "Exists", "", "", ""],  # 11
        ["ok11@example.test", "", "ADMIN", "+62 812-3456-7890", hashed],  # 12 created
        ["ok12@example.test", "é" * 200, "", "", ""],  # 13 created: 200 characters is fine
    ]
    job = run_import(app, client, admin, csv_bytes(rows))
    assert job["total_rows"] == 12
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (3, 0, 0, 9)
    assert_counts_add_up(job)
    assert job["status"] == "succeeded_with_errors"

    errors = all_errors(client, admin, job["id"])
    assert len(errors) == 12
    assert [e["row"] for e in errors] == sorted(e["row"] for e in errors)
    triples = error_triples(errors)
    phone_messages = {m for row, column, m in triples if column == "phone"}
    assert all("is not a phone number" in m for m in phone_messages)
    assert {t for t in triples if t[1] != "phone"} == {
        (3, "email", "email is required"),
        (4, "email", "is not a valid email address"),
        (5, "email", "duplicates row 2"),
        (6, "role", ROLE_MESSAGE),
        (8, "password_hash", PASSWORD_HASH_MESSAGE),
        (9, "name", "is longer than 200 characters"),
        (10, "email", "is not a valid email address"),
        (10, "role", ROLE_MESSAGE),
        (10, "password_hash", PASSWORD_HASH_MESSAGE),
        (11, "email", "a user with this email already exists"),
    }
    assert {(row, column) for row, column, _ in triples if column == "phone"} == {
        (7, "phone"),
        (10, "phone"),
    }
    by_row_column = {(e["row"], e["column"]): e for e in errors}
    assert by_row_column[(3, "email")]["value"] in ("", None)
    assert by_row_column[(4, "email")]["value"] == "not-an-email"
    assert by_row_column[(5, "email")]["value"] == "OK1@Example.TEST"
    assert by_row_column[(6, "role")]["value"] == "manager"
    assert by_row_column[(7, "phone")]["value"] == "12ab"
    codes = {key: e["code"] for key, e in by_row_column.items()}
    assert (codes[(3, "email")], codes[(4, "email")], codes[(5, "email")]) == (
        "required", "invalid", "duplicate",
    )  # fmt: skip
    assert (codes[(6, "role")], codes[(7, "phone")], codes[(11, "email")]) == (
        "invalid", "invalid", "email-taken",
    )  # fmt: skip

    assert [e["row"] for e in job["first_errors"]] == [e["row"] for e in errors][:10]
    assert all(set(e) == {"row", "column", "value", "message", "code"} for e in job["first_errors"])

    users = stored_users(app)
    assert set(users) == {
        admin.email.lower(), "existing@example.test", "ok1@example.test",
        "ok11@example.test", "ok12@example.test",
    }  # fmt: skip
    assert users["ok1@example.test"]["name"] == "Ok One"  # the first of the duplicates
    assert users["existing@example.test"]["name"] == "Already Here"
    assert users["ok11@example.test"] | {"updated_at": None} == {
        "email": "ok11@example.test", "name": "", "role": "admin", "phone": "+6281234567890",
        "password_hash": hashed, "active": True, "updated_at": None,
    }  # fmt: skip
    assert users["ok12@example.test"]["name"] == "é" * 200


def test_error_values_are_the_cells_as_written(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("existing@example.test")
    content = b"email\n EXISTING@Example.TEST \nDup@Example.TEST\ndup@example.test\n"
    job = run_import(app, client, admin, content)
    assert job["failed"] == 2
    values = {(e["row"], e["message"]): e["value"] for e in all_errors(client, admin, job["id"])}
    assert values[(4, "duplicates row 3")] == "dup@example.test"
    assert values[(2, "a user with this email already exists")].strip() == "EXISTING@Example.TEST"


def test_duplicates_are_found_across_chunks(app_with: AppWith, admin: Caller) -> None:
    chunked, chunked_client = app_with(import_chunk_rows=2)
    rows = [HEADER, *numbered_rows(5), ["USER.1@example.TEST", "Again", "", ""],
            *numbered_rows(2, start=5), ["user.6@example.test", "", "", ""]]  # fmt: skip
    job = run_import(chunked, chunked_client, admin, csv_bytes(rows))
    assert (job["created"], job["failed"]) == (7, 2), job
    assert_counts_add_up(job)
    assert error_triples(all_errors(chunked_client, admin, job["id"])) == {
        (7, "email", "duplicates row 3"),
        (10, "email", "duplicates row 9"),
    }


def test_blank_role_takes_the_default_role_and_roles_ignore_case(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    rows = [HEADER, ["a@example.test", "A", "", ""], ["b@example.test", "B", "Seller", ""],
            ["c@example.test", "C", " customer ", ""]]  # fmt: skip
    job = run_import(app, client, admin, csv_bytes(rows), default_role="staff")
    assert job["created"] == 3, job
    users = stored_users(app)
    assert [users[f"{x}@example.test"]["role"] for x in "abc"] == ["staff", "seller", "customer"]


def test_default_role_is_customer(app: Flask, client: FlaskClient, admin: Caller) -> None:
    job = run_import(app, client, admin, b"email,role\nd@example.test,\n")
    assert job["default_role"] == "customer"
    assert stored_users(app)["d@example.test"]["role"] == "customer"


# --- upsert ----------------------------------------------------------------------------------


def test_upsert_updates_only_the_columns_in_the_file(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("satu@example.test", name="Satu Lama", role="customer")
    # Only email and name in the file: phone and role stay as they are.
    job = run_import(app, client, admin,
                     b"email,name\nSATU@example.test,Satu Baru\nbaru@example.test,Baru\n",
                     mode="upsert")  # fmt: skip
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (1, 1, 0, 0), job
    assert_counts_add_up(job)
    satu = stored_users(app)["satu@example.test"]
    assert (satu["name"], satu["role"], satu["phone"]) == ("Satu Baru", "customer", None)
    assert satu["email"] == "satu@example.test"
    assert stored_users(app)["baru@example.test"]["name"] == "Baru"


def test_upsert_ignores_blank_cells_and_never_changes_a_password(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("satu@example.test", name="Satu", role="customer")
    make_user("dua@example.test", name="Dua", role="staff")
    make_user("tiga@example.test", name="Tiga", role="customer")
    make_user("empat@example.test", name="Empat", role="customer")
    # Give dua a phone first, so "unchanged" is checked on normalised values.
    first = run_import(app, client, admin, b"email,phone\ndua@example.test,08123456789\n",
                       mode="upsert")  # fmt: skip
    assert first["updated"] == 1, first
    before = stored_users(app)

    header = ["email", "name", "role", "phone", "password_hash"]
    rows = [
        header,
        ["satu@example.test", "", "", "0811-1111-111", ""],  # 2 phone only -> updated
        [" Dua@Example.test ", " Dua ", "STAFF", "0812-3456-789", ""],  # 3 same values -> skipped
        ["tiga@example.test", "", "", "", argon2_hash("another password")],  # 4 -> skipped
        ["empat@example.test", "", "seller", "", ""],  # 5 role only -> updated
        ["lima@example.test", "Lima", "", "", ""],  # 6 -> created
        ["empat@example.test", "Empat Lagi", "", "", ""],  # 7 duplicate -> failed
        ["satu@example.test", "", "", "not a phone", ""],  # 8 duplicate and bad phone
        ["enam@example.test", "", "", "bad", ""],  # 9 bad phone -> failed
    ]
    job = run_import(app, client, admin, csv_bytes(rows), mode="upsert")
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (1, 2, 2, 3), job
    assert_counts_add_up(job)
    assert {(r, c) for r, c, _ in error_triples(all_errors(client, admin, job["id"]))} == {
        (7, "email"), (8, "email"), (8, "phone"), (9, "phone"),
    }  # fmt: skip

    after = stored_users(app)
    assert after["satu@example.test"]["phone"] == "+628111111111"
    assert after["satu@example.test"]["name"] == "Satu"
    assert after["satu@example.test"]["role"] == "customer"
    assert after["dua@example.test"] == before["dua@example.test"]  # untouched, even updated_at
    assert after["tiga@example.test"] == before["tiga@example.test"]
    assert after["empat@example.test"]["role"] == "seller"
    assert after["empat@example.test"]["name"] == "Empat"
    assert after["lima@example.test"]["role"] == "customer"
    assert "enam@example.test" not in after
    # The existing password still works; the imported hash was not applied.
    assert login(client, "tiga@example.test", PASSWORD).status_code == 200


def test_create_mode_refuses_existing_emails_whatever_their_case(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("ada@example.test", name="Ada")
    job = run_import(app, client, admin,
                     b"email,name\nADA@EXAMPLE.TEST,Ganti\nbaru@example.test,Baru\n")  # fmt: skip
    assert (job["created"], job["updated"], job["failed"]) == (1, 0, 1)
    assert error_triples(job["first_errors"]) == {
        (2, "email", "a user with this email already exists")
    }
    assert stored_users(app)["ada@example.test"]["name"] == "Ada"


def test_an_import_of_existing_users_says_to_upload_again_with_upsert(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("ada@example.test")
    make_user("budi@example.test")
    job = run_import(app, client, admin, b"email\nada@example.test\nBUDI@example.test\n")
    assert (job["created"], job["failed"], job["existing"]) == (0, 2, 2), job
    assert job["hint"] == (
        "2 rows name existing users; upload again with mode=upsert to update them"
    )
    assert {e["code"] for e in job["first_errors"]} == {"email-taken"}
    upserted = run_import(app, client, admin, b"email\nada@example.test\n", mode="upsert")
    assert (upserted["existing"], upserted["hint"]) == (0, None)
    fresh = run_import(app, client, admin, b"email\nbaru@example.test\n")
    assert (fresh["existing"], fresh["hint"]) == (0, None)


def test_phones_without_plus_or_00_are_national_and_unreadable_ones_say_so(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    rows = [
        ["email", "phone"],
        ["a@example.test", "8123456789"],
        ["b@example.test", "0812 3456 789"],
        ["c@example.test", "+44 20 7946 0958"],
        ["d@example.test", "12ab"],
    ]
    job = run_import(app, client, admin, csv_bytes(rows))
    assert (job["created"], job["failed"]) == (3, 1), job
    users = stored_users(app)
    assert users["a@example.test"]["phone"] == users["b@example.test"]["phone"] == "+628123456789"
    assert users["c@example.test"]["phone"] == "+442079460958"
    (error,) = job["first_errors"]
    assert (error["row"], error["column"], error["code"]) == (5, "phone", "invalid")
    assert "with + or 00 and the country code" in error["message"]
    assert "national numbers of ID" in error["message"]


# --- dry run ---------------------------------------------------------------------------------


def test_dry_run_counts_what_would_happen_and_writes_no_user(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("keep@example.test", name="Keep")
    before = stored_users(app)
    rows = [HEADER, ["new1@example.test", "New 1", "", ""], ["new2@example.test", "", "", ""],
            ["KEEP@example.test", "Changed", "", ""], ["bad", "", "", ""],
            ["new1@example.test", "Dup", "", ""]]  # fmt: skip
    job = run_import(app, client, admin, csv_bytes(rows), dry_run="true")
    assert job["dry_run"] is True
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (2, 0, 0, 3), job
    assert_counts_add_up(job)
    assert error_triples(all_errors(client, admin, job["id"])) == {
        (4, "email", "a user with this email already exists"),
        (5, "email", "is not a valid email address"),
        (6, "email", "duplicates row 2"),
    }
    assert stored_users(app) == before


def test_dry_run_upsert_counts_updates_and_skips_and_writes_nothing(
    app: Flask, client: FlaskClient, admin: Caller, make_user: MakeUser
) -> None:
    make_user("ubah@example.test", name="Lama")
    make_user("sama@example.test", name="Sama")
    before = stored_users(app)
    content = b"email,name\nubah@example.test,Baru\nsama@example.test,Sama\nnew@example.test,N\n"
    job = run_import(app, client, admin, content, mode="upsert", dry_run="true")
    assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (1, 1, 1, 0), job
    assert job["status"] == "succeeded"
    assert stored_users(app) == before


# --- one bad row must not sink the whole file ------------------------------------------------


def test_a_nul_byte_deep_in_the_file_is_refused_at_upload(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    """Binary content anywhere (not only in the first block read) is refused before any work."""
    head = b"email,name\n" + b"".join(
        b"n.%05d@example.test,Nama Lengkap\n" % i for i in range(4000)
    )
    assert len(head) > 128 * 1024
    content = head + b"nul@example.test,Nama\x00Rusak\n"
    response = upload(client, admin, content)
    assert response.status_code == 422, response.get_json()
    assert "not a CSV text file" in response.get_json()["detail"]
    assert user_count(app) == 1


def test_an_overlong_hash_is_a_row_error_not_a_failed_job(
    app: Flask, client: FlaskClient, admin: Caller
) -> None:
    fake = "$argon2id$v=19$m=65536,t=3,p=4$" + "c2FsdA" * 10 + "$" + "A" * 300
    rows = [["email", "password_hash"], ["ok@example.test", ""], ["long@example.test", fake]]
    job = run_import(app, client, admin, csv_bytes(rows))
    assert job["status"] == "succeeded_with_errors", job
    assert (job["created"], job["failed"]) == (1, 1)
    assert error_triples(job["first_errors"]) == {(3, "password_hash", PASSWORD_HASH_MESSAGE)}
