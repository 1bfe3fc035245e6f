"""The README's "verify our webhooks" snippet accepts our deliveries and nothing else."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from modules.webhook.sending import message_body
from modules.webhook.signing import new_secret, signature_header

README = Path(__file__).resolve().parents[3] / "README.md"


def snippet() -> Any:
    text = README.read_text()
    found = re.search(r"<!-- verify-webhooks -->\n```python\n(.*?)```", text, re.S)
    assert found, "the README lost its verify-webhooks snippet"
    namespace: dict[str, Any] = {}
    exec(compile(found[1], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace["verify_lapak_webhook"]


def delivery(secrets: list[str], timestamp: int) -> tuple[dict[str, str], bytes]:
    from datetime import UTC, datetime

    body = message_body(
        "0b0e9c1e-6c2c-4f0e-9a55-0d3c2b1f5a10",
        "order.confirmed",
        datetime(2026, 11, 29, tzinfo=UTC),
        {"order": "x", "amount": "1.00"},
    )
    headers = {
        "Webhook-Id": "0b0e9c1e-6c2c-4f0e-9a55-0d3c2b1f5a10",
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": signature_header(
            secrets, "0b0e9c1e-6c2c-4f0e-9a55-0d3c2b1f5a10", timestamp, body
        ),
    }
    return headers, body


def test_the_readme_snippet_verifies_our_signatures_and_refuses_the_rest() -> None:
    verify = snippet()
    secret, old = new_secret(), new_secret()
    now = int(time.time())
    headers, body = delivery([secret], now)
    assert verify(secret, headers, body) is True
    rotated_headers, _ = delivery([secret, old], now)
    assert verify(old, rotated_headers, body) is True
    assert verify(secret, rotated_headers, body) is True
    assert verify(new_secret(), headers, body) is False
    assert verify(secret, headers, body + b" ") is False
    assert verify(secret, {**headers, "Webhook-Id": "other"}, body) is False
    stale, _ = delivery([secret], now - 301)
    assert verify(secret, stale, body) is False
    ahead, _ = delivery([secret], now + 301)
    assert verify(secret, ahead, body) is False
    assert (
        verify(secret, {k: v for k, v in headers.items() if k != "Webhook-Signature"}, body)
        is False
    )
    # Forged headers are refused, never an error: a non-ASCII signature, odd digits.
    assert verify(secret, {**headers, "Webhook-Signature": "v1,\u00e9t\u00e9"}, body) is False
    assert verify(secret, {**headers, "Webhook-Timestamp": "\u00b2"}, body) is False
