"""The webhook screens of the web client (Developers), through the test client against real
PostgreSQL and Redis and a real receiver on 127.0.0.1 (and the embedded default where marked):
endpoints with their secret shown once, test pings, the delivery log and redelivery, the notice
of an endpoint Lapak disabled, who may see what, refusals that change nothing, CSRF, and the
same figures as the REST API."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app import clock
from app.db import Session
from modules.user.models import User
from modules.webhook.models import WebhookEndpoint
from tests.conftest import run_jobs
from tests.modules.auth.test_screens import (
    api_caller,
    browser_of,
    hidden_value,
    main_text,
    notices,
    post_form,
    problem_code,
    table_rows,
)
from tests.modules.web.conftest import hidden_token, web_login

from .conftest import (
    API,
    Receiver,
    answering,
    at,
    caught_up,
    emit_now,
    signed_by,
    verify_now,
)

HOME = "/web/webhook/"
NEW = "/web/webhook/endpoints/new"
CREATE = "/web/webhook/endpoints"
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{20,}")
RELOAD = re.compile(r'data-reload-url="/web/webhook/endpoints/([0-9a-f-]{36})"')
DELIVERY_LINK = re.compile(r'href="/web/webhook/deliveries/([0-9a-f-]{36})"')


def page_of(endpoint_id: str) -> str:
    return f"/web/webhook/endpoints/{endpoint_id}"


def add(client: FlaskClient, url: str, **fields: Any) -> TestResponse:
    return post_form(client, CREATE, NEW, url=url, **fields)


def added(response: TestResponse) -> tuple[str, str]:
    """The new endpoint's id and the secret its page shows."""
    assert response.status_code == 201, main_text(response.text)
    [secret] = set(SECRET.findall(response.text))
    return RELOAD.search(response.text).group(1), secret  # type: ignore[union-attr]


def act(client: FlaskClient, endpoint_id: str, action: str) -> TestResponse:
    """Press one of the endpoint page's buttons."""
    return post_form(client, f"{page_of(endpoint_id)}/{action}", page_of(endpoint_id))


def endpoints_of(app: Flask, email: str) -> list[WebhookEndpoint]:
    with app.app_context():
        Session.remove()
        owner = select(User.id).where(User.email == email).scalar_subquery()
        found = Session().scalars(select(WebhookEndpoint).where(WebhookEndpoint.owner_id == owner))
        return sorted(found, key=lambda e: e.id)


def shown(client: FlaskClient, path: str) -> TestResponse:
    """A page read after the jobs' writes reached the replica (pages read there)."""
    caught_up()
    response = client.get(path)
    assert response.status_code == 200, response.headers.get("Location")
    return response


def deliveries_on(client: FlaskClient, endpoint_id: str) -> list[list[str]]:
    return table_rows(shown(client, page_of(endpoint_id)).text)


def first_delivery(client: FlaskClient, endpoint_id: str) -> str:
    return DELIVERY_LINK.search(shown(client, page_of(endpoint_id)).text).group(1)  # type: ignore[union-attr]


