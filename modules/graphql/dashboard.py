"""Where the dashboard's fields plug into the GraphQL ``Query`` (none yet).

The ``dashboard`` module (issue 15: per-day rollups, ``GET /api/v1/dashboard/stats`` and
``/transactions``) is built on a branch of its own. Once it is merged, this module adds
``"dashboard"`` to its manifest's ``depends`` and defines here a strawberry type whose fields
call the dashboard's services with the caller, e.g.::

    @strawberry.type
    class DashboardQuery:
        @strawberry.field(description="Sales per day, as GET /api/v1/dashboard/stats")
        def dashboard_stats(self, info: Info, since: str, until: str) -> DashboardStats | None:
            return DashboardStats.of(stats(info.context.actor, ...))

    QUERIES = (DashboardQuery,)

``schema.Query`` merges every class of :data:`QUERIES` into the root, so nothing else changes.
The seller's settlement summary is already served by ``schema.SellerQuery`` (the seller
module's balances).
"""

from __future__ import annotations

#: Strawberry types whose fields join the ``Query`` root.
QUERIES: tuple[type, ...] = ()
