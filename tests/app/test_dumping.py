"""fast_dump gives exactly what Schema.dump gives, field type by field type."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import marshmallow as ma
import pytest

from app.dumping import fast_dump


@dataclass
class Line:
    name: str
    quantity: Decimal
    product: Any = None


@dataclass
class Order:
    uuid: uuid.UUID
    number: str | None
    total: Decimal
    placed_at: datetime | None
    paid: bool
    lines: list[Line] = field(default_factory=list)
    main_line: Line | None = None
    tags: list[str] | None = None


class LineSchema(ma.Schema):
    name = ma.fields.String()
    quantity = ma.fields.Decimal(as_string=True)
    product = ma.fields.UUID(attribute="product.uuid", allow_none=True)  # dotted


class OrderSchema(ma.Schema):
    id = ma.fields.UUID(attribute="uuid")
    number = ma.fields.String(allow_none=True, data_key="name")
    total = ma.fields.Decimal(places=2, as_string=True)
    placed_at = ma.fields.DateTime(allow_none=True)
    paid = ma.fields.Boolean()
    lines = ma.fields.List(ma.fields.Nested(LineSchema))
    lines_again = ma.fields.Nested(LineSchema, many=True, attribute="lines", dump_only=True)
    main_line = ma.fields.Nested(LineSchema, allow_none=True)
    only_names = ma.fields.Nested(
        LineSchema, many=True, only=("name",), attribute="lines", dump_only=True
    )
    tags = ma.fields.List(ma.fields.String(), allow_none=True)
    shout = ma.fields.Function(lambda order: (order.number or "").upper())
    count = ma.fields.Method("line_count")
    absent = ma.fields.String(dump_default="none given")
    absent_quietly = ma.fields.String()

    def line_count(self, order: Order) -> int:
        return len(order.lines)


@dataclass
class Product:
    uuid: uuid.UUID


def orders() -> list[Order]:
    line = Line("Beras", Decimal("2.500"), Product(uuid.uuid4()))
    return [
        Order(
            uuid.uuid4(),
            "SO/2026/00001",
            Decimal("12345.6"),
            datetime(2026, 11, 29, 8, 30, tzinfo=UTC),
            True,
            [line, Line("Gula", Decimal(1))],
            line,
            ["a", "b"],
        ),
        Order(uuid.uuid4(), None, Decimal(0), None, False),
    ]


@pytest.mark.parametrize("order", orders())
def test_it_dumps_as_the_schema_does(order: Order) -> None:
    schema = OrderSchema()
    assert fast_dump(schema)(order) == schema.dump(order)
    assert list(fast_dump(schema)(order)) == list(schema.dump(order))  # the same key order


def test_a_mapping_and_a_schema_with_hooks_go_through_marshmallow() -> None:
    class Hooked(OrderSchema):
        @ma.post_dump
        def mark(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            return {**data, "hooked": True}

    order = orders()[0]
    assert fast_dump(Hooked())(order)["hooked"] is True
    as_mapping = {"uuid": order.uuid, "number": "X", "total": Decimal(1), "placed_at": None,
                  "paid": False, "lines": []}  # fmt: skip
    assert fast_dump(LineSchema())({"name": "n", "quantity": Decimal(1)}) == LineSchema().dump(
        {"name": "n", "quantity": Decimal(1)}
    )
    assert fast_dump(OrderSchema(only=("id", "number", "total")))(as_mapping) == OrderSchema(
        only=("id", "number", "total")
    ).dump(as_mapping)