def test_a_seller_adds_an_endpoint_and_sees_its_secret_once(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver()
    client, email = browser_of(app, "seller")
    form = client.get(NEW)
    assert 'value="order.confirmed"' in form.text
    assert 'value="refund.succeeded"' in form.text
    assert 'value="user.created"' not in form.text  # for admins only

    answer = add(client, receiver.url, description="ERP", event_types=["order.confirmed"])
    endpoint_id, secret = added(answer)
    assert answer.headers["Cache-Control"] == "no-store"
    assert f"Endpoint {receiver.url} added." in notices(answer.text)
    [stored] = endpoints_of(app, email)
    assert (str(stored.uuid), stored.url, stored.description, stored.event_types) == (
        endpoint_id,
        receiver.url,
        "ERP",
        ["order.confirmed"],
    )
    assert not SECRET.search(client.get(page_of(endpoint_id)).text)
    assert not SECRET.search(client.get(HOME).text)

    # The secret shown is the one deliveries are signed with.
    assert act(client, endpoint_id, "test").status_code == 303
    run_jobs(app)
    [received] = receiver.received
    assert verify_now(secret, received)["type"] == "ping"


def test_a_ping_is_logged_as_sent_and_redelivered_with_the_rest_apis_figures(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver(lambda n: (400, {}, b"not yet") if n == 1 else (200, {}, b"ok"))
    client, email = browser_of(app, "seller")
    endpoint_id, _ = added(add(client, receiver.url, description="Shop"))

    pinged = act(client, endpoint_id, "test")
    assert (pinged.status_code, pinged.headers["Location"]) == (303, page_of(endpoint_id))
    after = client.get(pinged.headers["Location"])
    assert "A test ping is on its way: its delivery is in the log below." in notices(after.text)
    [[event, status, *_]] = table_rows(after.text)
    assert (event, status) == ("ping", "pending")
    run_jobs(app)
    [[_, status, attempts, code, next_attempt, _]] = deliveries_on(client, endpoint_id)
    assert (status, attempts, code, next_attempt) == ("failed", "1", "400", "—")

    delivery_id = first_delivery(client, endpoint_id)
    delivery_page = f"/web/webhook/deliveries/{delivery_id}"
    again = post_form(client, f"{delivery_page}/redeliver", delivery_page)
    assert (again.status_code, again.headers["Location"]) == (303, delivery_page)
    pending = client.get(delivery_page)
    assert "Redelivery queued: a new series of attempts starts now." in notices(pending.text)
    assert "Still being attempted" in main_text(pending.text)
    twice = client.post(
        f"{delivery_page}/redeliver", data={"csrf_token": hidden_token(pending.text)}
    )
    refusal = notices(client.get(twice.headers["Location"]).text)
    assert refusal[0].startswith("Not redelivered: webhook delivery")
    run_jobs(app)
    assert len(receiver.received) == 2
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1

    page = shown(client, delivery_page)
    attempts_shown = table_rows(page.text)
    assert [(row[0], row[2], row[3]) for row in attempts_shown] == [
        ("1 · 1", "failed", "400"),
        ("2 · 1", "sent", "200"),
    ]
    assert "not yet" in attempts_shown[0][5]
    assert "ok" in attempts_shown[1][5]
    listed = deliveries_on(client, endpoint_id)
    endpoints_listed = table_rows(shown(client, HOME).text)

    # The same figures as the REST API (its login ends the browser's session: last).
    headers = api_caller(app, email)
    api = app.test_client()
    [endpoint] = api.get(f"{API}/endpoints", headers=headers).get_json()["items"]
    assert endpoints_listed == [
        [endpoint["url"], endpoint["description"], "all yours", "enabled", endpoints_listed[0][4]]
    ]
    [item] = api.get(f"{API}/deliveries", headers=headers).get_json()["items"]
    assert listed == [
        [item["event_type"], item["status"], str(item["attempts"]),
         str(item["last_status_code"]), "—", listed[0][5]]
    ]  # fmt: skip
    detail = api.get(f"{API}/deliveries/{delivery_id}", headers=headers).get_json()
    assert (detail["status"], detail["series"], detail["attempts"]) == ("sent", 2, 1)
    from_api = [
        (f"{a['series']} · {a['number']}", a["outcome"], str(a["status_code"]))
        for a in detail["attempt_log"]
    ]
    assert from_api == [(r[0], r[2], r[3]) for r in attempts_shown]
    assert f"{detail['attempts']} in series {detail['series']}" in main_text(page.text)


def test_the_log_filters_by_status(app: Flask, make_receiver: Callable[..., Receiver]) -> None:
    receiver = make_receiver(lambda n: (500, {}, b"") if n == 1 else (200, {}, b"ok"))
    client, _ = browser_of(app, "seller")
    endpoint_id, _ = added(add(client, receiver.url))
    act(client, endpoint_id, "test")
    act(client, endpoint_id, "test")
    run_jobs(app)
    everything = deliveries_on(client, endpoint_id)
    assert sorted(row[1] for row in everything) == ["pending", "sent"]  # a retry is due later
    sent = table_rows(shown(client, f"{page_of(endpoint_id)}?status=sent").text)
    assert [row[1] for row in sent] == ["sent"]
    odd = shown(client, f"{page_of(endpoint_id)}?status=lost")
    assert "There is no delivery status “lost”; showing every delivery." in notices(odd.text)
    assert len(table_rows(odd.text)) == 2


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"url": ""}, "url", "Enter the address of your receiver."),
        ({"url": "x" * 2001}, "url", "Length must be between 1 and 2000."),
        ({"url": "http://10.1.2.3/hook"}, "url", "10.1.2.3"),
        ({"url": "http://169.254.169.254/latest"}, "url", "169.254.169.254"),
        ({"event_types": ["no.such"]}, "event_types", "unknown event type(s): no.such"),
        (
            {"event_types": ["user.created"]},
            "event_types",
            "not available to a seller: user.created",
        ),
        ({"description": "x" * 501}, "description", "Longer than maximum length 500."),
    ],
)
def test_bad_input_shows_the_message_by_its_field_and_adds_nothing(
    app: Flask,
    make_receiver: Callable[..., Receiver],
    fields: dict[str, Any],
    field: str,
    message: str,
) -> None:
    receiver = make_receiver()
    client, email = browser_of(app, "seller")
    answer = add(client, **{"url": receiver.url, **fields})
    assert answer.status_code == 422
    assert "The endpoint was not added: correct what is marked below." in main_text(answer.text)
    shown_error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', answer.text)
    assert shown_error, main_text(answer.text)
    assert message in shown_error.group(1)
    assert not SECRET.search(answer.text)
    assert endpoints_of(app, email) == []


