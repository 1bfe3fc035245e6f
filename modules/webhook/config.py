"""The webhook module's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_WEBHOOK_RETRY_SCHEDULE`` | ``5s,5m,30m,2h,5h,10h,10h``: the wait before each retry, |
|   | after the previous attempt (``s``, ``m``, ``h``, ``d``); the first attempt is immediate. |
|   | ``2m,4m,8m`` is the PayCoreX "3 retries at 2^n minutes"; empty: no retries |
| ``LAPAK_WEBHOOK_RETRY_JITTER_PERCENT`` | ``0``: each wait of the schedule is stretched by a |
|   | random 0 to this many percent, so deliveries that failed together (a receiver's outage) |
|   | do not all come back at once; at most 50 |
| ``LAPAK_WEBHOOK_TIMEOUT_SECONDS`` | ``10``: one attempt's whole exchange, connect to last byte |
| ``LAPAK_WEBHOOK_SECRET_OVERLAP_SECONDS`` | ``86400``: after a rotation the previous secret |
|   | signs too, this long |
| ``LAPAK_WEBHOOK_DISABLE_AFTER_DAYS`` | ``5``: an endpoint whose deliveries failed without |
|   | a break (no success, no long silence: ``failing_gap``) this long is disabled, its owner |
|   | told |
| ``LAPAK_WEBHOOK_RETENTION_DAYS`` | ``30``: sent and failed deliveries (with their attempts) |
|   | and their messages are purged this long after they finished; pending ones stay |

Addresses follow the fetch module's rules (``LAPAK_FETCH_ALLOW_LOOPBACK`` permits 127.0.0.1 for
tests and local development; private and link-local addresses are always refused).
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app

from app.config import Settings, SettingsError, module_int
from modules.fetch.client import FetchPolicy

DEFAULT_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STEP = re.compile(r"^(\d+)([smhd])$")
#: A ``Retry-After`` longer than this is taken as this: a receiver cannot park a delivery for
#: ever.
MAX_RETRY_AFTER = timedelta(days=1)
MAX_JITTER_PERCENT = 50
#: Added to the longest wait in :attr:`WebhookSettings.failing_gap`: a retry is sent a sweep
#: interval or a busy queue after its time, not on it.
FAILING_GAP_SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class WebhookSettings:
    retry_schedule: tuple[timedelta, ...] = ()
    retry_jitter_percent: int = 0
    timeout_seconds: int = 10
    secret_overlap: timedelta = timedelta(days=1)
    disable_after: timedelta = timedelta(days=5)
    retention_days: int = 30
    #: The fetch module's address rules, with this module's timeout, no retries or redirects.
    policy: FetchPolicy = dataclasses.field(default_factory=FetchPolicy)

    def wait_before(self, number: int) -> timedelta:
        """The wait after attempt ``number`` (1-based), stretched by the jitter if any."""
        wait = self.retry_schedule[number - 1]
        if self.retry_jitter_percent:
            # Jitter spreads retries, it protects nothing: no need for a secure source.
            wait *= 1 + random.uniform(0, self.retry_jitter_percent / 100)  # noqa: S311
        return wait

    @property
    def failing_gap(self) -> timedelta:
        """The longest silence between two failed attempts of one failing stretch: the longest
        wait a delivery makes between attempts (the schedule's longest step with its jitter, or
        the longest ``Retry-After`` honoured), and the sweep's slack. Past it, a new failure
        starts a new stretch (see sending.py)."""
        longest = max(self.retry_schedule, default=timedelta(0))
        longest *= 1 + self.retry_jitter_percent / 100
        return max(longest, MAX_RETRY_AFTER) + FAILING_GAP_SLACK

    @property
    def max_attempts(self) -> int:
        """The first attempt and one per step of the schedule."""
        return 1 + len(self.retry_schedule)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSettings:
        env = settings.module_env
        timeout = module_int(env, "webhook_timeout_seconds", 10)
        fetch_policy = FetchPolicy.from_settings(settings)
        return cls(
            retry_schedule=parse_schedule(env.get("webhook_retry_schedule", DEFAULT_SCHEDULE)),
            retry_jitter_percent=_jitter(env),
            timeout_seconds=timeout,
            secret_overlap=timedelta(
                seconds=module_int(env, "webhook_secret_overlap_seconds", 86400, minimum=0)
            ),
            disable_after=timedelta(days=module_int(env, "webhook_disable_after_days", 5)),
            retention_days=module_int(env, "webhook_retention_days", 30),
            policy=dataclasses.replace(
                fetch_policy,
                connect_timeout=min(fetch_policy.connect_timeout, float(timeout)),
                total_timeout=float(timeout),
                retries=0,
                max_redirects=0,
                allowed_hosts=frozenset(),
            ),
        )


def parse_schedule(text: str) -> tuple[timedelta, ...]:
    """``"5s,5m,2h"`` -> the waits before each retry; SettingsError names a bad step."""
    steps = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        match = _STEP.match(part)
        if match is None:
            raise SettingsError(
                f"LAPAK_WEBHOOK_RETRY_SCHEDULE: {part!r} is not a wait such as 5s, 5m, 2h or 1d "
                f"(the default is {DEFAULT_SCHEDULE})"
            )
        steps.append(timedelta(seconds=int(match[1]) * UNITS[match[2]]))
    return tuple(steps)


def _jitter(env: dict[str, str]) -> int:
    percent = module_int(env, "webhook_retry_jitter_percent", 0, minimum=0)
    if percent > MAX_JITTER_PERCENT:
        raise SettingsError(
            f"LAPAK_WEBHOOK_RETRY_JITTER_PERCENT must be at most {MAX_JITTER_PERCENT}"
        )
    return percent


def install(app: Flask, settings: Settings) -> None:
    app.extensions["webhook.settings"] = WebhookSettings.from_settings(settings)


def webhook_settings() -> WebhookSettings:
    return current_app.extensions["webhook.settings"]
