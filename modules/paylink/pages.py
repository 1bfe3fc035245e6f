"""``/pay/<token>``: the public pay page of a payment link (no login), and its status.

- ``GET /pay/<token>`` (also with a trailing slash, as chat apps and mail clients add one): the
  page (server-rendered, no script, a strict Content-Security-Policy: its own stylesheet by
  hash, forms posting to this site only, never framed).
- ``POST /pay/<token>``: pay with the chosen method; post/redirect/get to the provider's page
  (the demo gateway's hosted checkout), or back to the page.
- ``GET /pay/<token>/status``: the status, as JSON with ``Accept: application/json`` (for
  polling), else the page.
- ``GET /pay/return/<attempt>``: where the provider sends the payer back: their payment's status.
- anything else under a token (any method, any deeper path): the same "no such link" page.

The form is safe from other sites without a session: the browser gets a random cookie
(HttpOnly, ``SameSite=Lax``, path ``/pay/``), and the form carries an HMAC of it and the link
(:func:`.paying.form_token`), which a page elsewhere can neither read nor compute. A live page
also hands out a second cookie, for the link's own path: the proof that this browser saw the
link while it took payments (:func:`.paying.seen_proof`), so it is later told how it ended.

Every "no such link" (unknown, expired, revoked, used, closed) is the same 404 page, byte for
byte but for the request id, and sets no cookie. Each one counts against the client IP in the
throttle, before the database is asked (given back when the link is found); past the limit
every request of that IP under ``/pay/<token>`` is a 429 problem with ``Retry-After``, real
links included (else a locked address could go on guessing, told a hit by a 200). Nothing is
counted per token. The token never reaches the logs nor a problem's ``instance``: every path
under ``/pay/`` is logged as its route template, or ``/pay/<token>`` when it matched none
(:func:`app.log.hide_paths`, decided on the path before routing); each answer is ``no-store``.

``/pay/demo/...`` is the demo gateway's checkout (the payment module's; its path holds no link
token and is logged as it is): its static segment wins over ``<token>``, and a token is never
``demo`` nor ``return`` (43 characters).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from decimal import Decimal

from flask import (
    Blueprint,
    Flask,
    Response,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from app.errors import Invalid
from app.http import problem, problem_type
from app.log import hide_paths

from . import paying
from .config import PayLinkThrottled, throttle

blp = Blueprint("paylink_pages", __name__, url_prefix="/pay", template_folder="templates")

COOKIE = "lapak_payer"
COOKIE_PATH = "/pay/"
COOKIE_DAYS = 30
#: The proof of having seen a link live: one per link, for its path (``/pay/<token>``).
SEEN_COOKIE = "lapak_seen"
#: Seconds between reloads of a page whose payment is in flight (no script: a meta refresh).
REFRESH_SECONDS = 3

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222;background:#fafafa}main{background:#fff;border:1px solid #ddd;"
    "border-radius:.5rem;padding:1rem 1.5rem}h1{font-size:1.4rem;margin:.2rem 0 1rem}"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem;margin:0 0 1rem;"
    "align-items:baseline}"
    "dt{color:#555}dd{margin:0}.amount{font-size:1.6rem;font-weight:600}"
    ".status{display:inline-block;padding:.1rem .6rem;border-radius:1rem;background:#eee}"
    ".status-paid{background:#d8f3dc;color:#1b4332}.status-failed{background:#fde2e1;"
    "color:#7f1d1d}.status-processing,.status-in_progress{background:#fff3bf;color:#5c3c00}"
    "fieldset{border:1px solid #ddd;border-radius:.4rem;margin:1rem 0}label{display:block;"
    "padding:.2rem 0}button{font-size:1rem;padding:.5rem 1.4rem;border-radius:.4rem;"
    "border:0;background:#1d4ed8;color:#fff;cursor:pointer}.note{color:#555;font-size:.9rem}"
    ".error{color:#7f1d1d}footer{color:#777;font-size:.8rem;margin-top:1rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
STATUS_LABELS = {
    "open": "Awaiting payment",
    "in_progress": "Payment in progress",
    "processing": "Payment processing",
    "paid": "Paid",
    "failed": "Payment not completed",
}


def install(app: Flask, _settings: object) -> None:
    app.register_blueprint(blp)
    # Every path under /pay/ but the demo gateway's checkout holds a secret (a link's token, a
    # return page's attempt id): hidden by its prefix, so also when no rule of ours matched.
    hide_paths(app, "/pay/", "/pay/<token>", keep=("/pay/demo/",))


@blp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


# -- the answers that say nothing -----------------------------------------------------------------


def not_found() -> Response:
    """The one answer for every link that does not take payments (and this browser never
    paid through): the same bytes whatever the reason, but for the request id."""
    html = render_template("paylink/not_found.html", style=STYLE, request_id=g.get("request_id"))
    return Response(html, status=404, mimetype="text/html")


def not_found_json() -> Response:
    return problem(
        404,
        "There is no such payment link",
        "This payment link does not exist or no longer takes payments.",
        type_=problem_type("payment-link-not-found"),
    )


def _reserve() -> Response | None:
    """Count this request against the client IP as a "no such link" before the database is
    asked (given back once the link is found): a 429 problem if the IP is locked out."""
    try:
        throttle().reserve("", request.remote_addr)
    except PayLinkThrottled as refused:
        return problem(
            429,
            refused.title,
            refused.detail,
            type_=problem_type(refused.code),
            headers=refused.headers,
            **refused.extra,
        )
    return None


def _found() -> None:
    throttle().succeeded("", request.remote_addr)


# -- the pages ------------------------------------------------------------------------------------


def _cookie() -> tuple[str, bool]:
    """The browser's payer cookie, and whether it is new (to be set with the answer)."""
    sent = request.cookies.get(COOKIE)
    if sent and 20 <= len(sent) <= 100:
        return sent, False
    return secrets.token_urlsafe(32), True


