"""``app.clock``: travels nest in one thread, and a second thread cannot travel meanwhile."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from app import clock


def off_by() -> timedelta:
    return clock.now() - datetime.now(UTC)


def test_nested_travels_each_restore_the_offset_they_found() -> None:
    with clock.travel(timedelta(days=-30)):
        assert abs(off_by() + timedelta(days=30)) < timedelta(seconds=1)
        with clock.travel(timedelta(hours=5)):
            assert abs(off_by() + timedelta(days=30, hours=-5)) < timedelta(seconds=1)
        assert abs(off_by() + timedelta(days=30)) < timedelta(seconds=1)
    assert abs(off_by()) < timedelta(seconds=1)


def test_a_second_thread_cannot_travel_while_one_does_and_the_clock_comes_back() -> None:
    inside, leave = threading.Event(), threading.Event()
    seen: list[BaseException] = []

    def travel_a_day() -> None:
        try:
            with clock.travel(timedelta(days=1)):
                inside.set()
                leave.wait(10)
        except BaseException as error:  # pragma: no cover - reported below
            seen.append(error)

    other = threading.Thread(target=travel_a_day)
    other.start()
    try:
        assert inside.wait(10)
        # Interleaved, the two travels would leave the clock a day ahead once both ended.
        with (
            pytest.raises(RuntimeError, match="another thread is travelling"),
            clock.travel(timedelta(hours=2)),
        ):
            pass  # pragma: no cover
    finally:
        leave.set()
        other.join(10)
    assert seen == []
    assert abs(off_by()) < timedelta(seconds=1)
    with clock.travel(timedelta(hours=2)):  # free again once the other thread is back
        assert abs(off_by() - timedelta(hours=2)) < timedelta(seconds=1)
    assert abs(off_by()) < timedelta(seconds=1)
