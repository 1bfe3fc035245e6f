"""Becoming a seller by oneself, as ``LAPAK_SELLER_SIGNUP`` allows: ``closed`` refuses it;
``review`` makes a seller who may not sell until staff verify them; ``open`` a seller who sells
at once. The user (through the user module, its password hashed with argon2) and the profile
are written in one transaction. Sign-ups are throttled per client IP (:mod:`.throttle`) before
any password is hashed."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.db import Session
from app.errors import Invalid, PermissionDenied
from app.events import emit
from modules.user.models import User
from modules.user.services import create_user

from .config import seller_settings, sign_up_throttle
from .models import SellerProfile
from .profiles import SellerView, default_display_name, views


class SignUpClosed(PermissionDenied):
    code = "seller-sign-up-closed"
    title = "Sellers do not sign up here; an admin makes them"


@dataclass(frozen=True)
class SignUp:
    email: str
    password: str = field(repr=False)  # never in a log line or a traceback's locals
    name: str = ""
    phone: str | None = None
    display_name: str | None = None


def sign_up(request: SignUp, *, ip: str | None) -> SellerView:
    """Make a seller account and its profile in one transaction, as ``LAPAK_SELLER_SIGNUP`` says:
    ``review`` sellers may not sell until staff verify them, ``open`` ones sell at once.

    ``ip``: the client's; past its sign-ups per window, 429 before the password is hashed.
    """
    mode = seller_settings().sign_up
    if mode == "closed":
        raise SignUpClosed("sellers are made by an admin on this marketplace")
    sign_up_throttle().take(ip)
    display_name = (request.display_name or "").strip()
    if request.display_name is not None and not display_name:
        raise Invalid(errors={"display_name": ["must not be blank"]})
    made: list[SellerProfile] = []

    def open_profile(user: User) -> None:
        profile = SellerProfile(
            user_id=user.id,
            display_name=display_name or default_display_name(user),
            contact_email=user.email,
            contact_phone=user.phone,
            can_sell=mode == "open",
        )
        Session().add(profile)
        Session().flush()
        emit("seller.signed_up", {"seller": user.uuid, "mode": mode, "can_sell": profile.can_sell})
        made.append(profile)

    user = create_user(
        request.email,
        name=request.name,
        role="seller",
        phone=request.phone,
        password=request.password,
        completing=open_profile,
    )
    return views([user], {user.id: made[0]})[0]
