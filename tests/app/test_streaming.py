"""The stream slots of a process: at most ``LAPAK_WEB_STREAMS`` at once, and a stop ends them."""

from __future__ import annotations

import pytest

from app.errors import ServiceUnavailable
from app.streaming import Streams, StreamsFull


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