def test_changing_an_endpoint_saves_it_and_a_refused_change_keeps_it(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver()
    client, email = browser_of(app, "seller")
    endpoint_id, _ = added(add(client, receiver.url, event_types=["order.confirmed"]))
    edit = f"{page_of(endpoint_id)}/edit"
    form = client.get(edit)
    assert f'value="{receiver.url}"' in form.text
    assert re.search(r'value="order.confirmed"\s+checked', form.text)

    refused = post_form(client, edit, edit, url="http://10.1.2.3/", event_types=["refund.created"])
    assert refused.status_code == 422
    assert "The endpoint was not saved" in main_text(refused.text)
    assert [(e.url, e.event_types) for e in endpoints_of(app, email)] == [
        (receiver.url, ["order.confirmed"])
    ]

    saved = post_form(
        client, edit, edit, url=receiver.url, description="Now described",
        event_types=["refund.created", "order.cancelled"],
    )  # fmt: skip
    assert (saved.status_code, saved.headers["Location"]) == (303, page_of(endpoint_id))
    assert [(e.description, e.event_types) for e in endpoints_of(app, email)] == [
        ("Now described", ["order.cancelled", "refund.created"])
    ]


def test_disable_enable_rotate_and_delete(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver()
    client, email = browser_of(app, "seller")
    endpoint_id, old_secret = added(add(client, receiver.url))

    act(client, endpoint_id, "disable")
    page = client.get(page_of(endpoint_id))
    assert "This endpoint is disabled: nothing is delivered to it." in main_text(page.text)
    assert "Send a test ping" not in page.text
    refused = act(client, endpoint_id, "test")
    assert "No ping was sent" in notices(client.get(refused.headers["Location"]).text)[0]
    assert "disabled by Lapak" not in client.get(HOME).text  # its owner did it
    act(client, endpoint_id, "enable")
    assert endpoints_of(app, email)[0].enabled is True

    rotated = act(client, endpoint_id, "rotate-secret")
    assert rotated.status_code == 200
    [new_secret] = set(SECRET.findall(rotated.text))
    assert new_secret != old_secret
    assert "Previous secret signs until" in main_text(rotated.text)
    assert not SECRET.search(client.get(page_of(endpoint_id)).text)
    act(client, endpoint_id, "test")
    run_jobs(app)
    [received] = receiver.received
    assert signed_by(new_secret, received)
    assert signed_by(old_secret, received)

    deleted = act(client, endpoint_id, "delete")
    assert (deleted.status_code, deleted.headers["Location"]) == (303, HOME)
    assert f"Endpoint {receiver.url} deleted, with its deliveries." in notices(
        client.get(HOME).text
    )
    assert endpoints_of(app, email) == []


def test_a_rotate_form_sent_twice_rotates_once_and_the_secret_in_use_still_signs(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver()
    client, email = browser_of(app, "seller")
    endpoint_id, old_secret = added(add(client, receiver.url))
    page = page_of(endpoint_id)
    shown_page = client.get(page).text
    form = {"csrf_token": hidden_token(shown_page), "version": hidden_value(shown_page, "version")}

    rotated = client.post(f"{page}/rotate-secret", data=form)
    assert rotated.status_code == 200
    [new_secret] = set(SECRET.findall(rotated.text))
    again = client.post(f"{page}/rotate-secret", data=form)
    assert (again.status_code, again.headers["Location"]) == (303, page)
    assert notices(client.get(page).text) == [
        "The secret was not rotated: rotated since this page was opened; the secret shown then "
        "is still in use."
    ]
    with app.app_context():
        [stored] = endpoints_of(app, email)
        assert (stored.secret, stored.previous_secret) == (new_secret, old_secret)

    act(client, endpoint_id, "test")
    run_jobs(app)
    [received] = receiver.received
    assert signed_by(new_secret, received)
    assert signed_by(old_secret, received)


def test_an_endpoint_lapak_disabled_is_named_on_the_developers_page(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    gone = make_receiver(answering(410))
    client, email = browser_of(app, "seller")
    endpoint_id, _ = added(add(client, gone.url))
    act(client, endpoint_id, "test")
    run_jobs(app)

    notice = shown(client, HOME).text
    assert "An endpoint was disabled by Lapak" in notice
    assert "the receiver answered 410 Gone, which asks for no more deliveries" in main_text(notice)
    assert f'href="{page_of(endpoint_id)}">{gone.url}</a>' in notice
    assert "Lapak disabled this endpoint" in main_text(shown(client, page_of(endpoint_id)).text)

    other, _ = browser_of(app, "seller")
    assert "disabled by Lapak" not in other.get(HOME).text
    admin, _ = browser_of(app, "admin")
    assert f"({email})" in main_text(admin.get(HOME).text)

    act(client, endpoint_id, "enable")
    assert "disabled by Lapak" not in client.get(HOME).text


def test_an_endpoint_failing_for_days_is_named_with_the_configured_days(
    make_app: Callable[..., Flask],
    config: dict[str, Any],
    make_receiver: Callable[..., Receiver],
) -> None:
    env = {
        **config["module_env"],
        "webhook_retry_schedule": "1h",
        "webhook_disable_after_days": "2",
    }
    app = make_app(module_env=env)
    receiver = make_receiver(answering(500))
    client, email = browser_of(app, "admin")
    run_jobs(app)  # the admin's own user.created, before the endpoint exists
    endpoint_id, _ = added(add(client, receiver.url))
    [owner] = endpoints_of(app, email)
    start = clock.now()
    act(client, endpoint_id, "test")
    run_jobs(app)
    # Failed deliveries of later events (admins' endpoints get every event) keep it failing.
    with at(start + timedelta(days=1)):
        emit_now(app, "user.updated", {"user_id": owner.owner_id, "changed": ["name"]})
        run_jobs(app)
    with at(start + timedelta(days=2, minutes=1)):
        emit_now(app, "user.updated", {"user_id": owner.owner_id, "changed": ["phone"]})
        run_jobs(app)
        later = app.test_client()  # the first browser's session has expired by now
        assert web_login(later, email).status_code == 303
        page = main_text(shown(later, HOME).text)
    assert "its deliveries failed for 2 days without one success" in page
    assert "failing since" in page


@pytest.mark.parametrize("role", ["customer", "staff"])
def test_customers_and_staff_get_no_webhook_screens(app: Flask, role: str) -> None:
    client, _ = browser_of(app, role)
    for path in (HOME, NEW):
        refused = client.get(path)
        assert (refused.status_code, problem_code(refused)) == (403, "forbidden")
    token = hidden_token(client.get(HOME).text)
    assert client.post(CREATE, data={"csrf_token": token, "url": "http://x"}).status_code == 403
    assert "Webhooks" not in client.get("/web/desk/chart").text


def test_another_sellers_endpoint_and_deliveries_are_not_found_and_untouched(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver()
    owner, owner_email = browser_of(app, "seller")
    endpoint_id, _ = added(add(owner, receiver.url))
    act(owner, endpoint_id, "test")
    run_jobs(app)
    delivery_id = first_delivery(owner, endpoint_id)

    other, _ = browser_of(app, "seller")
    token = hidden_token(other.get(HOME).text)
    assert problem_code(other.get(page_of(endpoint_id))) == "webhook-endpoint-not-found"
    assert problem_code(other.get(f"/web/webhook/deliveries/{delivery_id}")) == (
        "webhook-delivery-not-found"
    )
    for action in ("test", "disable", "rotate-secret", "delete"):
        response = other.post(f"{page_of(endpoint_id)}/{action}", data={"csrf_token": token})
        assert response.status_code == 404, action
    redelivered = other.post(
        f"/web/webhook/deliveries/{delivery_id}/redeliver", data={"csrf_token": token}
    )
    assert redelivered.status_code == 404
    assert table_rows(other.get(HOME).text) == []
    [stored] = endpoints_of(app, owner_email)
    assert stored.enabled is True
    assert len(receiver.received) == 1

    admin, _ = browser_of(app, "admin")
    assert owner_email in main_text(admin.get(HOME).text)
    assert owner_email in main_text(shown(admin, page_of(endpoint_id)).text)


def test_changes_without_the_csrf_token_are_refused_and_change_nothing(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    receiver = make_receiver()
    client, email = browser_of(app, "seller")
    endpoint_id, _ = added(add(client, receiver.url))
    for action in ("test", "disable", "rotate-secret", "delete"):
        refused = client.post(f"{page_of(endpoint_id)}/{action}")
        assert (refused.status_code, problem_code(refused)) == (403, "csrf-missing"), action
    assert client.post(CREATE, data={"url": receiver.url}).status_code == 403
    [stored] = endpoints_of(app, email)
    assert stored.enabled is True
    assert stored.previous_secret is None
    run_jobs(app)
    assert receiver.received == []


def test_an_admin_is_offered_every_event_type(app: Flask) -> None:
    client, _ = browser_of(app, "admin")
    form = client.get(NEW).text
    assert 'value="user.created"' in form
    assert 'value="order.confirmed"' in form


def test_webhook_screens_on_the_embedded_default(
    make_embedded_app: Callable[..., Flask],
    config: dict[str, Any],
    make_receiver: Callable[..., Receiver],
) -> None:
    app = make_embedded_app(module_env=config["module_env"])
    receiver = make_receiver()
    client, _ = browser_of(app, "seller")
    endpoint_id, secret = added(add(client, receiver.url))
    act(client, endpoint_id, "test")
    deadline = time.monotonic() + 30
    while True:
        app.extensions["lapak.jobs"].wait_embedded()
        rows = table_rows(client.get(page_of(endpoint_id)).text)
        if rows[0][1] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (rows[0][0], rows[0][1], rows[0][3]) == ("ping", "sent", "200")
    assert verify_now(secret, receiver.received[0])["type"] == "ping"
    assert uuid.UUID(endpoint_id)


def test_the_log_pages_keep_the_status_filter(
    app: Flask, make_receiver: Callable[..., Receiver]
) -> None:
    client, _ = browser_of(app, "seller")
    endpoint_id, _ = added(add(client, make_receiver().url))
    token = hidden_token(client.get(page_of(endpoint_id)).text)
    for _ in range(26):  # a page and one (pending: no job runs)
        client.post(f"{page_of(endpoint_id)}/test", data={"csrf_token": token})

    # Query names the view does not read (one named like url_for's own) are kept, not used.
    first = shown(client, f"{page_of(endpoint_id)}?status=pending&endpoint=x")
    assert len(table_rows(first.text)) == 25
    following = re.search(r'href="([^"]+)"[^>]*>Next page', first.text)
    assert following
    link = following.group(1).replace("&amp;", "&")
    assert link.startswith(f"{page_of(endpoint_id)}?")
    assert "status=pending" in link
    second = shown(client, link)
    assert [row[1] for row in table_rows(second.text)] == ["pending"]
    assert "Next page" not in second.text
