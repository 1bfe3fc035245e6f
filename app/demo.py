"""``lapak demo``'s history: a few weeks of a marketplace's life, made through the modules' own
services at moments in the past.

``lapak demo`` first runs every module's ``hooks.demo`` step (users, catalogue, keys), then plays
the history: :data:`MOMENTS` moments spread over the last :data:`HISTORY_DAYS` days, oldest
first. At each, :func:`app.clock.now` reads that moment (:func:`app.clock.travel`) and every module
that added a part with ``hooks.demo_history`` takes its step, in load order: a customer orders,
staff confirm a transfer, the demo gateway reports, a seller's hold is released. Nothing is
written behind the services' back: every record, ledger posting and event is the one the API
would make, dated by the clock they all read, so the ledger's hash chain, the documents' numbers
and the dashboard's days follow the history in order.

The caller may run the in-process jobs the steps queued (the outbox's dispatch: the dashboard's
rollups, the webhooks' fan-out) at the end of each moment, so that they run at that moment too.

The history is played once per database, and only on one with no business history yet: the
core records it in ``core_demo_run`` (:class:`DemoRun`), marked started before its first moment
and finished after its last, and never plays it again on top of either. A run interrupted in
between (Ctrl-C, a step that failed) leaves a partial history, which is left alone: the whole
demo needs an empty database. A database whose modules already hold orders or ledger postings
(:meth:`DemoHistory.activity`) does not get the history either: dated over the last weeks, it
would go before them, and the ledger's chain would go back in time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Integer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from app import clock
from app.db import Base, Session, transaction

#: The history covers this many days, today included (the dashboard's default period is 30).
HISTORY_DAYS = 30
#: Moments of the history: about one and a half a day.
MOMENTS = 42


@dataclass(frozen=True)
class DemoMoment:
    """One moment of the history, as a module's step sees it (``clock.now()`` is ``at``)."""

    #: 0 for the oldest, ``count - 1`` for the newest.
    index: int
    count: int
    at: datetime


class DemoHistory(Protocol):
    """A module's part of the history (what its ``hooks.demo_history`` start function returns)."""

    #: False when the module's part cannot be played here (e.g. the demo users are missing): it
    #: then takes no step, and its summary says why.
    wanted: bool

    def activity(self) -> list[str]:
        """What the module's tables already hold that the history would be dated before, e.g.
        ``["3 orders"]`` (orders, payments, ledger postings, payouts: what has a date a reader
        expects in order); empty when they hold none. Any part's answer leaves the whole history
        out. Asked before the history is played, whether the part is wanted or not."""

    def step(self, moment: DemoMoment) -> None:
        """Do what happens at ``moment``, through the module's services."""

    def summary(self) -> list[str]:
        """Lines for ``lapak demo`` to print once the history is played: what was made."""


#: ``core_demo_run`` holds one row, this one: a second ``lapak demo`` that would start the
#: history too (at the same time, or after one was interrupted) finds it.
DEMO_RUN_ID = 1


class DemoRun(Base):
    """The demo's history on this database: when it was started, and when it was played whole
    (None while it plays, and for good when that run was interrupted)."""

    __tablename__ = "core_demo_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: When ``lapak demo`` started playing it (the real time, not a moment of the history).
    started_at: Mapped[datetime]
    #: The history's first moment.
    first_moment: Mapped[datetime]
    finished_at: Mapped[datetime | None]


@dataclass(frozen=True)
class Recorded:
    """What :func:`recorded` found of an earlier history."""

    started_at: datetime
    finished_at: datetime | None

    @property
    def interrupted(self) -> bool:
        """Started and never finished: a partial history (or one playing right now)."""
        return self.finished_at is None


class HistoryStarted(RuntimeError):
    """Another ``lapak demo`` started the history on this database meanwhile."""


def recorded() -> Recorded | None:
    """The demo's history as this database records it, or None if it was never started."""
    with transaction():
        run = Session().get(DemoRun, DEMO_RUN_ID)
        return None if run is None else Recorded(run.started_at, run.finished_at)


def activity(histories: Sequence[DemoHistory]) -> list[str]:
    """What the modules hold already that the history would be dated before (each line once)."""
    lines: list[str] = []
    for history in histories:
        lines += [line for line in history.activity() if line not in lines]
    return lines


def moments(
    now: datetime, count: int = MOMENTS, days: int = HISTORY_DAYS, seed: str = "lapak-demo"
) -> list[datetime]:
    """``count`` moments from ``days - 1`` days before ``now`` to a few hours before it, oldest
    first: each in its own equal slot of that span, at a (seeded) random point inside it."""
    chance = random.Random(seed)  # noqa: S311 - spreads demo moments, protects nothing
    start = now - timedelta(days=days - 1)
    slot = (now - start) / count
    return [start + slot * (index + 0.1 + 0.8 * chance.random()) for index in range(count)]


def play(
    histories: Sequence[DemoHistory],
    *,
    each_moment: Callable[[], AbstractContextManager[object]] = nullcontext,
    count: int = MOMENTS,
) -> int:
    """Take every wanted history's steps at each moment, oldest first, the clock at that moment,
    inside ``each_moment()`` (entered and left at that moment: e.g. to run the jobs the steps
    queued). Returns how many moments were played (0 when no history is wanted).

    The run is recorded (``core_demo_run``): started before the first moment, finished after
    the last. The caller checks first that the history may be played here (:func:`recorded`,
    :func:`activity`); a history started meanwhile by another run raises
    :class:`HistoryStarted` before any step. A step that raises ends the run unfinished.
    """
    wanted = [history for history in histories if history.wanted]
    if not wanted:
        return 0
    planned = moments(clock.now(), count)
    _started(planned[0])
    for index, at in enumerate(planned):
        with clock.travel(at - clock.now()), each_moment():
            moment = DemoMoment(index, len(planned), clock.now())
            for history in wanted:
                history.step(moment)
    with transaction():
        run = Session().get(DemoRun, DEMO_RUN_ID)
        assert run is not None
        run.finished_at = clock.now()
    return len(planned)


def _started(first_moment: datetime) -> None:
    """Record the history as started (committed before its first step), or raise
    :class:`HistoryStarted` if another run did."""
    try:
        with transaction():
            Session().add(
                DemoRun(id=DEMO_RUN_ID, started_at=clock.now(), first_moment=first_moment)
            )
    except IntegrityError:
        raise HistoryStarted(
            "another `lapak demo` started the history on this database meanwhile"
        ) from None


@contextmanager
def before_history(days: int = HISTORY_DAYS) -> Iterator[None]:
    """Date what the block makes a day before the history begins (the people who take part in
    it: they were there before their first order)."""
    with clock.travel(-timedelta(days=days)):
        yield
