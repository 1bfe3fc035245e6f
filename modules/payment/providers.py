"""Payment providers: one row per adapter's code, made on first use; staff configure them.

A provider's secret settings (its ``webhook_secret``) are one JSON document sealed by the vault
(the ``secrets`` column); the API only ever says which are set.
"""

from __future__ import annotations

import json
import secrets as token_source
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, after_commit, get_database, transaction, utcnow
from app.errors import Invalid, NotFound
from app.vault import Unsealed
from modules.marketplace import services as marketplace
from modules.marketplace.models import CURRENCY_PLACES

from .adapters import Adapter, adapter_for, adapters
from .models import PROVIDER_STATES, PaymentProvider

HUNDRED = Decimal(100)


class ProviderUnavailable(Invalid):
    code = "provider-unavailable"
    title = "The payment provider cannot take this payment"


def production() -> bool:
    return bool(current_app.extensions["lapak.settings"].production)


def ensure_providers() -> None:
    """A row for every registered adapter's provider, with its defaults (once; concurrent
    callers insert it once). Called in the caller's transaction."""
    registered = adapters()
    ensured = current_app.extensions.setdefault("payment.providers_made", set())
    if ensured.issuperset(registered):
        return  # seen committed once: rows are not deleted (get_provider forgets if they were)
    session = Session()
    known = set(session.scalars(select(PaymentProvider.code)))
    missing = [adapter for code, adapter in sorted(registered.items()) if code not in known]
    if not missing:
        after_commit(lambda: ensured.update(known))  # rows this transaction made may roll back
        return
    insert = (
        postgresql_insert
        if get_database().primary.dialect.name == "postgresql"
        else (sqlite_insert)
    )
    for adapter in missing:
        defaults = adapter.defaults(production())
        secret_values = {name: token_source.token_urlsafe(32) for name in adapter.secret_names}
        session.execute(
            insert(PaymentProvider)
            .values(
                code=adapter.code,
                name=adapter.name,
                state=defaults["state"],
                currencies=defaults["currencies"],
                fee_percent=Decimal(defaults.get("fee_percent", 0)),
                fee_fixed=Decimal(defaults.get("fee_fixed", 0)),
                settings=defaults["settings"],
                secrets=json.dumps(secret_values) if secret_values else None,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["code"])
        )


def provider_secrets(provider: PaymentProvider) -> dict[str, str]:
    """The provider's secret settings (unsealed by the column type)."""
    if not provider.secrets:
        return {}
    return {name: Unsealed(value) for name, value in json.loads(provider.secrets).items()}


def get_provider(code: str, *, lock: bool = False) -> PaymentProvider:
    adapter_for(code)  # 404 for a code no module provides
    ensure_providers()
    statement = _PROVIDER_LOCKED if lock else _PROVIDER
    provider = Session().scalars(statement, {"code": code}).first()
    if provider is None and code in current_app.extensions.get("payment.providers_made", ()):
        # The rows went (a reset database under a running process): make them again.
        current_app.extensions["payment.providers_made"].clear()
        ensure_providers()
        provider = Session().scalars(statement, {"code": code}).first()
    if provider is None:
        raise NotFound(f"there is no payment provider {code!r}")
    return provider


#: Built once (on every payment's path); always as the database has it now.
_PROVIDER = (
    select(PaymentProvider)
    .where(PaymentProvider.code == bindparam("code"))
    .execution_options(populate_existing=True)
)
_PROVIDER_LOCKED = _PROVIDER.with_for_update()


def sandbox_refused(adapter: Adapter) -> bool:
    """A sandbox gateway (the demo one) in production: it never takes money there, whatever
    state its row says."""
    return adapter.sandbox and production()


def usable(code: str, currency: str) -> tuple[PaymentProvider, Adapter]:
    provider, adapter = get_provider(code), adapter_for(code)
    if sandbox_refused(adapter):
        raise ProviderUnavailable(
            f"the provider {code!r} is a sandbox: never used in production",
            errors={"provider": "a sandbox, not in production"},
        )
    if provider.state == "disabled":
        raise ProviderUnavailable(
            f"the provider {code!r} is disabled", errors={"provider": "disabled"}
        )
    if currency not in (provider.currencies or []):
        raise ProviderUnavailable(
            f"the provider {code!r} does not take {currency}",
            errors={"provider": f"takes {', '.join(provider.currencies or []) or 'nothing'}"},
        )
    return provider, adapter


def fee_for(provider: PaymentProvider, amount: Decimal, currency: str) -> Decimal:
    """``round_half_up(amount x percent / 100) + fixed``, in the currency's minor unit."""
    places = Decimal(1).scaleb(-CURRENCY_PLACES.get(currency, 2))
    percent_part = (amount * provider.fee_percent / HUNDRED).quantize(places, ROUND_HALF_UP)
    return percent_part + provider.fee_fixed


def list_providers() -> list[PaymentProvider]:
    with transaction():
        ensure_providers()
    return list(Session().scalars(select(PaymentProvider).order_by(PaymentProvider.code)))


@dataclass(frozen=True)
class ProviderChange:
    state: str | None = None
    currencies: list[str] | None = None
    fee_percent: Decimal | None = None
    fee_fixed: Decimal | None = None
    settings: dict[str, Any] | None = None
    #: New secret values (write-only); a None value removes one.
    secrets: dict[str, str | None] | None = None


def update_provider(code: str, change: ProviderChange) -> PaymentProvider:
    """Staff change a provider: state, currencies, fees, settings and secrets."""
    adapter = adapter_for(code)
    with marketplace.refused_by_database(), transaction():
        provider = get_provider(code, lock=True)
        if change.state is not None:
            if change.state not in PROVIDER_STATES:
                raise Invalid("unknown state", errors={"state": f"one of {PROVIDER_STATES}"})
            adapter.check_state(change.state, production())
            provider.state = change.state
        if change.currencies is not None:
            unknown = sorted(set(change.currencies) - set(CURRENCY_PLACES))
            if unknown:
                raise Invalid(
                    f"unknown currencies {', '.join(unknown)}",
                    errors={"currencies": f"each one of {', '.join(sorted(CURRENCY_PLACES))}"},
                )
            provider.currencies = sorted(set(change.currencies))
        if change.fee_percent is not None:
            if not Decimal(0) <= change.fee_percent < HUNDRED:
                raise Invalid("a fee percent is 0 to 99.99", errors={"fee_percent": "0 to 99.99"})
            provider.fee_percent = change.fee_percent
        if change.fee_fixed is not None:
            if change.fee_fixed < 0:
                raise Invalid("a fixed fee is not negative", errors={"fee_fixed": ">= 0"})
            provider.fee_fixed = change.fee_fixed
        if change.settings is not None:
            unknown = sorted(set(change.settings) - set(adapter.setting_names))
            if unknown:
                raise Invalid(
                    "unknown settings", errors={f"settings.{name}": "unknown" for name in unknown}
                )
            provider.settings = {**(provider.settings or {}), **change.settings}
        if change.secrets is not None:
            unknown = sorted(set(change.secrets) - set(adapter.secret_names))
            if unknown:
                raise Invalid(
                    "unknown secret settings",
                    errors={f"secrets.{name}": "unknown" for name in unknown},
                )
            values = provider_secrets(provider)
            for name, value in change.secrets.items():
                if value is None:
                    values.pop(name, None)
                else:
                    values[name] = value
            provider.secrets = json.dumps(values) if values else None
        provider.updated_at = utcnow()
    return provider


def secret_names_set(provider: PaymentProvider) -> list[str]:
    """Which secret settings have a value (their names only: values are write-only)."""
    return sorted(provider_secrets(provider))
