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

A module's part is made once: its history says it is not ``wanted`` when the module finds it
there (by a mark only its history writes, such as a payment reference), and is then left alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from app import clock

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

    #: False when the module's part is there already: it then takes no step.
    wanted: bool

    def step(self, moment: DemoMoment) -> None:
        """Do what happens at ``moment``, through the module's services."""

    def summary(self) -> list[str]:
        """Lines for ``lapak demo`` to print: what was made, or that it was there already."""


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
    queued). Returns how many moments were played (0 when no history is wanted)."""
    wanted = [history for history in histories if history.wanted]
    if not wanted:
        return 0
    planned = moments(clock.now(), count)
    for index, at in enumerate(planned):
        with clock.travel(at - clock.now()), each_moment():
            moment = DemoMoment(index, len(planned), clock.now())
            for history in wanted:
                history.step(moment)
    return len(planned)


@contextmanager
def before_history(days: int = HISTORY_DAYS) -> Iterator[None]:
    """Date what the block makes a day before the history begins (the people who take part in
    it: they were there before their first order)."""
    with clock.travel(-timedelta(days=days)):
        yield
