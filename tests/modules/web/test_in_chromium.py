"""The web client in a real Chromium (Debian's, driven by Playwright) against Lapak served over
HTTP: the login form by mouse and by keyboard, the layout and the menu under the strict CSP,
htmx and uPlot from the vendored files, a login elsewhere, and CSRF refused to a script."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from modules.auth.services import SESSION_COOKIE
from tests.chromium import watch
from tests.modules.conftest import PASSWORD
from tests.modules.web.conftest import (
    Served,
    add_user,
    log_in_through_form,
    note_titles,
    submit_login,
)


@pytest.mark.parametrize("where", ["served", "served_embedded"])
def test_log_in_through_the_form_and_see_the_layout_and_menu(
    request: pytest.FixtureRequest, where: str, page: Page
) -> None:
    served: Served = request.getfixturevalue(where)
    email = add_user(served.app, "staff")
    errors, hosts = watch(page)

    log_in_through_form(page, served.url, email)

    assert page.url == f"{served.url}/web/desk/"  # home: the role's first screen
    assert page.title() == "Notes · Lapak"
    header = page.locator("header")
    expect(header).to_contain_text(email)
    expect(header).to_contain_text("staff")
    menu = page.get_by_role("navigation", name="Main menu")
    desk = {"Notes", "Audit desk", "Chart"}  # the real modules' screens add their own entries
    links = menu.get_by_role("link").all_inner_texts()
    assert [text for text in links if text in desk] == ["Notes", "Chart"]
    expect(menu.get_by_role("link", name="Notes")).to_have_attribute("aria-current", "page")
    # Our stylesheet applies (from our origin, under the CSP), and htmx runs.
    assert "system-ui" in page.evaluate("getComputedStyle(document.body).fontFamily")
    assert page.evaluate("typeof htmx.version") == "string"
    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")
    assert "lapak_session" not in page.evaluate("document.cookie")  # HttpOnly

    menu.get_by_role("link", name="Chart").click()
    page.locator("#chart[data-drawn=yes] canvas").wait_for()

    assert errors == [], "a CSP violation or a script error"
    assert set(hosts) == {"127.0.0.1"}


def focused(page: Page) -> str:
    """What has the focus (its id, else its text), after checking that it shows."""
    name = page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", f"no visible focus on {name!r}"
    return name


def test_the_keyboard_reaches_the_login_fields_and_logs_in(served: Served, page: Page) -> None:
    email = add_user(served.app, "admin")
    errors, _ = watch(page)
    page.goto(f"{served.url}/web/login")

    assert page.evaluate("document.activeElement.id") == "email"  # autofocus
    backwards = []
    for _ in range(2):
        page.keyboard.press("Shift+Tab")
        backwards.append(focused(page))
    forwards = []
    for _ in range(4):
        page.keyboard.press("Tab")
        forwards.append(focused(page))

    assert backwards == ["Lapak", "Skip to content"]
    assert forwards == ["Lapak", "email", "password", "Log in"]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{served.url}/web/desk/"
    assert errors == []


def test_a_login_in_a_second_browser_sends_the_first_to_the_login_page(
    served: Served, browser: Browser, page: Page
) -> None:
    email = add_user(served.app, "staff")
    log_in_through_form(page, served.url, email)
    elsewhere = browser.new_context().new_page()
    log_in_through_form(elsewhere, served.url, email)

    page.get_by_role("link", name="Chart").click()

    page.wait_for_url(f"{served.url}/web/login?next=/web/desk/chart")
    expect(page.locator(".notices")).to_contain_text("You logged in elsewhere")
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    submit_login(page, email)  # and on, where it was going
    assert page.url == f"{served.url}/web/desk/chart"


def test_a_script_without_the_csrf_token_is_refused_and_htmx_sends_it(
    served: Served, page: Page
) -> None:
    email = add_user(served.app, "staff")
    log_in_through_form(page, served.url, email)

    refused = page.evaluate(
        """() => fetch('/web/desk/', {method: 'POST', body: new URLSearchParams({title: 'x'})})
                 .then(r => r.status)"""
    )
    assert refused == 403
    assert note_titles(served.app) == []

    page.get_by_role("button", name="Add with htmx").click()
    expect(page.locator("#notes li")).to_have_text(["from htmx"])
    assert note_titles(served.app) == ["from htmx"]

    page.get_by_label("Title").fill("by the form")
    page.get_by_role("button", name="Add the note").click()
    expect(page.locator(".notices")).to_contain_text("Note 'by the form' added.")
    assert note_titles(served.app) == ["from htmx", "by the form"]


def test_logging_out_ends_the_session(served: Served, page: Page) -> None:
    email = add_user(served.app, "staff")
    log_in_through_form(page, served.url, email)

    page.get_by_role("button", name="Log out").click()

    page.wait_for_url(f"{served.url}/web/login")
    expect(page.locator(".notices")).to_contain_text("You have logged out.")
    page.goto(f"{served.url}/web/desk/")
    assert page.url == f"{served.url}/web/login?next=/web/desk/"


def test_a_refused_htmx_button_says_so_in_the_notices(served: Served, page: Page) -> None:
    """A page from before the last login: its htmx button's CSRF token is refused, visibly."""
    email = add_user(served.app, "staff")
    log_in_through_form(page, served.url, email)
    errors, _ = watch(page)
    other_tab = page.context.new_page()  # the same browser logs out and in again
    other_tab.goto(f"{served.url}/web/desk/")
    other_tab.get_by_role("button", name="Log out").click()
    other_tab.wait_for_url(f"{served.url}/web/login")
    submit_login(other_tab, email)

    page.get_by_role("button", name="Add with htmx").click()

    notice = page.locator("#notices [role=alert]")
    expect(notice).to_contain_text("This change was refused")
    expect(notice).to_have_attribute("data-problem", "csrf-invalid")
    expect(page.locator("h1")).to_have_text("Notes")  # the page stays, nothing swapped into it
    assert note_titles(served.app) == []
    # The browser reports the 403 itself; no script failed.
    assert [e for e in errors if "Failed to load resource" not in e] == []
