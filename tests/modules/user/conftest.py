"""Fixtures of the user module's tests: the web client's (a served Lapak, Chromium) for the
screens' tests."""

from tests.modules.web.conftest import (  # noqa: F401 - fixtures
    browser,
    either_app,
    embedded_app,
    page,
    served,
    served_embedded,
)
