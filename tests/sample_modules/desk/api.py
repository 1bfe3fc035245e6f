"""``/api/v1/desk/notes``: a JSON endpoint open to a logged-in browser's cookie."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.security import requires
from tests.sample_modules.notes import services
from tests.sample_modules.notes.api import NoteSchema

blp = Blueprint("desk", __name__, description="Sample browser endpoint")


@blp.route("/notes")
class BrowserNotes(MethodView):
    @requires("staff", "admin", browser=True)
    @blp.arguments(NoteSchema)
    @blp.response(201, NoteSchema)
    def post(self, body: dict[str, Any]) -> Any:
        return services.create_note(body["title"])
