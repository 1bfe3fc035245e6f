"""``lapak demo``'s history (:mod:`app.demo`): its moments, how the modules' parts are played
at them, and the record that it was played (once per database)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from app import clock
from app.demo import (
    HISTORY_DAYS,
    DemoMoment,
    HistoryStarted,
    activity,
    before_history,
    moments,
    play,
    recorded,
)


@pytest.fixture
def demo_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(redis_url=None)


def test_the_moments_spread_over_the_last_days_oldest_first_and_all_past() -> None:
    now = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)

    planned = moments(now, count=42)

    assert len(planned) == 42
    assert planned == sorted(planned)
    assert len(set(planned)) == 42
    assert planned[-1] < now
    assert (now - planned[0]) < timedelta(days=HISTORY_DAYS - 1)
    assert len({moment.date() for moment in planned}) >= 25
    assert moments(now, count=42) == planned  # seeded: the same history every time


@dataclass
class Part:
    wanted: bool = True
    seen: list[tuple[int, datetime]] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    #: The moment at which the step raises (an interrupted run), if any.
    fails_at: int | None = None

    def activity(self) -> list[str]:
        return self.found

    def step(self, moment: DemoMoment) -> None:
        assert abs(clock.now() - moment.at) < timedelta(seconds=5)
        if moment.index == self.fails_at:
            raise KeyboardInterrupt
        self.seen.append((moment.index, clock.now()))

    def summary(self) -> list[str]:
        return []


def test_play_steps_the_wanted_parts_at_each_moment_with_the_clock_there(
    demo_app: Flask,
) -> None:
    first, already, second = Part(), Part(wanted=False), Part()
    entered: list[datetime] = []

    class Moment:
        def __enter__(self) -> None:
            entered.append(clock.now())

        def __exit__(self, *_: object) -> None:
            pass

    with demo_app.app_context():
        assert recorded() is None
        played = play([first, already, second], each_moment=Moment, count=6)
        done = recorded()

    assert played == 6
    assert done is not None
    assert not done.interrupted
    assert done.started_at <= done.finished_at  # type: ignore[operator]
    assert [index for index, _ in first.seen] == [0, 1, 2, 3, 4, 5]
    assert [index for index, _ in second.seen] == [0, 1, 2, 3, 4, 5]
    assert already.seen == []
    times = [at for _, at in first.seen]
    assert times == sorted(times)
    assert times[-1] < clock.now()
    assert len(entered) == 6
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)  # the clock is back


def test_nothing_is_played_nor_recorded_when_no_part_is_wanted(demo_app: Flask) -> None:
    with demo_app.app_context():
        assert play([Part(wanted=False)], count=6) == 0
        assert recorded() is None


def test_a_run_interrupted_by_a_step_stays_recorded_as_started_and_the_clock_is_back(
    demo_app: Flask,
) -> None:
    interrupted = Part(fails_at=3)
    with demo_app.app_context():
        with pytest.raises(KeyboardInterrupt):
            play([Part(), interrupted], count=6)
        assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)
        assert [index for index, _ in interrupted.seen] == [0, 1, 2]
        earlier = recorded()
        assert earlier is not None
        assert earlier.interrupted

        # The history is not played on top of a partial one, even if the caller did not look.
        again = Part()
        with pytest.raises(HistoryStarted, match="another `lapak demo` started the history"):
            play([again], count=6)
        assert again.seen == []
        assert recorded() == earlier


def test_activity_gathers_what_every_part_finds_each_line_once() -> None:
    parts = [Part(found=["3 orders", "5 ledger transactions"]), Part(wanted=False),
             Part(found=["5 ledger transactions", "1 seller settlement"])]  # fmt: skip
    assert activity(parts) == ["3 orders", "5 ledger transactions", "1 seller settlement"]


def test_before_history_dates_what_is_made_before_the_first_moment() -> None:
    with before_history():
        made = clock.now()
    assert made < moments(clock.now())[0]
