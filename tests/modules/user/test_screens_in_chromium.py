"""The user screens in a real Chromium (Debian's, driven by Playwright) against Lapak served over
HTTP: an admin imports a file and watches the progress bar reach 100 % with the REST API's
figures (PostgreSQL, the job run by RQ in this process; and the embedded default, where it runs
in the server's threads), sees the failed rows and downloads them as the API gives them; and
creates a user, then deactivates them from the list by keyboard. No script error, no CSP
violation, nothing fetched from another host.

Screenshots land in /tmp (``lapak-user-*.png``) to look at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from tests.chromium import serve, watch
from tests.conftest import run_jobs
from tests.modules.user.test_imports import (
    HEADER,
    IMPORTS,
    SAMPLE_CSV,
    all_errors,
    csv_bytes,
    numbered_rows,
)
from tests.modules.web.conftest import Served, add_user, log_in_through_form

from .test_screens import API_USERS, FIGURES, api_admin, api_job, api_pages, failed_rows_of

NARROW = {"width": 390, "height": 844}
REFUSED_FORM = (
    "Failed to load resource: the server responded with a status of 422 (UNPROCESSABLE ENTITY)"
)
JOB_PAGE = re.compile(r".*/web/user/imports/([0-9a-f-]{36})$")


@pytest.fixture
def served_in_chunks(make_app: Callable[..., Flask], config: dict[str, Any]) -> Iterator[Served]:
    """The harness's app (PostgreSQL and Redis) committing an import every 25 rows, served."""
    app = make_app(module_env={**config["module_env"], "import_chunk_rows": "25"})
    with serve(app) as url:
        yield Served(url, app)


def open_imports(page: Page, served: Served) -> None:
    log_in_through_form(page, served.url, add_user(served.app, "admin"))
    page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Imports").click()
    expect(page.get_by_role("heading", name="Import users")).to_be_visible()


def start(page: Page) -> str:
    """Press the upload form's button; the id of the job whose page it leads to."""
    page.get_by_role("button", name="Start the import").click()
    page.wait_for_url(JOB_PAGE)
    found = JOB_PAGE.match(page.url)
    assert found
    return found.group(1)


def expect_the_api_s_figures(page: Page, job: dict) -> None:
    bar = page.get_by_label("Rows done")
    expect(bar).to_have_attribute("max", str(job["total_rows"]))
    expect(bar).to_have_attribute("value", str(job["processed_rows"]))
    for element_id, key in FIGURES.items():
        expect(page.locator(f"#{element_id}")).to_have_text(str(job[key]))


