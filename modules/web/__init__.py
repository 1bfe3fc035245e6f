"""The web client's shell at ``/web/``: login and logout, the layout every screen extends, the
menu, and the vendored browser libraries (htmx with its SSE extension, uPlot).

A browser logs in at ``/web/login`` into an ordinary Lapak session (the API's single-session
rule holds: a login elsewhere ends this one), kept in the ``__Host-lapak_session`` cookie
(``lapak_session`` in development, over http), and every form or script that changes something
sends the session's CSRF token (see ``modules/auth/browser.py``). Every ``/web/`` answer
carries a strict Content-Security-Policy (scripts and styles from our own files only), and
pages are never stored by caches.

How a module adds screens
-------------------------
A screen is a view of a plain Flask blueprint that renders a Jinja template extending
``web/layout.html``; the module hands the blueprint and its menu entries to ``hooks.screens``
and they are served at ``/web/<module>/`` whenever a shell is loaded::

    # modules/orders/screens.py
    from flask import Blueprint, flash, redirect, render_template, url_for

    from modules.web import screen

    screens = Blueprint("orders_screens", __name__, template_folder="templates")


    @screens.get("/")
    @screen("staff", "admin")  # requires("staff", "admin", browser=True)
    def orders() -> str:
        return render_template("orders/list.html", orders=services.list_orders(...))


    @screens.post("/<uuid:order_id>/confirm")
    @screen("staff")  # the CSRF token was checked before the view runs
    def confirm(order_id: uuid.UUID) -> Response:
        services.confirm_order(order_id)  # the same service as the API
        flash("Order confirmed", "success")
        return redirect(url_for(".orders"), 303)  # post/redirect/get


    # modules/orders/__init__.py, in load(hooks):
    from app.registry import MenuEntry

    hooks.screens(
        screens.screens,
        MenuEntry("Orders", "orders_screens.orders", frozenset({"staff", "admin"}), order=20),
    )

A menu entry names a view that takes no arguments: one that names no view, or a view whose
address needs arguments, stops the app at start (``RegistryError``). The menu marks the entry of
the screen shown (``aria-current="page"``) or else the entry whose address the screen's lies
under (``"true"``: ``/web/orders/<id>`` under Orders at ``/web/orders/``), so a module's detail
screens need nothing more to keep their list's entry marked.

The template (``modules/orders/templates/orders/list.html``) fills the layout's blocks:
``title``, ``main``, and optionally ``head`` (stylesheets) and ``scripts`` (``<script src>``
only: no inline script, no ``style=`` attribute, no CDN; our own and the vendored files are
under ``url_for("web.static", filename=...)``, e.g. ``vendor/uplot/uPlot.iife.min.js`` and
``vendor/htmx-ext-sse/sse.min.js``). A script gets its data from ``data-*`` attributes written
with ``tojson`` inside SINGLE quotes, and reads them with ``JSON.parse(element.dataset.x)``::

    <div id="chart" data-points='{{ points | tojson }}'></div>

(``tojson`` escapes ``'``, ``<``, ``>`` and ``&`` but not ``"``, which JSON itself writes: in a
double-quoted attribute a ``"`` in the data would end the attribute and let the data write
markup.) Every form that posts carries the token::

    {% extends "web/layout.html" %}
    {% block title %}Orders{% endblock %}
    {% block main %}
      <form method="post" action="{{ url_for('.confirm', order_id=order.id) }}">
        <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
        <button type="submit">Confirm</button>
      </form>
    {% endblock %}

htmx requests send it by themselves (the layout's ``hx-headers``). On any ``/web/`` page the
shell turns refusals into what a person needs: no session, or one replaced, expired or ended,
goes to the login page (saying why, and back here after logging in; htmx requests get
``HX-Redirect``); every other refusal shows a page saying what happened, with the status and
headers the API would answer: a wrong role or a missing CSRF token (``403``), an unknown address
(``404``), a method the address does not take (``405``, e.g. ``GET /web/logout``), any domain
error a service raises (its status), the database down (``503`` with ``Retry-After``; the login
form shows itself again, saying so); for an htmx request that refusal is a notice instead,
which the layout's script (``static/lapak.js``) shows in the notices area (``HX-Retarget:
#notices``), as it says when any other htmx request fails. A screen that wants to say
something better catches the domain error and ``flash``-es it. A client that asks for JSON
(``Accept``) gets problem+json.
``flash(message, category)`` shows in the layout's notices (categories ``info``, ``success``,
``warning``, ``error``). A module that does not want to depend on ``web`` guards its screens
with ``app.security.requires(*roles, browser=True)`` instead of ``screen``: the same thing.

What screens share comes with the layout. ``web/macros.html`` has ``when(moment)`` (a datetime or
the API's RFC 3339 text, in UTC, in a ``<time>``), ``state(name, text, tone)`` (a word in a pill
of a tone: ``ok``, ``warn``, ``bad``, ``info``, or grey; a module maps its states to tones) and
``pager(next_url, first_url, previous_url)``::

    {% from "web/macros.html" import when, state, pager %}

(a module imports it as it extends ``web/layout.html``: both come with the shell, and screens
are served only when one is loaded). ``static/lapak.css`` styles them and the rest of what
screens share: ``.card``, ``.field`` with ``.hint`` and ``.field-error``, ``.filters`` (a GET
form's row), ``.form-actions``, ``.choice``, ``button.primary`` and ``a.button``,
``.table-scroll`` (a wide table's frame), ``.facts``, ``.figures``, ``.page-head``, ``.crumbs``,
``.visually-hidden``, ``.id``, ``.nowrap``, ``.empty``. A module's own stylesheet (its
blueprint's static folder, linked in the ``head`` block) has only what its screens alone need.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from app.registry import Manifest, ModuleHooks
from app.security import requires

__all__ = ["manifest", "screen"]

F = TypeVar("F", bound=Callable[..., Any])

manifest = Manifest(
    name="web",
    version="0.1.0",
    summary="The web client's shell: login, layout, menu, vendored htmx and uPlot",
    depends=("user", "auth"),
)


def screen(*roles: str) -> Callable[[F], F]:
    """Guard a web screen: only a logged-in browser with one of ``roles`` (anyone logged in if
    none) gets in, with its session cookie, and a state-changing request only with the CSRF
    token. The shell answers refusals on ``/web/`` pages (see above)."""
    return requires(*roles, browser=True)


def load(hooks: ModuleHooks) -> None:
    from . import pages, shell

    hooks.web_shell(shell.blp)
    hooks.setup(pages.install)
