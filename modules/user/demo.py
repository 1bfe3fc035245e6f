"""``lapak demo``: the people of the demo, and who the other modules' demo data acts as.

One user per role logs in at once with a random password printed once; a second customer and a
second seller take part in the history (:mod:`app.demo`); one customer has no password, like an
imported user, to try activation with. ``lapak demo`` dates them (as every module's demo data) a
little before the history begins: they were there before their first order.
"""

from __future__ import annotations

import contextlib
import secrets

import click
from flask import current_app

from app.security import Principal

from . import services
from .services import EmailTaken

DEMO_ADMIN_EMAIL = "admin@lapak.local"
DEMO_STAFF_EMAIL = "staff@lapak.local"
#: The customers who order in the history.
DEMO_CUSTOMER_EMAILS = ("dewi@lapak.local", "rudi@lapak.local")
#: The seller whose products sell in the history (verified, paid out).
DEMO_SELLER_EMAIL = "seller@lapak.local"
#: A seller who asks for the KYC review near the end of the history (in staff's queue).
DEMO_NEW_SELLER_EMAIL = "sinar@lapak.local"
#: Users who can log in at once (a random password each, printed once): every role.
DEMO_LOGINS = (
    (DEMO_ADMIN_EMAIL, "Demo Admin", "admin", None),
    (DEMO_STAFF_EMAIL, "Sari Wulandari", "staff", "081234567801"),
    (DEMO_CUSTOMER_EMAILS[0], "Dewi Lestari", "customer", "081234567803"),
    (DEMO_CUSTOMER_EMAILS[1], "Rudi Hartono", "customer", "081234567804"),
    (DEMO_SELLER_EMAIL, "Toko Budi Makmur", "seller", "081234567802"),
    (DEMO_NEW_SELLER_EMAIL, "Sinar Laut Segar", "seller", "081234567805"),
)
#: Like an imported user: no password until activated.
DEMO_INACTIVATED = ("agus@lapak.local", "Agus Santoso", "customer", None)
ACTIVATION_HOWTO = (
    "an admin gets a one-time token with POST /api/v1/users/{{id}}/activation and the user "
    "chooses a password with POST /api/v1/auth/activate, or run `lapak users set-password {email}`"
)


def acting_as(email: str) -> Principal | None:
    """The demo user ``email`` as the caller of a service (as if logged in), or None if there
    is no such user (a module's demo data then leaves out what they would do)."""
    user = services.find_by_email(email)
    if user is None:
        return None
    return Principal(user_id=user.id, user_uuid=user.uuid, email=user.email, role=user.role)


def load_demo() -> list[str]:
    """The demo users, each with a fresh random password, and one without (to try activation).

    Passwords are printed once: a later run leaves existing users alone, says so and how to
    set a new password. Refused in production, where a printed password is a leak.
    """
    if current_app.extensions["lapak.settings"].production:
        raise click.ClickException("demo users are refused in LAPAK_ENV=production")
    created, existing = [], []
    for email, name, role, phone in DEMO_LOGINS:
        if services.find_by_email(email) is not None:  # no password hashed for nothing
            existing.append(email)
            continue
        password = secrets.token_urlsafe(18)
        try:
            services.create_user(email, name=name, role=role, phone=phone, password=password)
        except EmailTaken:
            existing.append(email)
        else:
            created.append(f"  {role:<9} {email:<20} password: {password}")
    email, name, role, phone = DEMO_INACTIVATED
    with contextlib.suppress(EmailTaken):
        services.create_user(email, name=name, role=role, phone=phone)
    lines = []
    if created:
        lines += ["Demo logins (keep these passwords: they are shown only once):", *created]
    if existing:
        lines.append(
            f"Demo users already there, passwords not shown again: {', '.join(existing)}; "
            "set a new one with `lapak users set-password EMAIL`."
        )
    waiting = services.find_by_email(email)
    if waiting is None or waiting.has_password:
        return lines
    lines.append(
        f"{email} ({role}) has no password yet, like an imported user: to activate, "
        + ACTIVATION_HOWTO.format(email=email)
        + "."
    )
    return lines
