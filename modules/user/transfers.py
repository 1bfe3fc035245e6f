"""The import's files over HTTP, the same for the API and the web screens: how large an upload
may be, and the two downloads (the template's header row, and the failed rows as CSV)."""

from __future__ import annotations

import uuid
from pathlib import Path

from flask import Response, request, stream_with_context

from . import imports
from .csvfile import template
from .importer import import_settings

#: Room for the multipart envelope (boundaries, part headers, the form fields) around the file.
MULTIPART_ROOM = 64 * 1024


def allow_upload_body() -> None:
    """Let this request's body be as large as an import file (the app's limit is the JSON
    bodies'), and refuse at once, before reading it, a body that declares more."""
    limit = import_settings().max_bytes
    request.max_content_length = limit + MULTIPART_ROOM
    if request.content_length is not None and request.content_length > limit + MULTIPART_ROOM:
        raise imports.ImportTooLarge(too_large_message())


def too_large_message() -> str:
    return f"the file is larger than the limit of {import_settings().max_bytes} bytes"


def template_response() -> Response:
    """``users-import-template.csv``: the header row an import file starts with."""
    return Response(
        template(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="users-import-template.csv"'},
    )


def errors_csv_response(job_uuid: uuid.UUID) -> Response:
    """The failed rows of an import as uploaded plus an ``error`` column, streamed as
    ``<uploaded name>-errors.csv``."""
    job, lines = imports.errors_csv(job_uuid)
    name = f"{Path(job.filename).stem}-errors.csv"
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