def _set(response: Response, name: str, value: str, path: str) -> None:
    response.set_cookie(
        name, value, max_age=COOKIE_DAYS * 86400, path=path, secure=request.is_secure,
        httponly=True, samesite="Lax",
    )  # fmt: skip


def _with_cookies(
    response: Response, view: paying.PayView, token: str | None, cookie: str, new: bool
) -> Response:
    """The payer cookie when new; and while the link takes payments, the proof that this
    browser saw it live (for the link's path), unless it holds it already."""
    if new:
        _set(response, COOKIE, cookie, COOKIE_PATH)
    if view.live and token is not None:
        proof = paying.seen_proof(cookie, view.link)
        if new or not paying.seen_valid(cookie, view.link, request.cookies.get(SEEN_COOKIE)):
            _set(response, SEEN_COOKIE, proof, url_for(".page", token=token))
    return response


def _render(
    view: paying.PayView,
    *,
    cookie: str | None,
    action: str | None,
    status: int = 200,
    error: str | None = None,
) -> Response:
    """The page; ``action`` None: no form (the return page, which does not know the link's
    token: the payer tries again from the link they were sent)."""
    can_pay = view.can_pay and action is not None
    methods = paying.methods_for(view.currency) if can_pay else []
    html = render_template(
        "paylink/page.html",
        style=STYLE,
        view=view,
        label=STATUS_LABELS[view.status],
        methods=methods,
        can_pay=can_pay and bool(methods),
        form_token=paying.form_token(cookie, view.link) if cookie and can_pay else None,
        action=action,
        refresh=REFRESH_SECONDS if view.status in ("processing", "in_progress") else None,
        error=error,
        amount=_money(view.amount_due),
    )
    return Response(html, status=status, mimetype="text/html")


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _view(token: str) -> tuple[paying.PayView | None, str, bool]:
    """The link's view for this browser, its payer cookie, and whether that cookie is new."""
    cookie, new = _cookie()
    seen = None if new else request.cookies.get(SEEN_COOKIE)
    return paying.pay_view(token, None if new else cookie, seen), cookie, new


@blp.get("/<token>/", endpoint="page_with_slash")  # url_for(".page") is without it
@blp.get("/<token>")
def page(token: str) -> Response:
    """The link's page: what is due, the methods, the status; the form when it can be paid."""
    refused = _reserve()
    if refused is not None:
        return refused
    view, cookie, new = _view(token)
    if view is None:
        return not_found()
    _found()
    answer = _render(view, cookie=cookie, action=url_for(".pay", token=token))
    return _with_cookies(answer, view, token, cookie, new)


@blp.post("/<token>")
def pay(token: str) -> Response:
    """Pay through the link with the chosen method (post/redirect/get)."""
    refused = _reserve()
    if refused is not None:
        return refused
    paying.prepare()  # before this request's session holds a connection
    view, cookie, new = _view(token)
    if view is None:
        return not_found()
    _found()
    here = url_for(".page", token=token)
    action = url_for(".pay", token=token)
    sent = request.form.get("form_token")
    if new or not paying.form_token_valid(cookie, view.link, sent):
        # Not the form this browser was given (another site's, or one from before the cookie
        # went): nothing is paid; the page again, with a fresh form.
        answer = _render(
            view, cookie=cookie, action=action, status=403,
            error="This form has expired. Check the amount and pay again.",
        )  # fmt: skip
        return _with_cookies(answer, view, token, cookie, new)
    try:
        started = paying.start_payment(token, cookie, request.form.get("provider", ""))
    except paying.LinkGone:
        return not_found()
    except paying.LinkBusy:
        return redirect(here, code=303)
    except Invalid as error:
        return _render(
            view, cookie=cookie, action=action, status=422, error=error.detail or error.title
        )
    return redirect(started.go_to, code=303)


@blp.get("/<token>/status")
def status(token: str) -> Response:
    """The status for polling: JSON with ``Accept: application/json``, else the page (with
    the cookies and the form the page has)."""
    wants_json = request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json"
    )
    if not wants_json:
        return page(token)
    refused = _reserve()
    if refused is not None:
        return refused
    view, cookie, new = _view(token)
    if view is None:
        return not_found_json()
    _found()
    methods = paying.methods_for(view.currency) if view.can_pay else []
    return _with_cookies(jsonify(view.as_json(methods)), view, token, cookie, new)


@blp.get("/return/<uuid:attempt_id>")
def returned(attempt_id: uuid.UUID) -> Response:
    """Where the provider sends the payer back: their payment's status (the attempt's random
    id is this page's secret, as the checkout's is the gateway's)."""
    refused = _reserve()
    if refused is not None:
        return refused
    view = paying.attempt_view(attempt_id)
    if view is None:
        return not_found()
    _found()
    return _render(view, cookie=None, action=None)


ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@blp.route("/<token>/<path:rest>", methods=ANY_METHOD)
def elsewhere(token: str, rest: str) -> Response:
    """Anything else under a token, whatever the method: the same "no such link" page (and
    counted as one)."""
    refused = _reserve()
    return refused if refused is not None else not_found()
