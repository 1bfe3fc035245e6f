"""User services on real PostgreSQL: normalisation, policy, events, activation, listing."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from app import clock
from app.config import SettingsError
from app.db import Session, transaction, utcnow
from app.errors import Invalid
from app.events import OutboxEvent
from modules.user import services
from modules.user.models import ActivationToken, User
from modules.user.passwords import passwords
from modules.user.services import (
    AlreadyActivated,
    EmailTaken,
    InvalidActivationToken,
    LastAdmin,
    UserFilter,
    UserInactive,
    UserNotFound,
)

GOOD_PASSWORD = "correct horse battery staple"


@pytest.fixture
def in_app(app: Flask) -> Iterator[Flask]:
    """Run the test inside an app context (services need one)."""
    with app.app_context():
        yield app


def fresh(user_uuid: uuid.UUID) -> User:
    """The user as stored, read in a new session (not the identity map of the service call)."""
    Session.remove()
    return Session().scalars(select(User).where(User.uuid == user_uuid)).one()


def events(name: str | None = None) -> list[dict[str, Any]]:
    Session.remove()
    statement = select(OutboxEvent).order_by(OutboxEvent.id)
    if name is not None:
        statement = statement.where(OutboxEvent.name == name)
    return [{"name": e.name, **e.payload} for e in Session().scalars(statement)]


def field_errors(raised: pytest.ExceptionInfo[Invalid], field: str) -> list[str]:
    assert raised.value.errors is not None
    return raised.value.errors[field]


# --- email ----------------------------------------------------------------------------------


def test_email_keeps_the_local_part_lowers_the_domain_and_is_unique_in_any_case(
    in_app: Flask,
) -> None:
    user = services.create_user("  Foo@Example.COM ")
    stored = fresh(user.uuid)
    assert stored.email == "Foo@example.com"
    assert stored.email_key == "foo@example.com"

    with pytest.raises(EmailTaken) as raised:
        services.create_user("foo@example.com")
    assert raised.value.errors == {"email": ["is taken"]}
    with pytest.raises(EmailTaken):
        services.create_user("FOO@EXAMPLE.com")
    assert services.find_by_email("fOO@example.COM").uuid == user.uuid
    assert Session().scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "no-at-sign.example.com",
        "nodot@localhost",
        "two@@example.com",
        "a@b@example.com",
        "with space@example.com",
        "nul\x00byte@example.com",
        "x" * 65 + "@example.com",
        "a@" + "d" * 250 + ".com",
    ],
)
def test_malformed_emails_are_refused_and_not_found(in_app: Flask, email: str) -> None:
    with pytest.raises(Invalid) as raised:
        services.create_user(email)
    assert field_errors(raised, "email") == ["is not a valid email address"]
    assert services.find_by_email(email) is None


def test_find_by_email_of_an_unknown_address_is_none(in_app: Flask) -> None:
    services.create_user("known@example.com")
    assert services.find_by_email("unknown@example.com") is None


# --- phone ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("08123456789", "+628123456789"),
        ("8123456789", "+628123456789"),  # national without the trunk 0
        ("812-3456-789", "+628123456789"),
        ("628123456789", "+62628123456789"),  # no + or 00: national, as a phone would dial it
        ("+62 812-3456-789", "+628123456789"),
        ("0062 812 3456 789", "+628123456789"),
        ("(0812) 3456.789", "+628123456789"),
        ("+44 20 7946 0958", "+442079460958"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_phone_numbers_are_stored_as_e164(in_app: Flask, raw: str | None, expected: str) -> None:
    user = services.create_user("phone@example.com", phone=raw)
    assert fresh(user.uuid).phone == expected


@pytest.mark.parametrize(
    "raw",
    [
        "garbage",
        "12345",  # too short
        "+0812345678",  # a country code never starts with 0
        "+62 812 3456 7890 12345",  # longer than E.164 allows
        "08" + "".join(chr(0xFF10 + int(d)) for d in "123456789"),  # full-width digits
        "+62-812-3456-789 ext 1",
        "++628123456789",
    ],
)
def test_invalid_phone_numbers_get_a_clear_message(in_app: Flask, raw: str) -> None:
    with pytest.raises(Invalid) as raised:
        services.create_user("phone@example.com", phone=raw)
    (message,) = field_errors(raised, "phone")
    assert "is not a phone number" in message
    assert "+628123456789" in message  # says what a good one looks like
    assert services.find_by_email("phone@example.com") is None


def test_an_unreadable_phone_number_says_how_numbers_are_read(in_app: Flask) -> None:
    with pytest.raises(Invalid) as raised:
        services.create_user("phone@example.com", phone="12ab")
    (message,) = field_errors(raised, "phone")
    assert "with + or 00 and the country code" in message
    assert "national numbers of ID" in message
    assert "LAPAK_DEFAULT_PHONE_REGION" in message


@pytest.mark.parametrize(
    ("region", "raw", "expected"),
    [
        ("SG", "9123 4567", "+6591234567"),
        ("my", "012-345 6789", "+60123456789"),
        ("GB", "020 7946 0958", "+442079460958"),
        ("SG", "+62 812 3456 789", "+628123456789"),
        ("SG", "0062 812 3456 789", "+628123456789"),
    ],
)
def test_national_numbers_follow_the_default_phone_region(
    make_app: Callable[..., Flask], config: dict[str, Any], region: str, raw: str, expected: str
) -> None:
    app = make_app(module_env={**config["module_env"], "default_phone_region": region})
    with app.app_context():
        user = services.create_user("phone@example.com", phone=raw)
        updated = services.update_user(user.uuid, {"phone": raw})
        assert (user.phone, updated.phone) == (expected, expected)


def test_an_unknown_default_phone_region_is_refused_at_start(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    with pytest.raises(SettingsError, match="LAPAK_DEFAULT_PHONE_REGION='XX' is not one of"):
        make_app(module_env={**config["module_env"], "default_phone_region": "xx"})


# --- roles ----------------------------------------------------------------------------------


def test_unknown_roles_are_refused_by_the_service_and_the_database(in_app: Flask) -> None:
    with pytest.raises(Invalid) as raised:
        services.create_user("root@example.com", role="superuser")
    assert field_errors(raised, "role") == ["must be one of admin, staff, customer, seller"]

    user = services.create_user("staff@example.com", role="staff")
    with pytest.raises(Invalid) as raised:
        services.update_user(user.uuid, {"role": "root"})
    assert "role" in raised.value.errors
    assert fresh(user.uuid).role == "staff"

    # The CHECK constraint of the migration holds even for code that skips the service.
    with pytest.raises(IntegrityError, match="ck_user_account_role"), transaction() as session:
        session.add(User(email="raw@example.com", email_key="raw@example.com", role="root"))


# --- passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("sari@example.com", "short", "must be at least 10 characters"),
        ("sari@example.com", "x" * 129, "must be at most 128 characters"),
        ("sari@example.com", " " * 12, "must not be only spaces"),
        ("sari.wulandari@example.com", "Sari.Wulandari@Example.com", "must not be your email"),
        ("sari.wulandari@example.com", "SARI.WULANDARI", "must not be your email address"),
    ],
)
def test_password_policy_refuses_with_messages_per_rule(
    in_app: Flask, email: str, password: str, message: str
) -> None:
    with pytest.raises(Invalid) as raised:
        services.create_user(email, password=password)
    assert any(m.startswith(message) for m in field_errors(raised, "password"))
    assert password not in str(raised.value.errors)
    assert services.find_by_email(email) is None


def test_password_is_stored_only_as_an_argon2id_hash(in_app: Flask) -> None:
    user = services.create_user("hashed@example.com", password=GOOD_PASSWORD)
    stored = fresh(user.uuid)
    assert stored.has_password
    assert stored.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords().verify(stored.password_hash, GOOD_PASSWORD)
    assert not passwords().verify(stored.password_hash, GOOD_PASSWORD + "!")
    row = Session().execute(text("SELECT * FROM user_account")).one()
    assert not any(GOOD_PASSWORD in str(value) for value in row)


def test_user_without_a_password_has_none(in_app: Flask) -> None:
    user = services.create_user("imported@example.com", name="  Imported  ")
    stored = fresh(user.uuid)
    assert stored.password_hash is None
    assert not stored.has_password
    assert stored.name == "Imported"
    assert (stored.role, stored.active) == ("customer", True)


# --- changes and their events ---------------------------------------------------------------


def test_create_emits_user_created(in_app: Flask) -> None:
    user = services.create_user("new@example.com", role="seller")
    assert events() == [
        {
            "name": "user.created",
            "user_id": user.id,
            "uuid": str(user.uuid),
            "role": "seller",
            "active": True,
        }
    ]


def test_update_changes_fields_and_emits_user_updated(in_app: Flask) -> None:
    user = services.create_user("upd@example.com", name="Old")
    before = fresh(user.uuid).updated_at
    with clock.travel(timedelta(minutes=5)):
        services.update_user(user.uuid, {"name": " New Name ", "phone": "0812 3456 789"})
    stored = fresh(user.uuid)
    assert (stored.name, stored.phone) == ("New Name", "+628123456789")
    assert stored.updated_at >= before + timedelta(minutes=5)
    (updated,) = events("user.updated")
    assert updated["uuid"] == str(user.uuid)
    assert updated["changed"] == ["name", "phone"]
    assert events("user.deactivated") == []


def test_update_without_a_real_change_emits_nothing(in_app: Flask) -> None:
    user = services.create_user("same@example.com", name="Same", role="staff")
    services.update_user(user.uuid, {"name": "Same", "role": "staff"})
    assert events("user.updated") == []


def test_update_refuses_fields_it_does_not_own(in_app: Flask) -> None:
    user = services.create_user("own@example.com")
    with pytest.raises(Invalid) as raised:
        services.update_user(user.uuid, {"email": "other@example.com", "password_hash": "x"})
    assert set(raised.value.errors) == {"email", "password_hash"}
    assert fresh(user.uuid).email == "own@example.com"


def test_deactivate_emits_user_deactivated_once(in_app: Flask) -> None:
    user = services.create_user("leaving@example.com", role="staff")
    services.deactivate_user(user.uuid)
    assert fresh(user.uuid).active is False
    (deactivated,) = events("user.deactivated")
    assert deactivated == {
        "name": "user.deactivated",
        "user_id": user.id,
        "uuid": str(user.uuid),
        "role": "staff",
        "active": False,
    }
    services.deactivate_user(user.uuid)  # already inactive: nothing happens
    assert len(events("user.deactivated")) == 1

    services.update_user(user.uuid, {"active": True})
    services.update_user(user.uuid, {"active": False})
    assert len(events("user.deactivated")) == 2


def test_unknown_users_are_not_found(in_app: Flask) -> None:
    missing = uuid.uuid4()
    for call in (
        lambda: services.get_user(missing),
        lambda: services.get_user_by_id(987654),
        lambda: services.update_user(missing, {"name": "x"}),
        lambda: services.deactivate_user(missing),
        lambda: services.issue_activation_token(missing),
    ):
        with pytest.raises(UserNotFound):
            call()


# --- the last admin -------------------------------------------------------------------------


def test_the_last_active_admin_cannot_be_deactivated_or_demoted(in_app: Flask) -> None:
    first = services.create_user("first@example.com", role="admin")
    with pytest.raises(LastAdmin):
        services.deactivate_user(first.uuid)
    with pytest.raises(LastAdmin):
        services.update_user(first.uuid, {"role": "staff"})
    assert (fresh(first.uuid).role, fresh(first.uuid).active) == ("admin", True)
    assert events("user.deactivated") == []

    second = services.create_user("second@example.com", role="admin")
    services.update_user(first.uuid, {"role": "staff"})
    with pytest.raises(LastAdmin):
        services.update_user(second.uuid, {"active": False})
    # The last admin can still be changed in ways that keep them an active admin.
    services.update_user(second.uuid, {"name": "Still Admin"})
    assert fresh(second.uuid).name == "Still Admin"


def test_two_concurrent_demotions_leave_one_active_admin(app: Flask) -> None:
    with app.app_context():
        admins = [services.create_user(f"a{i}@example.com", role="admin").uuid for i in (1, 2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(user_uuid: uuid.UUID) -> None:
        with app.app_context():
            barrier.wait()
            try:
                services.update_user(user_uuid, {"role": "customer"})
                outcomes.append("demoted")
            except LastAdmin:
                outcomes.append("refused")

    threads = [threading.Thread(target=demote, args=(u,)) for u in admins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["demoted", "refused"]
    with app.app_context():
        remaining = Session().scalars(select(User.email).where(User.role == "admin")).all()
        assert len(remaining) == 1


# --- activation tokens ----------------------------------------------------------------------


def test_activation_token_sets_the_first_password_once(in_app: Flask) -> None:
    user = services.create_user("act@example.com")
    token, expires_at = services.issue_activation_token(user.uuid)
    assert expires_at - utcnow() > timedelta(hours=71, minutes=59)
    assert expires_at - utcnow() <= timedelta(hours=72)

    activated = services.activate(token, GOOD_PASSWORD)
    assert activated.uuid == user.uuid
    stored = fresh(user.uuid)
    assert passwords().verify(stored.password_hash, GOOD_PASSWORD)
    assert [e["uuid"] for e in events("user.activated")] == [str(user.uuid)]

    with pytest.raises(InvalidActivationToken):
        services.activate(token, "another good password")
    assert passwords().verify(fresh(user.uuid).password_hash, GOOD_PASSWORD)


def test_expired_activation_token_is_refused(in_app: Flask) -> None:
    user = services.create_user("late@example.com")
    token, _ = services.issue_activation_token(user.uuid)
    with clock.travel(timedelta(hours=73)), pytest.raises(InvalidActivationToken):
        services.activate(token, GOOD_PASSWORD)
    assert fresh(user.uuid).password_hash is None


def test_a_newer_token_invalidates_the_older_one(in_app: Flask) -> None:
    user = services.create_user("twice@example.com")
    older, _ = services.issue_activation_token(user.uuid)
    newer, _ = services.issue_activation_token(user.uuid)
    assert older != newer
    with pytest.raises(InvalidActivationToken):
        services.activate(older, GOOD_PASSWORD)
    services.activate(newer, GOOD_PASSWORD)
    assert fresh(user.uuid).has_password


def test_unknown_and_garbage_tokens_get_the_same_refusal(in_app: Flask) -> None:
    services.create_user("nobody@example.com")
    for token in ("", "not-a-token", "x" * 5000):
        with pytest.raises(InvalidActivationToken) as raised:
            services.activate(token, GOOD_PASSWORD)
        assert raised.value.detail is None  # nothing that tells the cases apart


def test_a_policy_failure_leaves_the_token_usable(in_app: Flask) -> None:
    user = services.create_user("retry@example.com")
    token, _ = services.issue_activation_token(user.uuid)
    with pytest.raises(Invalid) as raised:
        services.activate(token, "short")
    assert not isinstance(raised.value, InvalidActivationToken)
    assert "password" in raised.value.errors
    services.activate(token, GOOD_PASSWORD)
    assert fresh(user.uuid).has_password


def test_user_with_a_password_cannot_get_a_token(in_app: Flask) -> None:
    user = services.create_user("has@example.com", password=GOOD_PASSWORD)
    with pytest.raises(AlreadyActivated):
        services.issue_activation_token(user.uuid)
    assert Session().scalars(select(ActivationToken)).all() == []


def test_inactive_users_get_no_token_and_cannot_activate(in_app: Flask) -> None:
    user = services.create_user("off@example.com")
    token, _ = services.issue_activation_token(user.uuid)
    services.deactivate_user(user.uuid)
    with pytest.raises(UserInactive):
        services.issue_activation_token(user.uuid)
    with pytest.raises(InvalidActivationToken):
        services.activate(token, GOOD_PASSWORD)
    assert fresh(user.uuid).password_hash is None


def test_only_the_sha256_of_the_token_is_stored(in_app: Flask) -> None:
    user = services.create_user("hash@example.com")
    token, _ = services.issue_activation_token(user.uuid)
    Session.remove()
    (row,) = Session().execute(text("SELECT * FROM user_activation_token")).mappings().all()
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in str(value) for value in row.values())


# --- listing --------------------------------------------------------------------------------


def listing(app: Flask, filters: UserFilter, limit: int = 50) -> list[str]:
    """Every email the listing returns, following cursors page by page."""
    emails: list[str] = []
    cursor = None
    while True:
        with app.test_request_context("/api/v1/users"):
            page = services.list_users(filters, limit=limit, cursor=cursor)
        emails.extend(user.email for user in page.items)
        assert len(page.items) <= limit
        if page.next_cursor is None:
            return emails
        cursor = page.next_cursor


def test_list_filters_by_role_active_and_email_prefix(in_app: Flask) -> None:
    for email, role in [
        ("ani@example.com", "customer"),
        ("Anita@example.com", "staff"),
        ("budi@example.com", "staff"),
        ("a_b@example.com", "customer"),
        ("axb@example.com", "customer"),
        ("50%off@example.com", "seller"),
        ("50xoff@example.com", "seller"),
        ("back\\slash@example.com", "customer"),
    ]:
        services.create_user(email, role=role)
    services.deactivate_user(services.find_by_email("budi@example.com").uuid)

    assert listing(in_app, UserFilter(role="staff")) == ["Anita@example.com", "budi@example.com"]
    assert listing(in_app, UserFilter(active=False)) == ["budi@example.com"]
    assert listing(in_app, UserFilter(role="staff", active=True)) == ["Anita@example.com"]
    assert listing(in_app, UserFilter(email_prefix="ANI")) == [
        "ani@example.com",
        "Anita@example.com",
    ]
    assert listing(in_app, UserFilter(email_prefix="a_")) == ["a_b@example.com"]
    assert listing(in_app, UserFilter(email_prefix="50%")) == ["50%off@example.com"]
    assert listing(in_app, UserFilter(email_prefix="back\\")) == ["back\\slash@example.com"]
    assert listing(in_app, UserFilter(email_prefix="zzz")) == []
    assert len(listing(in_app, UserFilter())) == 8


def test_list_pages_through_every_user_once_in_creation_order(in_app: Flask) -> None:
    created = [services.create_user(f"user{i:02}@example.com").email for i in range(7)]
    services.create_user("other@example.com", role="staff")
    assert listing(in_app, UserFilter(role="customer"), limit=3) == created
    assert listing(in_app, UserFilter(), limit=1) == [*created, "other@example.com"]

    with in_app.test_request_context("/api/v1/users"):
        first = services.list_users(UserFilter(role="customer"), limit=7, cursor=None)
    assert len(first.items) == 7
    assert first.next_cursor is None  # an exactly full last page has no next


# --- reset_password (lapak users set-password) ------------------------------------------------


def test_reset_password_activates_an_imported_user_and_voids_their_activation_tokens(
    in_app: Flask,
) -> None:
    user = services.create_user("imported@example.com")
    token, _ = services.issue_activation_token(user.uuid)
    reset, activated = services.reset_password("IMPORTED@example.com", GOOD_PASSWORD)
    assert (reset.uuid, activated) == (user.uuid, True)
    assert passwords().verify(fresh(user.uuid).password_hash, GOOD_PASSWORD)
    with pytest.raises(InvalidActivationToken):
        services.activate(token, "another good password")
    assert [e["user_id"] for e in events("user.password_set")] == [user.id]
    assert [e["user_id"] for e in events("user.activated")] == [user.id]

    _, again = services.reset_password("imported@example.com", "a third good password")
    assert again is False
    assert len(events("user.activated")) == 1
    assert len(events("user.password_set")) == 2


def test_reset_password_refuses_a_weak_password_and_unknown_users(in_app: Flask) -> None:
    services.create_user("known@example.com", password=GOOD_PASSWORD)
    with pytest.raises(Invalid) as raised:
        services.reset_password("known@example.com", "short")
    assert field_errors(raised, "password")
    with pytest.raises(UserNotFound):
        services.reset_password("nobody@example.com", GOOD_PASSWORD)
    assert passwords().verify(services.find_by_email("known@example.com").password_hash,
                              GOOD_PASSWORD)  # fmt: skip
    assert events("user.password_set") == []
