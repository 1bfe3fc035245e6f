"""The paylink module's settings, read from ``LAPAK_*`` variables and validated at start, and its
per-app state (the throttle of guesses).

| variable | default |
| --- | --- |
| ``LAPAK_PAYLINK_DEFAULT_DAYS`` | ``7``: how long a link lives when its maker gives no expiry |
| ``LAPAK_PAYLINK_MAX_DAYS`` | ``90``: the latest expiry a link may be given, in days from now |
| ``LAPAK_PAYLINK_MAX_IP_FAILURES`` | ``20``: answers "no such link" to one client IP in the |
|   | window before it is locked out (429, ``Retry-After``) |
| ``LAPAK_PAYLINK_FAILURE_WINDOW_SECONDS`` | ``900``: the window failures are counted over |
| ``LAPAK_PAYLINK_LOCKOUT_SECONDS`` | ``60``: the first lockout; it doubles with each further |
|   | failure, up to ``LAPAK_PAYLINK_MAX_LOCKOUT_SECONDS`` (``3600``) |
| ``LAPAK_PAYLINK_MERCHANT_NAME`` | ``Lapak``: the name the pay page shows for an invoice that |
|   | is not one seller's alone (the platform is the merchant of record) |

Guesses are counted per client IP only: behind a reverse proxy, set ``LAPAK_TRUSTED_PROXY_HOPS``
(else every payer shares the proxy's address, and one guesser locks them all out). A locked IP
gets 429 for every ``/pay/<token>``, real links included: answering a real link from a locked IP
would let guessing go on with an answer that tells a hit. Nothing is counted per token: each
guess is a new token, and counting them would only let anyone holding a real link lock it for
every payer.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from app.config import Settings, SettingsError, module_int
from app.errors import TooManyRequests
from modules.auth.throttle import LoginThrottle

NAMESPACE = "lapak:paylink:throttle"


class PayLinkThrottled(TooManyRequests):
    code = "pay-link-throttled"
    title = "Too many requests for payment links that do not exist; try again later"


def _throttled(wait: int) -> PayLinkThrottled:
    return PayLinkThrottled(
        f"try again in {wait} seconds", headers={"Retry-After": str(wait)}, retry_after=wait
    )


@dataclass(frozen=True)
class PayLinkSettings:
    default_days: int = 7
    max_days: int = 90
    max_ip_failures: int = 20
    #: Not used: guesses are counted per client IP only (the throttle's ``per_account=False``).
    max_account_failures: int = 0
    failure_window_seconds: int = 900
    lockout_seconds: int = 60
    max_lockout_seconds: int = 3600
    merchant_name: str = "Lapak"

    @classmethod
    def from_settings(cls, settings: Settings) -> PayLinkSettings:
        env = settings.module_env
        default_days = module_int(env, "paylink_default_days", 7)
        max_days = module_int(env, "paylink_max_days", 90)
        if default_days > max_days:
            raise SettingsError(
                "LAPAK_PAYLINK_DEFAULT_DAYS must be at most LAPAK_PAYLINK_MAX_DAYS "
                f"({default_days} > {max_days})"
            )
        failures = module_int(env, "paylink_max_ip_failures", 20)
        lockout = module_int(env, "paylink_lockout_seconds", 60)
        max_lockout = module_int(env, "paylink_max_lockout_seconds", 3600)
        if lockout > max_lockout:
            raise SettingsError(
                "LAPAK_PAYLINK_LOCKOUT_SECONDS must be at most LAPAK_PAYLINK_MAX_LOCKOUT_SECONDS"
            )
        name = env.get("paylink_merchant_name", "Lapak").strip()
        if not name or len(name) > 100:
            raise SettingsError("LAPAK_PAYLINK_MERCHANT_NAME must be 1 to 100 characters")
        return cls(
            default_days=default_days,
            max_days=max_days,
            max_ip_failures=failures,
            failure_window_seconds=module_int(env, "paylink_failure_window_seconds", 900),
            lockout_seconds=lockout,
            max_lockout_seconds=max_lockout,
            merchant_name=name,
        )


def install(app: Flask, settings: Settings) -> None:
    own = PayLinkSettings.from_settings(settings)
    jobs = app.extensions["lapak.jobs"]
    app.extensions["paylink.settings"] = own
    # The login throttle's counting (Redis, or this process without it), with keys of its own:
    # a failure is an answer "no such link", counted per client IP only.
    app.extensions["paylink.throttle"] = LoginThrottle(
        own, jobs.redis, jobs.outage, namespace=NAMESPACE, refusal=_throttled,
        counted="payment link guesses", per_account=False,
    )  # fmt: skip


def paylink_settings() -> PayLinkSettings:
    return current_app.extensions["paylink.settings"]


def throttle() -> LoginThrottle:
    return current_app.extensions["paylink.throttle"]
