"""``fast_dump(schema)``: what ``schema.dump`` returns, with less of marshmallow's per-field work.

``Schema.dump`` asks every field to look its value up through the generic accessor (dotted
paths, mappings, defaults) before formatting it. For records whose fields are plain attributes
that lookup is most of the cost; on the busiest answers (an order placed: some sixty fields in
six nested schemas) it is about as much as a database round trip. The dumper built here reads a
plain attribute with ``getattr`` and hands it straight to the field's own ``_serialize``, so
every value is formatted by the field that formats it for ``dump``; anything else (dotted
attributes, mappings, a missing value with its default, fields that read the object
themselves) takes the field's ordinary ``serialize``. A schema with dump hooks, or its own
attribute accessor, is dumped by marshmallow as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma

Dumper = Callable[[Any], dict[str, Any]]

_MISSING = object()


def fast_dump(schema: ma.Schema) -> Dumper:
    """A function that returns ``schema.dump(obj)`` for one object (not ``many``)."""
    if _has_dump_hooks(schema) or type(schema).get_attribute is not ma.Schema.get_attribute:
        return schema.dump
    steps = [_step(schema, name, field) for name, field in schema.dump_fields.items()]

    def dump(obj: Any) -> dict[str, Any]:
        if isinstance(obj, Mapping):
            return schema.dump(obj)
        out: dict[str, Any] = {}
        for step in steps:
            step(obj, out)
        return out

    return dump


def _has_dump_hooks(schema: ma.Schema) -> bool:
    hooks = getattr(schema, "_hooks", {})
    return any(hooks.get(kind) for kind in ("pre_dump", "post_dump"))


def _step(schema: ma.Schema, name: str, field: ma.fields.Field) -> Callable[[Any, dict], None]:
    key = field.data_key if field.data_key is not None else name
    attribute = field.attribute if field.attribute is not None else name

    def generic(obj: Any, out: dict[str, Any]) -> None:
        value = field.serialize(name, obj, accessor=schema.get_attribute)
        if value is not ma.missing:
            out[key] = value

    plain = (
        field._CHECK_ATTRIBUTE
        and "." not in attribute
        and type(field).serialize is ma.fields.Field.serialize
        and type(field).get_value is ma.fields.Field.get_value
    )
    if not plain:
        return generic
    format_value = _formatter(field, name)

    def direct(obj: Any, out: dict[str, Any]) -> None:
        value = getattr(obj, attribute, _MISSING)
        if value is _MISSING:
            generic(obj, out)  # the field's default, or nothing
        else:
            out[key] = format_value(value, obj)

    return direct


def _formatter(field: ma.fields.Field, name: str) -> Callable[[Any, Any], Any]:
    """How the field formats a value it has read: nested schemas dumped by their own fast
    dumper, every other field by its ``_serialize``."""
    if type(field) is ma.fields.Nested and not (field.only or field.exclude):
        inner = fast_dump(field.schema)
        if field.many:
            return lambda value, _obj: None if value is None else [inner(v) for v in value]
        return lambda value, _obj: None if value is None else inner(value)
    if type(field) is ma.fields.List and type(field.inner) is ma.fields.Nested:
        nested = field.inner
        if not (nested.only or nested.exclude or nested.many):
            item = fast_dump(nested.schema)
            return lambda value, _obj: None if value is None else [item(v) for v in value]
    return lambda value, obj: field._serialize(value, name, obj)
