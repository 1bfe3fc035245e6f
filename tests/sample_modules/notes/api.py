from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select, text

from app.db import Session, read_only
from app.http import PageArgs, keyset_page, page_schema

from . import services
from .models import Note

blp = Blueprint("notes", __name__, description="Test notes")


class NoteSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    title = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    created_at = ma.fields.DateTime(dump_only=True)


@blp.route("/notes")
class Notes(MethodView):
    @read_only()
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(NoteSchema))
    def get(self, args: dict[str, Any]) -> Any:
        return keyset_page(
            select(Note), [Note.created_at, Note.id], limit=args["limit"], cursor=args["cursor"]
        )

    @blp.arguments(NoteSchema)
    @blp.response(201, NoteSchema)
    def post(self, body: dict[str, Any]) -> Note:
        return services.create_note(body["title"])


@blp.route("/where")
class Where(MethodView):
    @read_only()
    @blp.response(200)
    def get(self) -> dict[str, Any]:
        session = Session()
        if session.get_bind().dialect.name != "postgresql":
            return {"in_recovery": False}
        return {"in_recovery": session.execute(text("SELECT pg_is_in_recovery()")).scalar()}


@blp.route("/flaky")
class Flaky(MethodView):
    @read_only()
    @blp.response(200)
    def get(self) -> dict[str, Any]:
        """On a replica, kill our own connection mid-read; on the primary, answer."""
        session = Session()
        if session.execute(text("SELECT pg_is_in_recovery()")).scalar():
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return {"served_by": "primary"}
