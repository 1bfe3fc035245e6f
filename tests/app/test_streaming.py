"""The stream slots of a process: at most ``LAPAK_WEB_STREAMS`` at once, at most a view's share
per owner, and a stop ends them."""

from __future__ import annotations

import pytest

from app.errors import ServiceUnavailable, TooManyRequests
from app.streaming import Streams, StreamsFull, TooManyStreams


def test_a_stream_beyond_the_capacity_is_refused_until_one_ends() -> None:
    streams = Streams(capacity=2)
    first, _second = streams.open(), streams.open()

    with pytest.raises(StreamsFull) as refused:
        streams.open()
    assert isinstance(refused.value, ServiceUnavailable)  # a 503
    assert refused.value.headers["Retry-After"] == "2"
    assert "LAPAK_WEB_STREAMS" in str(refused.value)

    first.close()
    first.close()  # a second close gives nothing back twice
    assert streams.open_count == 1
    streams.open()
    assert streams.open_count == 2


def test_a_stop_wakes_the_streams_and_refuses_new_ones() -> None:
    streams = Streams(capacity=5)
    woken: list[str] = []

    def broken() -> None:
        raise RuntimeError("one module's callback fails")

    streams.on_stop(broken)
    streams.on_stop(lambda: woken.append("live"))
    streams.stop()

    assert woken == ["live"]
    assert streams.stopping.is_set()
    with pytest.raises(StreamsFull, match="stopping"):
        streams.open()


def test_an_owner_beyond_their_share_is_refused_with_429_and_others_are_not() -> None:
    streams = Streams(capacity=10)
    mine = [streams.open(owner="me", per_owner=2, retry_after=15) for _ in range(2)]

    with pytest.raises(TooManyStreams) as refused:
        streams.open(owner="me", per_owner=2, retry_after=15)
    assert isinstance(refused.value, TooManyRequests)  # a 429: the caller's doing
    assert refused.value.headers["Retry-After"] == "15"
    assert streams.owned_by("me") == 2
    streams.open(owner="someone else", per_owner=2)
    streams.open()  # no owner: only the capacity counts

    mine[0].close()
    mine[0].close()
    assert streams.owned_by("me") == 1
    streams.open(owner="me", per_owner=2)
    assert (streams.open_count, streams.owned_by("me")) == (4, 2)
