"""Notes: a tiny module that exercises the core (routing, pagination, outbox, jobs)."""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(name="notes", version="1.0.0", summary="Test notes")


def load(hooks: ModuleHooks) -> None:
    from . import api, services

    hooks.blueprint(api.blp)
    hooks.subscribe("note.created", services.record_delivery)
    hooks.subscribe("note.created", services.refuse_failing_titles)
    hooks.job(services.create_note_job)
    hooks.health_section("notes", services.note_figures)
