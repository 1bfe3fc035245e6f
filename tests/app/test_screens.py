"""``app.screens``: a screen reads its query or form with the API endpoint's own schema."""

from __future__ import annotations

import marshmallow as ma
import pytest

from app.errors import Invalid
from app.screens import load_form


class Window(ma.Schema):
    since = ma.fields.Date(data_key="from", load_default=None)
    limit = ma.fields.Integer(load_default=10)


def test_a_field_is_read_under_its_data_key_and_other_names_are_ignored() -> None:
    loaded = load_form(Window(), {"from": "2026-01-02", "since": "1999-01-01", "csrf_token": "x"})

    assert loaded == {"since": ma.fields.Date().deserialize("2026-01-02"), "limit": 10}


def test_a_refusal_names_the_field_as_it_was_sent() -> None:
    with pytest.raises(Invalid) as refused:
        load_form(Window(), {"from": "yesterday", "limit": " "})

    assert refused.value.errors == {"from": "Not a valid date."}
    assert refused.value.detail == "From: Not a valid date."
