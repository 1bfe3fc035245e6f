"""``lapak demo``: a small catalogue to place orders against without a feed."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select

from app.db import Session, transaction

from .models import Product

DEMO_SOURCE = "demo"
#: Name, province, city, size, price in IDR: the shape and price range of the commodity feed.
DEMO_PRODUCTS = (
    ("BANDENG", "JAWA BARAT", "BANDUNG", "100", "37000"),
    ("LELE", "DKI JAKARTA", "JAKARTA BARAT", "30", "24000"),
    ("KAKAP", "JAWA BARAT", "CILILIN", "100", "116000"),
    ("TONGKOL", "ACEH", "ACEH KOTA", "60", "32500"),
    ("UDANG VANAME", "JAWA TIMUR", "SURABAYA", "50", "81000"),
)


#: Demo products get fixed ids, so the documented example order can be placed against them.
DEMO_NAMESPACE = uuid.UUID("6b1f3c52-2f4e-4d55-9a52-0f2f8e3c1a10")


def demo_product_id(name: str) -> uuid.UUID:
    """The fixed id of the demo product called ``name``."""
    return uuid.uuid5(DEMO_NAMESPACE, name)


def load_demo() -> list[str]:
    """Create the demo products once; later runs leave the catalogue alone."""
    with transaction():
        session = Session()
        existing = session.scalar(
            select(func.count()).select_from(Product).where(Product.source == DEMO_SOURCE)
        )
        if existing:
            return [f"Demo catalogue: {existing} products already there."]
        for name, province, city, size, price in DEMO_PRODUCTS:
            session.add(
                Product(
                    uuid=demo_product_id(name),
                    name=name,
                    province=province,
                    city=city,
                    size=Decimal(size),
                    list_price=Decimal(price),
                    source=DEMO_SOURCE,
                )
            )
    return [
        f"Demo catalogue: {len(DEMO_PRODUCTS)} products "
        "(GET /api/v1/marketplace/products; sync the feed with POST .../products/sync)."
    ]