def test_an_admin_imports_the_sample_file_and_the_bar_reaches_100_percent(
    served_in_chunks: Served, page: Page
) -> None:
    served = served_in_chunks
    caller = api_admin(served.app)
    errors, hosts = watch(page)
    open_imports(page, served)
    page.screenshot(path="/tmp/lapak-user-imports.png", full_page=True)

    page.get_by_label("CSV file").set_input_files(SAMPLE_CSV)
    job_id = start(page)

    expect(page.locator("#job-status")).to_have_text("Waiting for a worker")
    expect(page.get_by_role("button", name="Stop the import")).to_be_visible()
    run_jobs(served.app)  # the page, asking every second, follows the chunks to the end

    expect(page.locator("#job-status")).to_have_text("Finished")
    job = api_job(served.app, caller, job_id)
    assert (job["total_rows"], job["processed_rows"], job["created"]) == (200, 200, 200)
    expect_the_api_s_figures(page, job)
    expect(page.locator("#import-outcome")).to_have_text(
        "Finished: 200 of 200 rows, 200 created, 0 updated, 0 skipped, 0 failed."
    )
    expect(page.locator("#import-outcome")).to_have_attribute("role", "status")
    expect(page.get_by_role("button", name="Stop the import")).to_have_count(0)
    expect(page.get_by_role("link", name="Import another file")).to_be_visible()
    page.screenshot(path="/tmp/lapak-user-import-done.png", full_page=True)
    page.set_viewport_size(NARROW)
    page.screenshot(path="/tmp/lapak-user-import-done-narrow.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    assert errors == [], "a CSP violation or a script error"
    assert set(hosts) == {"127.0.0.1"}


def test_a_large_file_s_bad_rows_show_in_the_table_and_in_the_csv_download(
    served_embedded: Served, page: Page
) -> None:
    """On the embedded default the import runs in the server's own threads. The file is larger
    than the app's 1 MiB body limit: the page sends its CSRF token in a header, so the upload
    is read under the import's limit."""
    served = served_embedded
    caller = api_admin(served.app)
    rows = [HEADER, *numbered_rows(20_000)]
    rows[7] = ["not an email", "Nobody", "customer", ""]
    rows[12_000] = ["bad.role@example.test", "Bad Role", "king", ""]
    rows[19_999] = ["user.3@example.test", "Twice", "staff", ""]
    content = csv_bytes(rows)
    assert len(content) > 1024 * 1024
    errors, hosts = watch(page)
    open_imports(page, served)

    page.get_by_label("CSV file").set_input_files(
        {"name": "pelanggan.csv", "mimeType": "text/csv", "buffer": content}
    )
    page.get_by_label("Upsert").check()
    job_id = start(page)

    expect(page.locator("#job-status")).to_have_text("Finished, with failed rows", timeout=60_000)
    job = api_job(served.app, caller, job_id)
    assert (job["mode"], job["total_rows"], job["failed"]) == ("upsert", 20_000, 3)
    expect_the_api_s_figures(page, job)
    failed = page.locator("#failed-rows tbody tr")
    expect(failed).to_have_count(3)
    shown = [row.locator("th, td").all_inner_texts() for row in failed.all()]
    assert shown == failed_rows_of(all_errors(served.app.test_client(), caller, job_id))
    page.screenshot(path="/tmp/lapak-user-import-failed-rows.png", full_page=True)

    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download the failed rows (CSV)").click()
    download = downloading.value
    expected = served.app.test_client().get(
        f"{IMPORTS}/{job_id}/errors?format=csv", headers=caller.headers, buffered=True
    )
    assert download.suggested_filename == "pelanggan-errors.csv"
    with open(download.path(), "rb") as saved:
        assert saved.read() == expected.data
    assert b"not an email" in expected.data
    assert errors == []
    assert set(hosts) == {"127.0.0.1"}


def test_an_admin_creates_a_user_and_deactivates_them_from_the_list_by_keyboard(
    served: Served, page: Page
) -> None:
    caller = api_admin(served.app)
    errors, hosts = watch(page)
    log_in_through_form(page, served.url, add_user(served.app, "admin"))
    page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Users").click()
    page.get_by_role("link", name="New user").click()

    page.get_by_label("Email", exact=True).fill("sari@example.co.id")
    page.get_by_label("Name", exact=True).fill("Sari Wulandari")
    page.get_by_label("Role", exact=True).select_option("staff")
    page.get_by_label("Phone").fill("0812-3456-789")
    page.get_by_label("First password").fill("short")
    page.get_by_role("button", name="Create the user").click()
    expect(page.locator("#password-error")).to_be_visible()  # the policy's message, on the field
    expect(page.get_by_label("First password")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Email", exact=True)).to_have_value("sari@example.co.id")
    page.screenshot(path="/tmp/lapak-user-new-refused.png", full_page=True)
    page.get_by_label("First password").fill("kopi tubruk pagi hari")
    page.get_by_role("button", name="Create the user").click()

    expect(page.locator(".notices")).to_contain_text(
        "sari@example.co.id was created as staff; they can log in now."
    )
    row = page.get_by_role("row").filter(has_text="sari@example.co.id")
    expect(row).to_contain_text("+628123456789")
    expect(row).to_contain_text("Active")
    page.screenshot(path="/tmp/lapak-user-users.png", full_page=True)

    deactivate = page.get_by_role("button", name="Deactivate sari@example.co.id")
    deactivate.focus()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    with page.expect_navigation():
        page.keyboard.press("Enter")

    expect(page.locator(".notices")).to_contain_text(
        "sari@example.co.id was deactivated: they can no longer log in."
    )
    expect(row).to_contain_text("Deactivated")
    expect(page.get_by_role("button", name="Activate sari@example.co.id")).to_be_visible()
    (shown,) = api_pages(served.app, caller, API_USERS, email_prefix="sari@")
    assert shown["active"] is False
    page.set_viewport_size(NARROW)
    page.screenshot(path="/tmp/lapak-user-users-narrow.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    # Chromium reports the refused form's 422 answer as a console error: nothing else.
    assert errors == [REFUSED_FORM]
    assert set(hosts) == {"127.0.0.1"}
