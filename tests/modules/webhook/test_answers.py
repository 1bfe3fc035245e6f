"""The answer -> action table, ``Retry-After`` and the retry schedule setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.config import SettingsError
from modules.webhook.answers import Action, action_for, retry_after
from modules.webhook.config import parse_schedule

TABLE = [
    (200, Action.SENT),
    (201, Action.SENT),
    (202, Action.SENT),
    (204, Action.SENT),
    (299, Action.SENT),
    (None, Action.RETRY),
    (408, Action.RETRY),
    (425, Action.RETRY),
    (429, Action.RETRY),
    (500, Action.RETRY),
    (502, Action.RETRY),
    (503, Action.RETRY),
    (504, Action.RETRY),
    (599, Action.RETRY),
    (410, Action.DISABLE),
    (100, Action.FAIL),
    (301, Action.FAIL),
    (302, Action.FAIL),
    (303, Action.FAIL),
    (304, Action.FAIL),
    (307, Action.FAIL),
    (308, Action.FAIL),
    (400, Action.FAIL),
    (401, Action.FAIL),
    (403, Action.FAIL),
    (404, Action.FAIL),
    (405, Action.FAIL),
    (409, Action.FAIL),
    (413, Action.FAIL),
    (422, Action.FAIL),
    (451, Action.FAIL),
]


@pytest.mark.parametrize(("status", "action"), TABLE)
def test_answer_table(status: int | None, action: Action) -> None:
    assert action_for(status) is action


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        (None, None),
        ("120", timedelta(seconds=120)),
        (" 0 ", timedelta(0)),
        ("Sun, 29 Nov 2026 12:05:00 GMT", timedelta(minutes=5)),
        ("Sun, 29 Nov 2026 11:00:00 GMT", timedelta(0)),  # in the past: no wait
        ("soon", None),
        ("-5", None),
        # Receivers are not to be trusted: odd digits, huge numbers and far dates are refused
        # or capped, never an error (timedelta overflows past 999999999 days).
        ("\u00b2", None),  # "²".isdigit() is True; int() refuses it
        ("\u0663", None),  # an Arabic-Indic three: int() takes it; delay-seconds are ASCII
        ("1" * 11, None),
        ("9" * 10, timedelta(days=1)),
        ("9" * 400, None),
        ("Fri, 31 Dec 9999 23:59:59 GMT", timedelta(days=1)),
        ("Sun, 29 Nov 2026 12:05:00 GMT" + " " * 100 + "x", None),
        ("Sun, 99 Nov 2026 12:05:00 GMT", None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(header: str | None, wait) -> None:
    assert retry_after(header, NOW, cap=timedelta(days=1)) == wait


def test_the_default_schedule_and_the_paycorex_one_parse() -> None:
    assert parse_schedule("5s,5m,30m,2h,5h,10h,10h") == tuple(
        timedelta(seconds=s) for s in (5, 300, 1800, 7200, 18000, 36000, 36000)
    )
    assert parse_schedule("2m,4m,8m") == (
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(minutes=8),
    )
    assert parse_schedule("") == ()


@pytest.mark.parametrize("bad", ["5", "5x", "-5s", "1.5h", "5s,,m"])
def test_a_bad_schedule_is_refused_by_name(bad: str) -> None:
    with pytest.raises(SettingsError, match="LAPAK_WEBHOOK_RETRY_SCHEDULE"):
        parse_schedule(bad)


def test_jitter_stretches_each_wait_within_its_percent_and_is_bounded() -> None:
    import base64

    from app.config import Settings
    from modules.webhook.config import WebhookSettings

    def settings(**env: str) -> WebhookSettings:
        overrides = {
            "secret_key": "x" * 40,
            "module_env": env,
            "vault_keys": (base64.urlsafe_b64encode(b"k" * 32).decode(),),
        }
        return WebhookSettings.from_settings(Settings.from_env(environ={}, overrides=overrides))

    exact = settings(webhook_retry_schedule="2m,4m,8m")
    assert [exact.wait_before(n) for n in (1, 2, 3)] == list(parse_schedule("2m,4m,8m"))
    spread = settings(webhook_retry_schedule="10m", webhook_retry_jitter_percent="20")
    waits = {spread.wait_before(1) for _ in range(50)}
    assert all(timedelta(minutes=10) <= w <= timedelta(minutes=12) for w in waits)
    assert len(waits) > 1
    with pytest.raises(SettingsError, match="LAPAK_WEBHOOK_RETRY_JITTER_PERCENT"):
        settings(webhook_retry_jitter_percent="51")
