"""Request fields shared by every module: what the database can store, checked at the door.

* :class:`DecimalString`: a decimal bounded by its column's ``NUMERIC(precision, scale)``, sent
  as a string (``"12.50"``) or a whole JSON number, never a float. Its OpenAPI ``pattern`` is
  exactly the rule the server applies, so a generated client (or a fuzzer) and the server agree.
* :data:`UNSTORABLE_TEXT`: characters no string field may carry (the request parser in
  ``app/reading.py`` applies it to every string of every body, query and form, once).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Protocol

import marshmallow as ma

#: NUL (PostgreSQL text cannot hold it), the other C0 controls but tab, line feed and carriage
#: return (never meaningful in a name or a reference; they break CSV exports and logs), and
#: lone UTF-16 surrogates (``"\ud800"`` in JSON): they cannot be encoded as UTF-8 at all.
UNSTORABLE_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
UNSTORABLE_TEXT_MESSAGE = (
    "contains a control character (NUL, U+0001-U+001F but tab and line breaks) or an unpaired "
    "surrogate, which cannot be stored"
)

#: Longest decimal string accepted (trailing zeros after the point included).
MAX_DECIMAL_CHARS = 40


class NumericType(Protocol):
    """What :class:`DecimalString` needs of a column type: SQLAlchemy's ``Numeric(p, s)``."""

    precision: int | None
    scale: int | None


def decimal_pattern(precision: int, scale: int) -> str:
    """The regular expression of a non-negative decimal string that fits ``NUMERIC(p, s)``.

    At most ``p - s`` digits before the point and ``s`` after it, trailing zeros aside
    (``"12.500"`` fits two places: it is 12.50).
    """
    whole = f"[0-9]{{1,{precision - scale}}}"
    if scale == 0:
        return f"^{whole}(\\.0*)?$"
    return f"^{whole}(\\.[0-9]{{1,{scale}}}0*)?$"


class DecimalString(ma.fields.Field):
    """A non-negative decimal that fits ``column`` (a ``Numeric(precision, scale)``).

    Loads a string matching :func:`decimal_pattern` or a whole JSON number (``12`` or ``12.0``)
    with at most ``precision - scale`` digits; a JSON number with a fraction has already been
    through a float and is refused. Dumps the plain digits (``"12.50"``).
    """

    default_error_messages = {
        "invalid": "a decimal number as a string with at most {whole} digits before the point "
        'and {scale} after it, like "{example}"',
        "float": 'send decimals as strings ("{example}"): a JSON number with a fraction is a float',
    }

    def __init__(self, column: NumericType, **kwargs: Any) -> None:
        if column.precision is None or column.scale is None:
            raise TypeError("DecimalString needs a Numeric column type with precision and scale")
        self.precision, self.scale = column.precision, column.scale
        self.whole_digits = self.precision - self.scale
        self.pattern = re.compile(decimal_pattern(self.precision, self.scale))
        self.example = "12" if self.scale == 0 else "12." + "5".ljust(self.scale, "0")
        metadata = {
            # A whole JSON number is accepted too: declare it, so the document tells the truth.
            "type": ["string", "integer"],
            "pattern": self.pattern.pattern,
            "maxLength": MAX_DECIMAL_CHARS,
            "minimum": 0,
            "maximum": 10**self.whole_digits - 1,
            "example": self.example,
        }
        metadata.update(kwargs.pop("metadata", None) or {})
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, float):
            # JSON Schema calls 12.0 an integer, so the document admits it; below 2**53 a float
            # holds every whole number exactly, so nothing is lost in taking it as one.
            if not (value.is_integer() and abs(value) < 2**53):
                raise self._error("float")
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < 10**self.whole_digits:
                return Decimal(value)
            raise self._error("invalid")
        if (
            not isinstance(value, str)
            or len(value) > MAX_DECIMAL_CHARS
            or not self.pattern.fullmatch(value)
        ):
            raise self._error("invalid")
        return Decimal(value)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format(value, "f")

    def _error(self, key: str) -> ma.ValidationError:
        return self.make_error(key, whole=self.whole_digits, scale=self.scale, example=self.example)
