"""The throttle's counting in this process (no Redis): bounded however many keys it meets, and
counting per IP only when asked to (the payment links' guesses)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from app.errors import TooManyRequests
from modules.auth.throttle import LoginThrottle


@dataclass(frozen=True)
class Limits:
    max_account_failures: int = 3
    max_ip_failures: int = 5
    failure_window_seconds: int = 900
    lockout_seconds: int = 60
    max_lockout_seconds: int = 3600


def keys(throttle: LoginThrottle) -> int:
    memory = throttle._memory
    return len(memory.counts) + len(memory.locks)


def test_a_flood_of_addresses_never_grows_the_counters_past_their_bound() -> None:
    throttle = LoginThrottle(Limits(), None, per_account=False, memory_keys=1000)
    for n in range(20_000):  # each guess from an address of its own (IPv6 makes plenty)
        throttle.reserve("", f"2001:db8::{n:x}")
        assert keys(throttle) <= 1000
    # The newest addresses are still counted.
    for _ in range(4):
        throttle.reserve("", "2001:db8::4e1f")
    with pytest.raises(TooManyRequests):
        throttle.reserve("", "2001:db8::4e1f")


def test_counts_past_their_window_are_dropped_first(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = Limits(failure_window_seconds=60, lockout_seconds=600)
    throttle = LoginThrottle(limits, None, memory_keys=100)
    for n in range(5):
        for _ in range(3):  # the third failure locks the account
            throttle.reserve(f"locked{n}@example.test", None)
    later = time.monotonic() + 120
    monkeypatch.setattr(time, "monotonic", lambda: later)
    for n in range(200):
        throttle.reserve(f"guess{n}@example.test", None)
    assert keys(throttle) <= 100
    # Expired windows went first: none of the old counts is left, the lockouts still hold.
    assert not any(key for key in throttle._memory.counts if "locked" in key)
    assert len(throttle._memory.locks) == 5


def test_counting_per_ip_only_never_locks_an_account() -> None:
    throttle = LoginThrottle(Limits(), None, per_account=False)
    for n in range(5):  # one "account" (a link's token) asked for from many addresses
        throttle.reserve("the-same-token", f"10.0.0.{n}")
        throttle.reserve("the-same-token", f"10.0.0.{n}")
    throttle.check("the-same-token", "10.0.1.1")  # a new address: not locked
    assert not any(":account:" in key for key in throttle._memory.counts)
    for _ in range(5):
        throttle.reserve("another", "10.0.9.9")
    with pytest.raises(TooManyRequests):
        throttle.reserve("yet another", "10.0.9.9")  # the address is what is locked
    # A success gives the address's count back and forgets nothing else.
    quiet = LoginThrottle(Limits(), None, per_account=False)
    quiet.reserve("x", "10.1.1.1")
    quiet.succeeded("x", "10.1.1.1")
    assert keys(quiet) == 0


def test_without_an_address_requests_share_one_count_per_ip_only() -> None:
    throttle = LoginThrottle(Limits(), None, per_account=False)
    for n in range(5):
        throttle.reserve(f"t{n}", None)
    with pytest.raises(TooManyRequests):
        throttle.reserve("t9", None)
