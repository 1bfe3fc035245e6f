"""Phone numbers as people type them, stored as E.164 (``+628123456789``).

The rule, the same for the API, the CLI and imports: a number with ``+`` or ``00`` in front is
international (the country code follows); any other number is national in
``LAPAK_DEFAULT_PHONE_REGION`` (default ``ID``), with or without its trunk ``0``: in Indonesia
``08123456789`` and ``8123456789`` are both ``+628123456789``. So ``628123456789`` without
``+`` is read as a national number, as a phone in Indonesia would dial it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import current_app

from app.config import Settings, SettingsError
from app.errors import Invalid

_SEPARATORS = re.compile(r"[\s().-]")
_E164_DIGITS = re.compile(r"[1-9][0-9]{7,14}")  # without the +: ASCII digits only
MAX_SHOWN = 40


@dataclass(frozen=True)
class PhoneRegion:
    """A region's calling code, and the trunk prefix its national numbers are written with."""

    code: str
    calling_code: str
    trunk_prefix: str = "0"


#: The regions LAPAK_DEFAULT_PHONE_REGION accepts (ISO 3166 codes); add one when needed.
REGIONS = {
    region.code: region
    for region in (
        PhoneRegion("ID", "62"),
        PhoneRegion("MY", "60"),
        PhoneRegion("SG", "65", ""),
        PhoneRegion("PH", "63"),
        PhoneRegion("TH", "66"),
        PhoneRegion("VN", "84"),
        PhoneRegion("TL", "670", ""),
        PhoneRegion("AU", "61"),
        PhoneRegion("NZ", "64"),
        PhoneRegion("JP", "81"),
        PhoneRegion("KR", "82"),
        PhoneRegion("CN", "86"),
        PhoneRegion("HK", "852", ""),
        PhoneRegion("IN", "91"),
        PhoneRegion("SA", "966"),
        PhoneRegion("AE", "971"),
        PhoneRegion("NL", "31"),
        PhoneRegion("DE", "49"),
        PhoneRegion("FR", "33"),
        PhoneRegion("GB", "44"),
        PhoneRegion("US", "1", "1"),
    )
}
DEFAULT_REGION = "ID"


def install(app: Any, settings: Settings) -> None:
    app.extensions["user.phone_region"] = region_from_settings(settings)


def region_from_settings(settings: Settings) -> PhoneRegion:
    code = settings.module_env.get("default_phone_region", DEFAULT_REGION).strip().upper()
    if code not in REGIONS:
        raise SettingsError(
            f"LAPAK_DEFAULT_PHONE_REGION={code!r} is not one of {', '.join(sorted(REGIONS))}"
        )
    return REGIONS[code]


def default_region() -> PhoneRegion:
    return current_app.extensions["user.phone_region"]


def normalize_phone(raw: str | None, region: PhoneRegion | None = None) -> str | None:
    """E.164 for ``raw`` (national numbers in ``region``, default the setting's); None if empty.

    ``Invalid`` (``errors["phone"]``) says how numbers are read when ``raw`` is not one.
    """
    if raw is None or not raw.strip():
        return None
    digits = _SEPARATORS.sub("", raw.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    else:
        region = region or default_region()
        if region.trunk_prefix and digits.startswith(region.trunk_prefix):
            digits = digits[len(region.trunk_prefix) :]
        digits = region.calling_code + digits
    if not _E164_DIGITS.fullmatch(digits):
        raise Invalid(errors={"phone": [unreadable(raw, region or default_region())]})
    return f"+{digits}"


def unreadable(raw: str, region: PhoneRegion) -> str:
    shown = raw.strip() if len(raw.strip()) <= MAX_SHOWN else raw.strip()[:MAX_SHOWN] + "..."
    example = " (08123456789 or 8123456789)" if region.code == "ID" else ""
    return (
        f"{shown!r} is not a phone number: write international numbers with + or 00 and the "
        "country code (+628123456789); numbers without them are read as national numbers of "
        f"{region.code}{example}, the region set by LAPAK_DEFAULT_PHONE_REGION"
    )
