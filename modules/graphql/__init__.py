"""Read-only GraphQL over sale orders, invoices, payments, provider transactions, seller
balances and the dashboard's figures, at ``POST /api/v1/graphql``: the same services,
visibility and answers as the REST API, with nested reads batched (no N+1) and bounded
(length, tokens, fragments, depth, aliases, page size, cost)."""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="graphql",
    version="0.1.0",
    summary="Read-only GraphQL over orders, invoices, payments, transactions, balances and "
    "dashboard figures",
    depends=("marketplace", "payment", "seller", "dashboard"),
)


def load(hooks: ModuleHooks) -> None:
    from . import api

    hooks.blueprint(api.blp)
    hooks.scope(
        api.SCOPE,
        "Call the GraphQL endpoint: each field also needs the scope of its REST endpoint "
        "(orders:read, payments:read, settlements:read, dashboard:read)",
        roles=("seller", "admin"),
    )
