"""The desk's screens: plain Flask views guarded by ``modules.web.screen``."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from modules.web import screen
from tests.sample_modules.notes.services import create_note

from . import services

screens = Blueprint(
    "desk_screens",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@screens.get("/")
@screen("staff", "admin")
def notes() -> str:
    return render_template("desk/notes.html", notes=services.list_notes())


@screens.post("/")
@screen("staff", "admin")
def add_note() -> Response:
    title = request.form.get("title", "").strip()[:200]
    if not title:
        flash("Give the note a title.", "error")
    else:
        create_note(title)
        flash(f"Note {title!r} added.", "success")
    return redirect(url_for(".notes"), 303)


@screens.post("/fragment")
@screen("staff", "admin")
def add_note_fragment() -> str:
    create_note(request.form.get("title", "from htmx")[:200])
    return render_template("desk/_list.html", notes=services.list_notes())


@screens.get("/audit")
@screen("admin")
def audit() -> str:
    return render_template("desk/audit.html")


@screens.get("/chart")
@screen()
def chart() -> str:
    count = services.count_notes()
    return render_template("desk/chart.html", points=[[1, 2, 3], [count, count + 1, count + 3]])
