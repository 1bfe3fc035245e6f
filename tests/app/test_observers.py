"""The core's hooks for observers: request observers, audit sinks and health sections."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import create_app
from app.log import audit
from app.registry import RegistryError
from tests.app.fake_modules import (
    FakeModulePackages,
    embedded_config,
    fake_module_packages,
    manifest_source,
)

PROBE = manifest_source(
    "probe",
    body="""
    SEEN = []

    def failing(request, response, duration_ms):
        raise RuntimeError("a bug in an observer")

    def observe(request, response, duration_ms):
        rule = request.url_rule.rule if request.url_rule is not None else None
        SEEN.append(("request", rule, response.status_code, duration_ms >= 0))

    def sink(event, outcome, fields):
        SEEN.append(("audit", event, outcome, fields))

    def load(hooks):
        hooks.request_observer(failing)
        hooks.request_observer(observe)
        hooks.audit_sink(sink)
        hooks.health_section("probe", lambda: {"ok": True})
    """,
)
ECHO = manifest_source(
    "echo",
    body="""
    def load(hooks):
        hooks.health_section("probe", lambda: {})
    """,
)


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[FakeModulePackages]:
    with fake_module_packages(tmp_path / "packages") as written:
        yield written


def test_observers_see_every_answer_and_a_failing_one_changes_nothing(
    packages: FakeModulePackages, tmp_path: Path
) -> None:
    package = packages.package({"probe": PROBE})
    app = create_app(embedded_config(tmp_path, module_packages=(package,)))
    seen = importlib.import_module(f"{package}.probe").SEEN

    client = app.test_client()
    assert client.get("/api/v1/modules").status_code == 200
    assert client.get("/api/v1/nothing/here").status_code == 404

    assert seen == [
        ("request", "/api/v1/modules", 200, True),
        ("request", None, 404, True),
    ]


def test_audit_lines_reach_the_sinks_whatever_the_log_level(
    packages: FakeModulePackages, tmp_path: Path
) -> None:
    package = packages.package({"probe": PROBE})
    app = create_app(embedded_config(tmp_path, module_packages=(package,), log_level="ERROR"))
    seen = importlib.import_module(f"{package}.probe").SEEN

    with app.app_context():
        audit(logging.getLogger("test"), "auth.login", "failure", reason="wrong-password")
    audit(logging.getLogger("test"), "auth.login", "failure")  # no app: logged only

    assert seen == [("audit", "auth.login", "failure", {"reason": "wrong-password"})]
    assert list(app.extensions["lapak.registry"].wiring.health_sections) == ["probe"]


def test_two_modules_adding_the_same_health_section_are_refused(
    packages: FakeModulePackages, tmp_path: Path
) -> None:
    package = packages.package({"probe": PROBE, "echo": ECHO})

    with pytest.raises(RegistryError, match="health section 'probe'"):
        create_app(embedded_config(tmp_path, module_packages=(package,)))
