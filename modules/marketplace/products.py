"""The catalogue: products made from the commodity feed, or by admins and sellers.

A sync (:func:`request_sync`, then the :func:`run_sync` job) makes the catalogue match a feed
source's cleaned listings in one transaction: listings not seen before become products, changed
names, places, sizes or prices are updated, and products of that source whose listing vanished
are deactivated, never deleted, since old orders keep pointing at them. A listing that comes
back is reactivated.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Select, insert, select, update

from app.db import Session, after_commit, transaction, utcnow
from app.errors import DomainError, Invalid, NotFound, PermissionDenied
from app.http import Page, keyset_page
from app.security import Principal
from modules.fetch.cleaning import normalise_name
from modules.fetch.feeds import feeds
from modules.user.models import User

from .models import Product, ProductSync
from .pricing import round_money

log = logging.getLogger(__name__)

MANAGERS = ("admin", "seller")
EDITABLE = ("name", "province", "city", "size", "list_price", "active")
BATCH = 2000
#: What NUMERIC(18, 2) prices and NUMERIC(14, 3) sizes hold.
MAX_PRICE = Decimal(10) ** 16
MAX_SIZE = Decimal(10) ** 11


#: Why a seller (by user id) may not put products on sale, or None: a module that knows
#: sellers better (``seller``) registers one with :func:`register_seller_gate`.
SellerGate = Callable[[int], str | None]
_GATES = "marketplace.seller_gates"


class SellingNotAllowed(PermissionDenied):
    code = "selling-not-allowed"
    title = "This seller may not put products on sale yet"


def register_seller_gate(app: Flask, gate: SellerGate) -> None:
    """Ask ``gate`` before a product becomes a seller's (from a module's setup: per app)."""
    app.extensions.setdefault(_GATES, []).append(gate)


def _refuse_if_not_selling(actor: Principal, seller_id: int) -> None:
    for gate in current_app.extensions.get(_GATES, ()):
        why = gate(seller_id)
        if why is None:
            continue
        if actor.user_id == seller_id:
            raise SellingNotAllowed(why)
        raise Invalid(why, errors={"seller": why})


@dataclass(frozen=True)
class ProductFilter:
    active: bool | None = None
    name: str | None = None
    province: str | None = None
    city: str | None = None
    source: str | None = None
    seller: uuid.UUID | None = None


def list_products(
    actor: Principal, filters: ProductFilter, *, limit: int, cursor: str | None
) -> Page:
    statement: Select[Any] = select(Product)
    active = filters.active
    if not actor.has_role("admin", "staff", "seller"):
        active = True  # customers only see what they can order
    if active is not None:
        statement = statement.where(Product.active == active)
    if filters.name:
        statement = statement.where(Product.name == normalise_name(filters.name))
    if filters.province:
        statement = statement.where(Product.province == normalise_name(filters.province))
    if filters.city:
        statement = statement.where(Product.city == normalise_name(filters.city))
    if filters.source:
        statement = statement.where(Product.source == filters.source)
    if filters.seller:
        seller_id = select(User.id).where(User.uuid == filters.seller).scalar_subquery()
        statement = statement.where(Product.seller_id == seller_id)
    return keyset_page(statement, [Product.id], limit=limit, cursor=cursor)


def get_product(product_uuid: uuid.UUID) -> Product:
    product = Session().scalars(select(Product).where(Product.uuid == product_uuid)).first()
    if product is None:
        raise NotFound("there is no such product")
    return product


def create_product(actor: Principal, values: dict[str, Any]) -> Product:
    """An admin or a seller adds a product by hand (a seller's own)."""
    with transaction():
        seller_id = _seller_for(actor, values.pop("seller", None))
        if seller_id is not None:
            _refuse_if_not_selling(actor, seller_id)
        product = Product(seller_id=seller_id, **_checked(values))
        Session().add(product)
        Session().flush()
    return product


def update_product(actor: Principal, product_uuid: uuid.UUID, values: dict[str, Any]) -> Product:
    with transaction():
        product = get_product(product_uuid)
        if actor.has_role("seller") and product.seller_id != actor.user_id:
            raise PermissionDenied("sellers change only their own products")
        if "seller" in values:
            seller_id = _seller_for(actor, values.pop("seller"))
            if seller_id is not None and seller_id != product.seller_id:
                _refuse_if_not_selling(actor, seller_id)
            product.seller_id = seller_id
        for name, value in _checked(values).items():
            setattr(product, name, value)
        Session().flush()
    return product


def _checked(values: dict[str, Any]) -> dict[str, Any]:
    checked = {}
    for name, value in values.items():
        if name not in EDITABLE:
            raise Invalid(f"{name} cannot be set", errors={name: "read-only"})
        if name in ("name", "province", "city") and value is not None:
            value = normalise_name(value)
            if name == "name" and not value:
                raise Invalid("a product needs a name", errors={"name": "required"})
        if name == "list_price":
            if not value.is_finite() or value <= 0:
                raise Invalid("a price is more than zero", errors={"list_price": "must be > 0"})
            if value != round_money(value, "IDR"):
                raise Invalid("IDR prices have 2 decimals", errors={"list_price": "2 decimals"})
        if name == "size" and value is not None and (not value.is_finite() or value < 0):
            raise Invalid("a size is zero or more", errors={"size": "must be >= 0"})
        checked[name] = value
    return checked


def _seller_for(actor: Principal, named: uuid.UUID | None) -> int | None:
    if actor.has_role("seller"):
        if named is not None and named != actor.user_uuid:
            raise PermissionDenied("sellers add products for themselves")
        return actor.user_id
    if named is None:
        return None
    seller = Session().scalars(select(User).where(User.uuid == named)).first()
    if seller is None or seller.role != "seller":
        raise Invalid("the seller is unknown or not a seller", errors={"seller": "a seller's id"})
    return seller.id


# -- sync from the feed -------------------------------------------------------------------------


def request_sync(actor: Principal, source: str | None) -> ProductSync:
    """Queue a sync of the catalogue with ``source``; the job runs after this commits."""
    feed = feeds().settings.feed(source)  # 422 for an unknown source, before any job
    with transaction():
        sync = ProductSync(source=feed.source, state="queued", requested_by_id=actor.user_id)
        Session().add(sync)
        Session().flush()
        after_commit(functools.partial(_enqueue_sync, str(sync.uuid)))
    return sync


def _enqueue_sync(sync_uuid: str) -> None:
    from app.jobs import enqueue

    enqueue(run_sync, sync_uuid)


def get_sync(sync_uuid: uuid.UUID) -> ProductSync:
    sync = Session().scalars(select(ProductSync).where(ProductSync.uuid == sync_uuid)).first()
    if sync is None:
        raise NotFound("there is no such sync")
    return sync


def run_sync(sync_uuid: str) -> None:
    """Job: make the catalogue match the source's listings (idempotent; safe to run again)."""
    with transaction():
        sync = (
            Session()
            .scalars(
                select(ProductSync)
                .where(ProductSync.uuid == uuid.UUID(sync_uuid))
                .with_for_update()
            )
            .first()
        )
        if sync is None or sync.state in ("succeeded", "failed"):
            return
        sync.state = "running"
    try:
        snapshot = feeds().snapshot(sync.source)
        with transaction():
            counts = _apply(sync.source, snapshot.prepared.cleaned.listings)
            sync = Session().get(ProductSync, sync.id, with_for_update=True)
            sync.state = "succeeded"
            sync.stale = snapshot.stale
            sync.created, sync.updated = counts["created"], counts["updated"]
            sync.deactivated, sync.unchanged = counts["deactivated"], counts["unchanged"]
            sync.skipped = counts["skipped"]
            sync.finished_at = utcnow()
    except DomainError as failure:
        log.warning("product sync %s failed: %s", sync_uuid, failure.detail or failure.title)
        with transaction():
            sync = Session().get(ProductSync, sync.id, with_for_update=True)
            sync.state = "failed"
            sync.error = (failure.detail or failure.title)[:1000]
            sync.finished_at = utcnow()


def _apply(source: str, listings: list[Any]) -> dict[str, int]:
    session = Session()
    wanted = {listing.uuid: listing for listing in listings}
    existing: dict[str, tuple[Any, ...]] = {}
    columns = (
        Product.id,
        Product.feed_uuid,
        Product.name,
        Product.province,
        Product.city,
        Product.size,
        Product.list_price,
        Product.active,
        Product.source,
    )
    # The source's products (to deactivate the vanished) and any product with a wanted uuid
    # (a listing may have moved from another source).
    rows = session.execute(select(*columns).where(Product.source == source)).all()
    uuids = list(wanted)
    for start in range(0, len(uuids), BATCH):
        chunk = uuids[start : start + BATCH]
        rows += session.execute(select(*columns).where(Product.feed_uuid.in_(chunk))).all()
    for row in rows:
        existing[row.feed_uuid] = tuple(row)
    now = utcnow()
    new, changed = [], []
    unchanged = skipped = 0
    for feed_uuid, listing in wanted.items():
        if listing.price_idr >= MAX_PRICE or (
            listing.size is not None and listing.size >= MAX_SIZE
        ):
            skipped += 1  # a value the catalogue's columns cannot hold is a feed error
            continue
        values = {
            "name": listing.commodity,
            "province": listing.province,
            "city": listing.city,
            "size": _size(listing.size),
            "list_price": round_money(listing.price_idr, "IDR"),
            "active": True,
            "source": source,
        }
        row = existing.get(feed_uuid)
        if row is None:
            new.append({**values, "feed_uuid": feed_uuid, "uuid": uuid.uuid4(), "created_at": now,
                        "updated_at": now})  # fmt: skip
        elif tuple(row[2:]) != tuple(values.values()):
            changed.append({**values, "id": row[0], "updated_at": now})
        else:
            unchanged += 1
    vanished = [
        {"id": row[0], "active": False, "updated_at": now}
        for feed_uuid, row in existing.items()
        if feed_uuid not in wanted and row[8] == source and row[7]
    ]
    for start in range(0, len(new), BATCH):
        session.execute(insert(Product), new[start : start + BATCH])
    for batch in (changed, vanished):
        for start in range(0, len(batch), BATCH):
            session.execute(update(Product), batch[start : start + BATCH])
    return {
        "created": len(new),
        "updated": len(changed),
        "deactivated": len(vanished),
        "unchanged": unchanged,
        "skipped": skipped,
    }


def _size(size: Decimal | None) -> Decimal | None:
    """Sizes as the column keeps them (three decimals), so comparisons see real changes."""
    return None if size is None else size.quantize(Decimal("0.001"))
