"""Desk: sample screens on the web shell, as a module adds them (for the web client's tests).

Staff and admins see the notes and add one (a form, and an htmx button); only admins open the
audit desk; everyone logged in sees a chart drawn with the vendored uPlot. A JSON endpoint
that accepts the browser's session (``browser=True``) adds a note too.
"""

from app.registry import Manifest, MenuEntry, ModuleHooks

manifest = Manifest(
    name="desk", version="1.0.0", summary="Sample web screens", depends=("web", "notes")
)

STAFF = frozenset({"staff", "admin"})


def load(hooks: ModuleHooks) -> None:
    from . import api, screens

    hooks.blueprint(api.blp)
    hooks.screens(
        screens.screens,
        # First for staff in every test app, before the real modules' screens (the Dashboard
        # is 10): the shell's tests land on it after logging in.
        MenuEntry("Notes", "desk_screens.notes", STAFF, order=1),
        MenuEntry("Audit desk", "desk_screens.audit", frozenset({"admin"}), order=20),
        MenuEntry("Chart", "desk_screens.chart", order=30),
    )
