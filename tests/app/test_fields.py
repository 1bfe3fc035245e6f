"""The decimal field takes what its OpenAPI declaration admits, and nothing a float blurs."""

from __future__ import annotations

from decimal import Decimal

import marshmallow as ma
import pytest
from sqlalchemy import Numeric

from app.fields import DecimalString

FIELD = DecimalString(Numeric(18, 2))


@pytest.mark.parametrize(
    ("sent", "loaded"),
    [("12.50", Decimal("12.50")), (12, Decimal(12)), (12.0, Decimal(12)), (0.0, Decimal(0))],
)
def test_a_whole_json_number_is_taken_as_the_document_admits_it(
    sent: object, loaded: Decimal
) -> None:
    assert FIELD.deserialize(sent) == loaded


@pytest.mark.parametrize("sent", [12.5, 2.0**53, float("inf"), float("nan"), -1.0, True])
def test_a_float_that_is_not_an_exact_whole_number_is_refused(sent: object) -> None:
    with pytest.raises(ma.ValidationError):
        FIELD.deserialize(sent)
