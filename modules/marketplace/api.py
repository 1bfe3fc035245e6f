"""``/api/v1/marketplace``: products, orders, invoices and payments.

Writes run on the primary; listings and single reads run inside ``@read_only()`` on a caught-up
replica (read-your-writes through ``X-Lapak-LSN``). Requests that move money take an
``Idempotency-Key`` header.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.dumping import fast_dump
from app.http import API_PREFIX, Page, PageArgs
from app.openapi import link, response_links
from app.security import authenticate, requires

from . import idempotency, invoices, printing, products, refunds, services
from .demo import demo_product_id
from .models import AccountMove, Payment, Product, ProductSync, Refund, SaleOrder
from .schemas import (
    InvoiceCreateSchema,
    InvoicePageSchema,
    InvoicePatchSchema,
    InvoiceQuerySchema,
    InvoiceSchema,
    MarketplaceProblemSchema,
    OrderCreateSchema,
    OrderDetailSchema,
    OrderPageSchema,
    OrderQuerySchema,
    OrderSchema,
    PaymentInSchema,
    PaymentSchema,
    PlacedSchema,
    ProductInSchema,
    ProductPageSchema,
    ProductPatchSchema,
    ProductQuerySchema,
    ProductSchema,
    RefundInSchema,
    RefundPageSchema,
    RefundSchema,
    SyncInSchema,
    SyncSchema,
    order_summary_page,
)

blp = Blueprint(
    "marketplace",
    __name__,
    description="Products, sale orders, invoices and payments: one request places a confirmed "
    "order with its posted invoice and registered payment.",
)

STAFF = ("staff", "admin")
F = TypeVar("F", bound=Callable[..., Any])
# Built once each: a schema builds its nested schemas once, not per request; the answers of
# the write paths are dumped without marshmallow's per-field lookups (see app.dumping).
_PLACED = fast_dump(PlacedSchema())
_PAYMENT = fast_dump(PaymentSchema())
_REFUND = fast_dump(RefundSchema())
_INVOICE = fast_dump(InvoiceSchema())
#: The listings' query schemas, made once: webargs would build a class's instance per request.
_ORDER_QUERY = OrderQuerySchema()
_INVOICE_QUERY = InvoiceQuerySchema()
IDEMPOTENCY_HEADER = {
    "Idempotency-Key": {
        "description": "Optional. Retrying with the same key and body returns the first answer; "
        "the same key with another body is 422.",
        "schema": {"type": "string", "maxLength": idempotency.MAX_KEY_LENGTH},
    }
}


BASE = f"{API_PREFIX}/marketplace"
#: An order "Try it out" can place against the demo catalogue (``lapak demo``).
EXAMPLE_ORDER = {
    "lines": [
        {"product": str(demo_product_id("BANDENG")), "quantity": "2"},
        {"product": str(demo_product_id("LELE")), "quantity": "1.5"},
    ],
    "payment": {"method": "bank_transfer", "reference": "TRF-0001"},
    "currency": "IDR",
}


def _product_links(id_at: str) -> dict[str, dict[str, Any]]:
    return {
        "GetProduct": link(
            f"{BASE}/products/{{product_id}}", "get", "The product", product_id=id_at
        ),
        "OrderProduct": link(
            f"{BASE}/orders",
            "post",
            "Order this product",
            request_body={
                "lines": [{"product": id_at, "quantity": "1"}],
                "payment": {"method": "bank_transfer"},
            },
        ),
    }


def _paged_listing(
    *, scope: str, query: Any, page: Any, link_name: str, path: str, param: str, description: str
) -> Callable[[F], F]:
    """What every GET listing wears: authorised by ``scope``, read on a replica, its ``query``
    parsed, its ``page`` dumped, and a link ``link_name`` from its first item to ``path``
    (``param`` naming the item's id there). The same decorators, in the same order, as if
    stacked by hand: the OpenAPI document is the same."""
    first = link(f"{BASE}{path}", "get", description, **{param: "$response.body#/items/0/id"})
    stack = (
        requires(scope=scope),
        read_only(),
        blp.arguments(query, location="query"),
        blp.response(200, page),
        response_links(blp, 200, **{link_name: first}),
    )

    def decorate(view: F) -> F:
        for decorator in reversed(stack):  # innermost first, as @ lines apply them
            view = decorator(view)
        return view

    return decorate


def _idempotent(scope: str, body: dict[str, Any]) -> idempotency.IdempotentRequest | None:
    return idempotency.request_for(
        authenticate().user_id, scope, request.headers.get("Idempotency-Key"), body
    )


def _created(status: int, body: dict[str, Any], location: str) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = location
    return response


# -- products -----------------------------------------------------------------------------------


@blp.route("/products")
class Products(MethodView):
    @requires(scope="products:read")
    @read_only()
    @blp.arguments(ProductQuerySchema, location="query")
    @blp.response(200, ProductPageSchema)
    @response_links(blp, 200, **_product_links("$response.body#/items/0/id"))
    def get(self, args: dict[str, Any]) -> Page:
        """List products

        Customers see active products only. Names are exact, in any letter case.
        """
        filters = products.ProductFilter(
            **{k: args[k] for k in ("active", "name", "province", "city", "source", "seller")}
        )
        return products.list_products(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )

    @requires("admin", "seller", scope="products:write")
    @blp.arguments(
        ProductInSchema,
        example={"name": "BANDENG", "province": "JAWA BARAT", "city": "BANDUNG", "size": "100",
                 "list_price": "37000.00"},
    )  # fmt: skip
    @blp.response(201, ProductSchema)
    @response_links(
        blp,
        201,
        **_product_links("$response.body#/id"),
        ChangeProduct=link(
            f"{BASE}/products/{{product_id}}", "patch", "Change it", product_id="$response.body#/id"
        ),
    )
    def post(self, body: dict[str, Any]) -> Product:
        """Add a product by hand (sellers add their own)

        A seller who may not sell yet (signed up for review, not verified) is refused with
        ``403 selling-not-allowed``; an admin naming such a seller, with a 422.
        """
        return products.create_product(authenticate(), body)


@blp.route("/products/<uuid:product_id>")
class ProductItem(MethodView):
    @requires(scope="products:read")
    @read_only()
    @blp.response(200, ProductSchema)
    def get(self, product_id: uuid.UUID) -> Product:
        """Show a product"""
        return products.get_product(product_id)

    @requires("admin", "seller", scope="products:write")
    @blp.arguments(ProductPatchSchema, required=False)
    @blp.response(200, ProductSchema)
    def patch(self, body: dict[str, Any], product_id: uuid.UUID) -> Product:
        """Change a product (sellers: their own); deactivate it with ``active: false``"""
        return products.update_product(authenticate(), product_id, body)


@blp.route("/products/sync")
class ProductSyncs(MethodView):
    @requires("admin")
    @blp.arguments(SyncInSchema, required=False)
    @blp.response(202, SyncSchema)
    @response_links(
        blp,
        202,
        GetSync=link(
            f"{BASE}/products/syncs/{{sync_id}}",
            "get",
            "The sync's result",
            sync_id="$response.body#/id",
        ),
    )
    def post(self, body: dict[str, Any]) -> tuple[ProductSync, int, dict[str, str]]:
        """Sync the catalogue with a feed source, in the background

        New listings become products, changed ones are updated, vanished ones deactivated.
        Follow ``Location`` for the result.
        """
        sync = products.request_sync(authenticate(), body["source"])
        location = url_for("marketplace.ProductSyncItem", sync_id=sync.uuid)
        return sync, 202, {"Location": location}


@blp.route("/products/syncs/<uuid:sync_id>")
class ProductSyncItem(MethodView):
    @requires("admin")
    @blp.response(200, SyncSchema)
    def get(self, sync_id: uuid.UUID) -> ProductSync:
        """Show a sync's state and counts"""
        return products.get_sync(sync_id)


# -- orders -------------------------------------------------------------------------------------


@blp.route("/orders")
class Orders(MethodView):
    @_paged_listing(
        scope="orders:read",
        query=_ORDER_QUERY,
        page=OrderPageSchema,
        link_name="GetOrder",
        path="/orders/{order_id}",
        param="order_id",
        description="The order",
    )
    def get(self, args: dict[str, Any]) -> Response:
        """List orders, newest first

        Staff see every order, customers their own, sellers the orders with their products.
        """
        page = services.list_orders(
            authenticate(),
            services.OrderFilter.of(args),
            limit=args["limit"],
            cursor=args["cursor"],
        )
        # Rows, rendered as OrderPageSchema would dump them (see schemas.order_summary).
        return jsonify(order_summary_page(page.items, page.next_cursor))

    @requires("customer", *STAFF, scope="orders:write")
    @blp.arguments(OrderCreateSchema, example=EXAMPLE_ORDER)
    @blp.response(201, PlacedSchema)
    @response_links(
        blp,
        201,
        GetOrder=link(
            f"{BASE}/orders/{{order_id}}", "get", "The order", order_id="$response.body#/order/id"
        ),
        CancelOrder=link(
            f"{BASE}/orders/{{order_id}}/cancel",
            "post",
            "Cancel it",
            order_id="$response.body#/order/id",
        ),
        GetInvoice=link(
            f"{BASE}/invoices/{{invoice_id}}",
            "get",
            "Its invoice",
            invoice_id="$response.body#/invoice/id",
        ),
        PayInvoice=link(
            f"{BASE}/invoices/{{invoice_id}}/payments",
            "post",
            "Pay the rest",
            invoice_id="$response.body#/invoice/id",
        ),
        GetPayment=link(
            f"{BASE}/payments/{{payment_id}}",
            "get",
            "Its payment",
            payment_id="$response.body#/payment/id",
        ),
        ConfirmPayment=link(
            f"{BASE}/payments/{{payment_id}}/confirm",
            "post",
            "Staff: the money is in",
            payment_id="$response.body#/payment/id",
        ),
    )
    @blp.doc(parameters=[{"in": "header", "name": name, **spec}
                         for name, spec in IDEMPOTENCY_HEADER.items()])  # fmt: skip
    @blp.alt_response(
        409, schema=MarketplaceProblemSchema, description="A price is not the catalogue's"
    )
    @blp.alt_response(
        503, schema=MarketplaceProblemSchema, description="No rate for USD, or a step failed"
    )
    def post(self, body: dict[str, Any]) -> Response:
        """Place an order: confirmed, invoiced and paid in one step

        Creates the sale order (``sale``), posts its invoice and registers the payment, in one
        transaction; the invoice is then ``in_payment`` (paid in full, not yet confirmed) or
        ``partial``. Prices come from the catalogue; a ``price_unit`` that differs is refused.
        A failure names the ``step`` (order, invoice, payment) and saves nothing.
        """
        order_request = services.OrderRequest(
            lines=[services.LineRequest(**line) for line in body["lines"]],
            payment=services.PaymentRequest(**body["payment"]),
            currency=body["currency"],
            customer=body["customer"],
        )
        status, answer = services.place_order(
            authenticate(),
            order_request,
            _idempotent("orders", request.get_json()),
            _PLACED,
        )
        return _created(
            status, answer, url_for("marketplace.OrderItem", order_id=answer["order"]["id"])
        )


@blp.route("/orders/<uuid:order_id>")
class OrderItem(MethodView):
    @requires(scope="orders:read")
    @read_only()
    @blp.response(200, OrderDetailSchema)
    @response_links(
        blp,
        200,
        GetInvoice=link(f"{BASE}/invoices/{{invoice_id}}", "get", "Its invoice",
                        invoice_id="$response.body#/invoices/0/id"),
        GetPayment=link(f"{BASE}/payments/{{payment_id}}", "get", "Its first payment",
                        payment_id="$response.body#/payments/0/id"),
        CancelOrder=link(f"{BASE}/orders/{{order_id}}/cancel", "post", "Cancel it",
                         order_id="$request.path.order_id"),
    )  # fmt: skip
    def get(self, order_id: uuid.UUID) -> services.OrderDetail:
        """Show an order with its invoices and payments"""
        return services.get_order(authenticate(), order_id)


@blp.route("/orders/<uuid:order_id>/cancel")
class OrderCancel(MethodView):
    @requires(scope="orders:write")
    @blp.response(200, OrderSchema)
    @blp.alt_response(
        403, schema=MarketplaceProblemSchema, description="Not the order's customer, nor staff"
    )
    @blp.alt_response(
        409,
        schema=MarketplaceProblemSchema,
        description="A confirmed payment is not refunded in full, or a payment through a "
        "provider was started meanwhile (`payment-started-meanwhile`: send it again)",
    )
    def post(self, order_id: uuid.UUID) -> SaleOrder:
        """Cancel an order: payments cancelled, invoice reversed by a credit note

        Staff, or the order's customer, while no confirmed payment is left unrefunded (once
        refunds cover them, the invoice is reversed already).
        """
        return services.cancel_order(authenticate(), order_id)


# -- invoices and payments ----------------------------------------------------------------------

#: A standalone invoice "Try it out" can make: to a payer without an account.
EXAMPLE_INVOICE = {
    "payer_name": "Ibu Sari",
    "payer_email": "sari@example.com",
    "lines": [
        {"description": "Cold storage, May", "quantity": "2", "price_unit": "250000.00",
         "tax_percent": "11"},
        {"description": "Delivery to Denpasar", "quantity": "1", "price_unit": "75000.00"},
    ],
    "currency": "IDR",
    "memo": "Thank you for your business.",
}  # fmt: skip
_INVOICE_LINKS = {
    "GetInvoice": link(f"{BASE}/invoices/{{invoice_id}}", "get", "The invoice",
                       invoice_id="$response.body#/id"),
    "PostInvoice": link(f"{BASE}/invoices/{{invoice_id}}/post", "post",
                        "Post it: numbered, owed", invoice_id="$response.body#/id"),
    "PrintInvoice": link(f"{BASE}/invoices/{{invoice_id}}/print", "get", "Print it",
                         invoice_id="$response.body#/id"),
}  # fmt: skip
_IDEMPOTENCY_PARAMETERS = [
    {"in": "header", "name": name, **spec} for name, spec in IDEMPOTENCY_HEADER.items()
]


@blp.route("/invoices")
class Invoices(MethodView):
    @_paged_listing(
        scope="orders:read",
        query=_INVOICE_QUERY,
        page=InvoicePageSchema,
        link_name="GetInvoice",
        path="/invoices/{invoice_id}",
        param="invoice_id",
        description="The invoice",
    )
    def get(self, args: dict[str, Any]) -> Page:
        """List invoices and credit notes, newest first

        Staff see every one; a seller those of orders with their products and the standalone
        invoices they issued (drafts included); a customer those of their orders and the posted
        standalone invoices addressed to them. Without lines: follow ``GetInvoice``.
        """
        return invoices.list_invoices(
            authenticate(),
            invoices.InvoiceFilter.of(args),
            limit=args["limit"],
            cursor=args["cursor"],
        )

    @requires("seller", *STAFF, scope="invoices:write")
    @blp.arguments(InvoiceCreateSchema, example=EXAMPLE_INVOICE)
    @blp.response(201, InvoiceSchema)
    @response_links(blp, 201, **_INVOICE_LINKS)
    @blp.doc(parameters=_IDEMPOTENCY_PARAMETERS)
    @blp.alt_response(
        403,
        schema=MarketplaceProblemSchema,
        description="A customer; or a seller not verified (invoicing-not-allowed)",
    )
    def post(self, body: dict[str, Any]) -> Response:
        """Write a draft invoice without an order

        Staff write the platform's invoices, a verified seller invoices of their own sales. The
        invoice is to a customer (``customer``: their user id) or to a payer without an account
        (``payer_name`` and ``payer_email``). Lines describe what is sold, with quantity, unit
        price (untaxed, in ``currency``) and PPN percent (default ``LAPAK_SALES_TAX_PERCENT``).
        A draft has no number and is owed by no one until it is posted; it can be changed
        (``PATCH``) or cancelled.
        """
        status, answer = invoices.create_invoice(
            authenticate(), body, _idempotent("invoices", request.get_json()), _INVOICE
        )
        return _created(status, answer, url_for("marketplace.InvoiceItem", invoice_id=answer["id"]))


@blp.route("/invoices/<uuid:invoice_id>")
class InvoiceItem(MethodView):
    @requires(scope="orders:read")
    @read_only()
    @blp.response(200, InvoiceSchema)
    @response_links(
        blp,
        200,
        PayInvoice=link(f"{BASE}/invoices/{{invoice_id}}/payments", "post", "Pay what is due",
                        invoice_id="$request.path.invoice_id"),
        GetOrder=link(f"{BASE}/orders/{{order_id}}", "get", "Its order",
                      order_id="$response.body#/order"),
        PrintInvoice=link(f"{BASE}/invoices/{{invoice_id}}/print", "get", "Print it",
                          invoice_id="$request.path.invoice_id"),
    )  # fmt: skip
    def get(self, invoice_id: uuid.UUID) -> Any:
        """Show an invoice or credit note"""
        return services.get_invoice(authenticate(), invoice_id)

    @requires("seller", *STAFF, scope="invoices:write")
    @blp.arguments(
        InvoicePatchSchema,
        example={"due_date": "2026-12-31", "memo": "Pay by transfer to BCA 123-456-7890"},
    )
    @blp.response(200, InvoiceSchema)
    @blp.alt_response(403, schema=MarketplaceProblemSchema, description="Not the draft's issuer")
    @blp.alt_response(
        409,
        schema=MarketplaceProblemSchema,
        description="Not a draft (invoice-not-draft: a posted invoice is never edited), or an "
        "order's invoice (invoice-of-an-order)",
    )
    def patch(self, body: dict[str, Any], invoice_id: uuid.UUID) -> AccountMove:
        """Change a draft invoice

        Only its issuer: the seller who wrote it, or staff for the platform's. Only the fields
        sent change; ``lines`` replaces every line; the payer changes as a whole (``customer``,
        or ``payer_name`` with ``payer_email``).
        """
        return invoices.update_invoice(authenticate(), invoice_id, body)


@blp.route("/invoices/<uuid:invoice_id>/post")
class InvoicePost(MethodView):
    @requires("seller", *STAFF, scope="invoices:write")
    @blp.response(200, InvoiceSchema)
    @blp.doc(parameters=_IDEMPOTENCY_PARAMETERS)
    @blp.alt_response(
        403,
        schema=MarketplaceProblemSchema,
        description="Not the invoice's issuer nor staff, or a seller no longer verified",
    )
    @blp.alt_response(
        409, schema=MarketplaceProblemSchema, description="Not a draft, or an order's invoice"
    )
    @blp.alt_response(
        422,
        schema=MarketplaceProblemSchema,
        description="Its total is 0, or its due date has passed",
    )
    @response_links(
        blp,
        200,
        PayInvoice=link(f"{BASE}/invoices/{{invoice_id}}/payments", "post", "Pay what is due",
                        invoice_id="$response.body#/id"),
        PrintInvoice=link(f"{BASE}/invoices/{{invoice_id}}/print", "get", "Print it",
                          invoice_id="$response.body#/id"),
    )  # fmt: skip
    def post(self, invoice_id: uuid.UUID) -> Response:
        """Post a draft invoice: numbered, dated, owed

        Takes the next gap-free ``INV/<year>/<n>`` number, dates the invoice today and posts it
        to the ledger as an order's invoice is (the customer's receivable, or the platform's
        receivable from payers without an account). From then on it is never edited: it is
        paid, or reversed once refunds cover its payments.
        """
        status, answer = invoices.post_invoice(
            authenticate(), invoice_id, _idempotent(f"invoice-post:{invoice_id}", {}), _INVOICE
        )
        response = jsonify(answer)
        response.status_code = status
        return response


@blp.route("/invoices/<uuid:invoice_id>/cancel")
class InvoiceCancel(MethodView):
    @requires("seller", *STAFF, scope="invoices:write")
    @blp.response(200, InvoiceSchema)
    @blp.alt_response(
        403, schema=MarketplaceProblemSchema, description="Not the invoice's issuer nor staff"
    )
    @blp.alt_response(
        409,
        schema=MarketplaceProblemSchema,
        description="Posted (refund its payments instead), or an order's invoice",
    )
    def post(self, invoice_id: uuid.UUID) -> AccountMove:
        """Cancel a draft invoice

        It is never numbered nor owed. Cancelling it again changes nothing.
        """
        return invoices.cancel_invoice(authenticate(), invoice_id)


@blp.route("/invoices/<uuid:invoice_id>/reverse")
class InvoiceReverse(MethodView):
    @requires("seller", *STAFF, scope="invoices:write")
    @blp.response(200, InvoiceSchema)
    @blp.alt_response(
        403, schema=MarketplaceProblemSchema, description="Not the invoice's issuer nor staff"
    )
    @blp.alt_response(
        409,
        schema=MarketplaceProblemSchema,
        description="Not posted (a draft is cancelled), a confirmed payment not refunded in "
        "full, an order's invoice (cancel the order), a credit note (`invoice-is-credit-note`), "
        "or a payment through a provider started meanwhile (`payment-started-meanwhile`: send "
        "it again)",
    )
    @response_links(
        blp,
        200,
        GetCreditNote=link(f"{BASE}/invoices/{{invoice_id}}", "get", "The invoice, reversed",
                           invoice_id="$response.body#/id"),
    )  # fmt: skip
    def post(self, invoice_id: uuid.UUID) -> AccountMove:
        """Reverse a posted invoice nothing was paid on

        A credit note (``RINV``) reverses the whole invoice on the ledger; its payments still
        in process are cancelled. Refused while a confirmed payment is not refunded in full
        (refund it instead: once refunds cover every confirmed payment, the invoice is
        reversed). Reversing it again changes nothing.
        """
        return invoices.reverse_invoice(authenticate(), invoice_id)


@blp.route("/invoices/<uuid:invoice_id>/print")
class InvoicePrint(MethodView):
    # On the primary, not a replica: a module's Pay online link may be issued as it prints.
    @requires(scope="orders:read", browser=True)
    @blp.response(
        200,
        {"type": "string"},
        content_type="text/html",
        description="A print-ready HTML page (A4, no script): the seller, the payer, the lines "
        "with PPN, the totals, the number, the due date, and a Pay online link when one exists",
    )
    def get(self, invoice_id: uuid.UUID) -> Response:
        """Print an invoice or credit note

        A page to print (or save as PDF) from the browser: a logged-in browser opens it with its
        session, other clients with a bearer token.
        """
        actor = authenticate()
        return printing.printable(actor, services.get_invoice(actor, invoice_id))


@blp.route("/invoices/<uuid:invoice_id>/payments")
class InvoicePayments(MethodView):
    @requires("customer", *STAFF, scope="payments:write")
    @blp.arguments(
        PaymentInSchema,
        example={"method": "bank_transfer", "amount": "10000.00", "reference": "TRF-0002"},
    )
    @blp.response(201, PaymentSchema)
    @blp.alt_response(
        409,
        schema=MarketplaceProblemSchema,
        description="The invoice takes no payment: paid, in payment, reversed or a credit note",
    )
    @response_links(
        blp,
        201,
        GetPayment=link(
            f"{BASE}/payments/{{payment_id}}", "get", "The payment", payment_id="$response.body#/id"
        ),
    )
    @blp.doc(parameters=[{"in": "header", "name": name, **spec}
                         for name, spec in IDEMPOTENCY_HEADER.items()])  # fmt: skip
    def post(self, body: dict[str, Any], invoice_id: uuid.UUID) -> Response:
        """Register a further payment on a partially paid invoice"""
        status, answer = services.register_payment(
            authenticate(),
            invoice_id,
            services.PaymentRequest(**body),
            _idempotent(f"invoice-payments:{invoice_id}", request.get_json()),
            _PAYMENT,
        )
        return _created(status, answer, url_for("marketplace.PaymentItem", payment_id=answer["id"]))


@blp.route("/payments/<uuid:payment_id>")
class PaymentItem(MethodView):
    @requires(scope="payments:read")
    @read_only()
    @blp.response(200, PaymentSchema)
    @response_links(
        blp,
        200,
        ConfirmPayment=link(f"{BASE}/payments/{{payment_id}}/confirm", "post",
                            "Staff: the money is in", payment_id="$request.path.payment_id"),
        GetInvoice=link(f"{BASE}/invoices/{{invoice_id}}", "get", "Its invoice",
                        invoice_id="$response.body#/invoice"),
    )  # fmt: skip
    def get(self, payment_id: uuid.UUID) -> Payment:
        """Show a payment"""
        return services.get_payment(authenticate(), payment_id)


@blp.route("/payments/<uuid:payment_id>/confirm")
class PaymentConfirm(MethodView):
    @requires(*STAFF, scope="payments:write")
    @blp.response(200, PaymentSchema)
    @blp.alt_response(409, schema=MarketplaceProblemSchema, description="The payment was cancelled")
    def post(self, payment_id: uuid.UUID) -> Payment:
        """Confirm a payment: the money is in; the invoice becomes paid (or stays partial)"""
        return services.confirm_payment(authenticate(), payment_id)


# -- refunds ------------------------------------------------------------------------------------


@blp.route("/payments/<uuid:payment_id>/refunds")
class PaymentRefunds(MethodView):
    @_paged_listing(
        scope="payments:read",
        query=PageArgs,
        page=RefundPageSchema,
        link_name="GetRefund",
        path="/refunds/{refund_id}",
        param="refund_id",
        description="The refund",
    )
    def get(self, args: dict[str, Any], payment_id: uuid.UUID) -> Page:
        """List a payment's refunds, oldest first

        Staff, and the payment's customer.
        """
        return refunds.list_refunds(
            authenticate(), payment_id, limit=args["limit"], cursor=args["cursor"]
        )

    @requires(*STAFF, scope="payments:write")
    # No request example: the document's examples are sent as they are by the fuzz gate, and
    # only a confirmed payment takes a refund (the reason's own example shows the shape).
    @blp.arguments(RefundInSchema)
    @blp.response(201, RefundSchema)
    @blp.alt_response(
        409,
        schema=MarketplaceProblemSchema,
        description="The payment is not confirmed, or is refunded in full already",
    )
    @response_links(
        blp,
        201,
        GetRefund=link(f"{BASE}/refunds/{{refund_id}}", "get", "The refund",
                       refund_id="$response.body#/id"),
        RefundDone=link(f"{BASE}/refunds/{{refund_id}}/done", "post",
                        "Staff: the money was sent back", refund_id="$response.body#/id"),
    )  # fmt: skip
    @blp.doc(parameters=[{"in": "header", "name": name, **spec}
                         for name, spec in IDEMPOTENCY_HEADER.items()])  # fmt: skip
    def post(self, body: dict[str, Any], payment_id: uuid.UUID) -> Response:
        """Refund a confirmed payment, in part or in whole

        Writes a partial credit note (``RINV``) and reverses the payment's share on the ledger
        (the sellers' pending balance first, then their available balance, then a receivable
        from them). ``amount`` defaults to all that remains refundable. Once refunds cover
        every confirmed payment the invoice is ``reversed`` and the order can be cancelled.
        The refund is ``pending`` until staff mark the money sent back, unless it goes to the
        customer's wallet (a payment from the wallet, or ``destination: wallet``): then it is
        ``succeeded`` at once.
        """
        status, answer = refunds.create_refund(
            authenticate(),
            payment_id,
            refunds.RefundRequest(
                reason=body["reason"], amount=body["amount"], destination=body["destination"]
            ),
            _idempotent(f"payment-refunds:{payment_id}", request.get_json()),
            _REFUND,
        )
        return _created(status, answer, url_for("marketplace.RefundItem", refund_id=answer["id"]))


@blp.route("/refunds/<uuid:refund_id>")
class RefundItem(MethodView):
    @requires(scope="payments:read")
    @read_only()
    @blp.response(200, RefundSchema)
    @response_links(
        blp,
        200,
        GetPayment=link(f"{BASE}/payments/{{payment_id}}", "get", "Its payment",
                        payment_id="$response.body#/payment"),
        GetCreditNote=link(f"{BASE}/invoices/{{invoice_id}}", "get", "Its credit note",
                           invoice_id="$response.body#/credit_note"),
    )  # fmt: skip
    def get(self, refund_id: uuid.UUID) -> Refund:
        """Show a refund (staff, and the payment's customer)"""
        return refunds.get_refund(authenticate(), refund_id)


@blp.route("/refunds/<uuid:refund_id>/done")
class RefundDone(MethodView):
    @requires(*STAFF, scope="payments:write")
    @blp.response(200, RefundSchema)
    def post(self, refund_id: uuid.UUID) -> Refund:
        """Mark a refund done: the money went back through the payment's method"""
        return refunds.mark_refund_done(authenticate(), refund_id)
