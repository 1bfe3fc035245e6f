"""``app.screens.load_form``: a form read with an API schema, list fields (checkboxes) included."""

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
