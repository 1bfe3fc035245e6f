"""``/pay/<token>``: the public pay page of a payment link (no login), and its status.

- ``GET /pay/<token>``: the page (server-rendered, no script, a strict Content-Security-Policy:
  its own stylesheet by hash, forms posting to this site only, never framed).
- ``POST /pay/<token>``: pay with the chosen method; post/redirect/get to the provider's page
  (the demo gateway's hosted checkout), or back to the page.
- ``GET /pay/<token>/status``: the status, as JSON with ``Accept: application/json`` (for
  polling), else the page.
- ``GET /pay/return/<attempt>``: where the provider sends the payer back: their payment's status.

The form is safe from other sites without a session: the browser gets a random cookie
(HttpOnly, ``SameSite=Lax``, path ``/pay/``), and the form carries an HMAC of it and the link
(:func:`.paying.form_token`), which a page elsewhere can neither read nor compute.

Every "no such link" (unknown, expired, revoked, used, closed) is the same 404 page, byte for
byte but for the request id. Each one counts against the client IP (and the token) in the
throttle, before the database is asked; past the limit every request of that IP is a 429
problem with ``Retry-After``. The token never reaches the logs (the path is logged as the route
template) and each answer is ``no-store``.

``/pay/demo/...`` is the demo gateway's checkout (the payment module's): its static segment
wins over ``<token>``, and a token is never ``demo`` nor ``return`` (43 random characters).
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
from app.log import hide_path

from . import paying
from .config import PayLinkThrottled, throttle
from .services import token_digest

blp = Blueprint("paylink_pages", __name__, url_prefix="/pay", template_folder="templates")

COOKIE = "lapak_payer"
COOKIE_PATH = "/pay/"
COOKIE_DAYS = 30
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


@blp.before_request
def _keep_token_out_of_logs() -> None:
    rule = request.url_rule
    hide_path(rule.rule if rule is not None else "/pay/<token>")


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


def not_found_json(template: str) -> Response:
    return problem(
        404,
        "There is no such payment link",
        "This payment link does not exist or no longer takes payments.",
        type_=problem_type("payment-link-not-found"),
        instance=template,
    )


def _throttled(refused: PayLinkThrottled, template: str) -> Response:
    return problem(
        429,
        refused.title,
        refused.detail,
        type_=problem_type(refused.code),
        headers=refused.headers,
        instance=template,
        **refused.extra,
    )


def _reserve(subject: str) -> Response | None:
    """Count this request as a failure before the database is asked (given back once the link
    is found): a 429 problem if the IP or the token is locked out."""
    try:
        throttle().reserve(subject, request.remote_addr)
    except PayLinkThrottled as refused:
        return _throttled(refused, request.url_rule.rule if request.url_rule else "/pay")
    return None


def _found(subject: str) -> None:
    throttle().succeeded(subject, request.remote_addr)


# -- the pages ------------------------------------------------------------------------------------


def _cookie() -> tuple[str, bool]:
    """The browser's payer cookie, and whether it is new (to be set with the answer)."""
    sent = request.cookies.get(COOKIE)
    if sent and 20 <= len(sent) <= 100:
        return sent, False
    return secrets.token_urlsafe(32), True


def _with_cookie(response: Response, cookie: str, new: bool) -> Response:
    if new:
        response.set_cookie(
            COOKIE, cookie, max_age=COOKIE_DAYS * 86400, path=COOKIE_PATH,
            secure=request.is_secure, httponly=True, samesite="Lax",
        )  # fmt: skip
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


@blp.get("/<token>")
def page(token: str) -> Response:
    """The link's page: what is due, the methods, the status; the form when it can be paid."""
    refused = _reserve(token_digest(token))
    if refused is not None:
        return refused
    cookie, new = _cookie()
    view = paying.pay_view(token, None if new else cookie)
    if view is None:
        return not_found()
    _found(token_digest(token))
    action = url_for(".pay", token=token)
    return _with_cookie(_render(view, cookie=cookie, action=action), cookie, new)


@blp.post("/<token>")
def pay(token: str) -> Response:
    """Pay through the link with the chosen method (post/redirect/get)."""
    refused = _reserve(token_digest(token))
    if refused is not None:
        return refused
    paying.prepare()  # before this request's session holds a connection
    cookie = request.cookies.get(COOKIE)
    view = paying.pay_view(token, cookie)
    if view is None:
        return not_found()
    _found(token_digest(token))
    here = url_for(".page", token=token)
    if not paying.form_token_valid(cookie, view.link, request.form.get("form_token")):
        # Not the form this browser was given (another site's, or one from before the cookie
        # went): nothing is paid; the page again, with a fresh form.
        cookie, new = _cookie()
        answer = _render(
            view, cookie=cookie, action=url_for(".pay", token=token), status=403,
            error="This form has expired. Check the amount and pay again.",
        )  # fmt: skip
        return _with_cookie(answer, cookie, new)
    assert cookie is not None  # the form token needs it
    try:
        started = paying.start_payment(token, cookie, request.form.get("provider", ""))
    except paying.LinkGone:
        return not_found()
    except paying.LinkBusy:
        return redirect(here, code=303)
    except Invalid as error:
        return _render(
            view, cookie=cookie, action=url_for(".pay", token=token), status=422,
            error=error.detail or error.title,
        )  # fmt: skip
    return redirect(started.go_to, code=303)


@blp.get("/<token>/status")
def status(token: str) -> Response:
    """The status for polling: JSON with ``Accept: application/json``, else the page."""
    wants_json = request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json"
    )
    refused = _reserve(token_digest(token))
    if refused is not None:
        return refused
    cookie = request.cookies.get(COOKIE)
    view = paying.pay_view(token, cookie)
    if view is None:
        return not_found_json("/pay/<token>/status") if wants_json else not_found()
    _found(token_digest(token))
    if wants_json:
        methods = paying.methods_for(view.currency) if view.can_pay else []
        return jsonify(view.as_json(methods))
    return _render(view, cookie=cookie, action=url_for(".pay", token=token))


@blp.get("/return/<uuid:attempt_id>")
def returned(attempt_id: uuid.UUID) -> Response:
    """Where the provider sends the payer back: their payment's status (the attempt's random
    id is this page's secret, as the checkout's is the gateway's)."""
    refused = _reserve(str(attempt_id))
    if refused is not None:
        return refused
    view = paying.attempt_view(attempt_id)
    if view is None:
        return not_found()
    _found(str(attempt_id))
    return _render(view, cookie=None, action=None)


@blp.route("/<token>/<path:rest>", methods=["GET", "POST"])
def elsewhere(token: str, rest: str) -> Response:
    """Anything else under a token: the same "no such link" (and counted as one)."""
    refused = _reserve(token_digest(token))
    return refused if refused is not None else not_found()
