"""``app.screens.load_form``: a screen reads its query or form with the API endpoint's own schema,
under the fields' data keys, list fields (checkboxes) included."""

from __future__ import annotations

import marshmallow as ma
import pytest
from werkzeug.datastructures import MultiDict

from app.errors import Invalid
from app.screens import load_form


class KeySchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(max=5))
    scopes = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=3)), load_default=list)


def test_a_list_field_takes_every_value_sent_under_its_name() -> None:
    form = MultiDict([("name", " key "), ("scopes", "a"), ("scopes", " "), ("scopes", "b ")])
    assert load_form(KeySchema(), form) == {"name": "key", "scopes": ["a", "b"]}


def test_a_list_with_no_value_is_left_out_as_a_blank_field_is() -> None:
    assert load_form(KeySchema(), MultiDict([("name", "k"), ("csrf_token", "t")])) == {
        "name": "k",
        "scopes": [],
    }


def test_a_refused_item_is_named_by_its_list_and_index() -> None:
    with pytest.raises(Invalid) as refused:
        load_form(KeySchema(), MultiDict([("name", "k"), ("scopes", "ok"), ("scopes", "long")]))
    assert refused.value.errors == {"scopes.1": "Longer than maximum length 3."}


def test_a_list_field_is_read_from_a_multidict_only() -> None:
    assert load_form(KeySchema(), {"name": "k", "scopes": "a"}) == {"name": "k", "scopes": []}


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


@pytest.mark.parametrize("text", ["nul\x00byte", "bell\x07", "lone \ud800 surrogate"])
def test_text_the_database_cannot_store_is_refused_in_a_field_and_in_a_list(text: str) -> None:
    for form in (
        MultiDict([("name", text)]),
        MultiDict([("name", "k"), ("scopes", "ok"), ("scopes", text)]),
    ):
        with pytest.raises(Invalid) as refused:
            load_form(KeySchema(), form)
        (field,) = refused.value.errors
        assert refused.value.errors[field].startswith("contains a control character")
        assert field == ("name" if form["name"] == text else "scopes")
