"""``lapak demo``'s history (:mod:`app.demo`): its moments, and how the modules' parts are
played at them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app import clock
from app.demo import HISTORY_DAYS, DemoMoment, before_history, moments, play


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

    def step(self, moment: DemoMoment) -> None:
        assert abs(clock.now() - moment.at) < timedelta(seconds=5)
        self.seen.append((moment.index, clock.now()))

    def summary(self) -> list[str]:
        return []


def test_play_steps_the_wanted_parts_at_each_moment_with_the_clock_there() -> None:
    first, already, second = Part(), Part(wanted=False), Part()
    entered: list[datetime] = []

    class Moment:
        def __enter__(self) -> None:
            entered.append(clock.now())

        def __exit__(self, *_: object) -> None:
            pass

    played = play([first, already, second], each_moment=Moment, count=6)

    assert played == 6
    assert [index for index, _ in first.seen] == [0, 1, 2, 3, 4, 5]
    assert [index for index, _ in second.seen] == [0, 1, 2, 3, 4, 5]
    assert already.seen == []
    times = [at for _, at in first.seen]
    assert times == sorted(times)
    assert times[-1] < clock.now()
    assert len(entered) == 6
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)  # the clock is back


def test_nothing_is_played_when_every_part_is_there_already() -> None:
    assert play([Part(wanted=False)], count=6) == 0


def test_before_history_dates_what_is_made_before_the_first_moment() -> None:
    with before_history():
        made = clock.now()
    assert made < moments(clock.now())[0]
