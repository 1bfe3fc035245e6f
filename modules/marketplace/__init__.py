"""Sale orders, invoices and payments, Odoo-style."""

from app.registry import Manifest

manifest = Manifest(
    name="marketplace",
    version="0.1.0",
    summary="Sale orders, invoices and payments",
    depends=("auth", "fetch"),
)
