"""The module registry: manifests, refusals, load order and what ``load(hooks)`` wires in."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

import modules.audit
import modules.auth
import modules.dashboard
import modules.fetch
import modules.graphql
import modules.live
import modules.marketplace
import modules.paylink
import modules.payment
import modules.seller
import modules.user
import modules.wallet
import modules.web
import modules.webhook
from app import create_app
from app.config import Settings
from app.db import Base
from app.events import SWEEP_EVERY, dispatch_outbox
from app.registry import (
    Manifest,
    ModuleHooks,
    Periodic,
    RegistryError,
    Wiring,
    discover,
    load,
    resolve,
)
from tests.app.fake_modules import (
    FakeModulePackages,
    embedded_config,
    fake_module_packages,
    manifest_source,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[FakeModulePackages]:
    with fake_module_packages(tmp_path / "packages") as written:
        yield written


def manifests(**depends: tuple[str, ...]) -> dict[str, Manifest]:
    """``manifests(auth=("user",), user=())`` -> name -> Manifest, in the order given."""
    return {name: Manifest(name, "1.0.0", name.title(), deps) for name, deps in depends.items()}


def build_app(tmp_path: Path, **overrides: object) -> Flask:
    return create_app(embedded_config(tmp_path, **overrides))


def settings_with_modules_variable(tmp_path: Path, value: str) -> Settings:
    """Settings as ``LAPAK_MODULES=value`` gives them (everything else pinned to SQLite)."""
    pinned = {k: v for k, v in embedded_config(tmp_path).items() if k != "modules"}
    return Settings.from_env(
        environ={"LAPAK_MODULES": value}, overrides=pinned, dotenv_path=tmp_path / "absent.env"
    )


# --- refusals ---------------------------------------------------------------------------------


def test_missing_dependency_is_refused_naming_the_module_and_the_dependency() -> None:
    with pytest.raises(RegistryError) as refused:
        resolve(manifests(user=(), invoicing=("user", "accounting")), None)

    assert str(refused.value) == (
        "module 'invoicing' depends on 'accounting', which is not installed; "
        "add it or remove the dependency"
    )


def test_missing_dependency_refuses_to_start_the_app(
    tmp_path: Path, packages: FakeModulePackages
) -> None:
    package = packages.package({"invoicing": manifest_source("invoicing", depends=("ledger",))})

    with pytest.raises(RegistryError, match="'invoicing' depends on 'ledger'"):
        build_app(tmp_path, module_packages=(package,))


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        pytest.param({"solo": ("solo",)}, "solo -> solo", id="self"),
        pytest.param({"a": ("b",), "b": ("a",)}, "a -> b -> a", id="pair"),
        pytest.param({"a": ("b",), "b": ("c",), "c": ("a",)}, "a -> b -> c -> a", id="triangle"),
        pytest.param(
            {"a_start": ("b_loop",), "b_loop": ("c_loop",), "c_loop": ("b_loop",)},
            "b_loop -> c_loop -> b_loop",
            id="entered-from-outside",
        ),
    ],
)
def test_cycle_is_refused_with_the_cycle_path(
    graph: dict[str, tuple[str, ...]], cycle: str
) -> None:
    with pytest.raises(RegistryError) as refused:
        resolve(manifests(**graph), None)

    assert str(refused.value) == f"dependency cycle {cycle}; remove one of these depends"


def test_duplicate_module_name_across_two_packages_is_refused_naming_both(
    packages: FakeModulePackages,
) -> None:
    first = packages.package({"ledger": manifest_source("ledger")})
    # Folder names differ: the manifest's name is what must be unique.
    second = packages.package({"ledger_v2": manifest_source("ledger")})

    with pytest.raises(RegistryError) as refused:
        discover((first, second))

    assert str(refused.value) == (
        f"duplicate module name 'ledger' in {first}.ledger and {second}.ledger_v2; "
        "rename one of them"
    )


def test_disabled_module_that_an_enabled_one_needs_is_refused() -> None:
    graph = manifests(user=(), auth=("user",), fetch=("auth",))

    with pytest.raises(RegistryError) as refused:
        resolve(graph, ["fetch", "user"])

    assert str(refused.value) == (
        "module 'fetch' needs 'auth', which LAPAK_MODULES leaves out; "
        "enable 'auth' too or disable 'fetch'"
    )


def test_modules_setting_that_leaves_out_a_dependency_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="module 'auth' needs 'user'"):
        build_app(tmp_path, modules=("auth",))


def test_lapak_modules_variable_that_leaves_out_a_dependency_refuses_to_start(
    tmp_path: Path,
) -> None:
    settings = settings_with_modules_variable(tmp_path, "user, auth, marketplace")
    assert settings.modules == ("user", "auth", "marketplace")

    with pytest.raises(RegistryError, match="module 'marketplace' needs 'fetch'"):
        create_app(settings)


def test_unknown_module_in_lapak_modules_is_refused_listing_the_available_ones() -> None:
    with pytest.raises(RegistryError) as refused:
        resolve(manifests(user=(), auth=("user",)), ["user", "payroll", "crm"])

    assert str(refused.value) == (
        "LAPAK_MODULES names unknown module(s) crm, payroll; available: auth, user"
    )


def test_package_without_a_manifest_is_refused(packages: FakeModulePackages) -> None:
    package = packages.package(
        {
            "ledger": manifest_source("ledger"),
            "scratch": '"""Somebody\'s notes, not a module."""\n',
        }
    )

    with pytest.raises(RegistryError) as refused:
        discover((package,))

    assert str(refused.value) == (
        f"{package}.scratch has no `manifest = Manifest(...)` in its __init__.py; "
        "add one or move the package out of the modules folder"
    )


def test_manifest_that_is_not_a_manifest_instance_is_refused(
    packages: FakeModulePackages,
) -> None:
    package = packages.package(
        {"ledger": 'manifest = {"name": "ledger", "version": "1.0.0", "depends": []}\n'}
    )

    with pytest.raises(RegistryError, match=rf"{package}\.ledger has no `manifest"):
        discover((package,))


def test_private_folders_and_plain_files_in_a_module_package_are_not_modules(
    packages: FakeModulePackages, tmp_path: Path
) -> None:
    package = packages.package({"ledger": manifest_source("ledger"), "_shared": "HELPER = 1\n"})
    (tmp_path / "packages" / package / "helpers.py").write_text("VALUE = 1\n")

    assert list(discover((package,))) == ["ledger"]


def test_module_package_that_cannot_be_imported_is_refused_naming_the_setting() -> None:
    with pytest.raises(RegistryError) as refused:
        discover(("lapak_no_such_module_package",))

    message = str(refused.value)
    assert message.startswith("module package 'lapak_no_such_module_package' cannot be imported")
    assert message.endswith("check LAPAK_MODULE_PACKAGES")


def test_module_package_that_is_a_plain_module_is_refused_naming_the_setting() -> None:
    with pytest.raises(RegistryError, match="LAPAK_MODULE_PACKAGES"):
        discover(("textwrap",))


@pytest.mark.parametrize("name", ["", "Ledger", "sale-order", "sale order", "ledger.v2"])
def test_malformed_manifest_name_is_refused(name: str) -> None:
    with pytest.raises(RegistryError) as refused:
        Manifest(name=name, version="1.0.0", summary="Bad")

    assert str(refused.value) == (
        f"module name {name!r} must be lower-case letters, digits and underscores"
    )


def test_depends_given_as_a_string_is_refused_with_the_tuple_to_write() -> None:
    with pytest.raises(RegistryError) as refused:
        Manifest(name="auth", version="1.0.0", summary="Auth", depends="user")  # type: ignore[arg-type]

    assert str(refused.value) == "module 'auth': depends must be a tuple of names, e.g. ('user',)"


@pytest.mark.parametrize("attribute", ["commands", "settings"])
def test_commands_or_settings_given_as_a_string_are_refused(attribute: str) -> None:
    with pytest.raises(RegistryError) as refused:
        Manifest(name="memo", version="1.0.0", summary="Memo", **{attribute: "memo_ttl"})

    assert str(refused.value) == (
        f"module 'memo': {attribute} must be a tuple of names, e.g. ('memo_ttl',)"
    )


def test_a_command_the_manifest_does_not_declare_is_refused(
    tmp_path: Path, packages: FakeModulePackages
) -> None:
    package = packages.package(
        {
            "memo": manifest_source(
                "memo",
                body="""
                    import click


                    def load(hooks):
                        hooks.command(click.Command("memo-count"))
                    """,
            )
        }
    )

    with pytest.raises(RegistryError) as refused:
        load((package,), None)

    assert str(refused.value) == (
        "module 'memo' adds the command 'memo-count' that its manifest does not declare: "
        "add commands=('memo-count',) to the Manifest"
    )


def test_settings_of_every_discovered_module_are_known_enabled_or_not(
    packages: FakeModulePackages,
) -> None:
    package = packages.package(
        {
            "memo": manifest_source("memo", settings=("memo_ttl_days",)),
            "archive": manifest_source("archive", settings=("archive_dir",)),
        }
    )

    registry = load((package,), ("memo",))

    assert [m.name for m in registry.manifests] == ["memo"]
    assert registry.module_settings == {"memo_ttl_days", "archive_dir"}


def test_malformed_manifest_in_a_module_package_refuses_discovery(
    packages: FakeModulePackages,
) -> None:
    package = packages.package(
        {
            "ledger": (
                "from app.registry import Manifest\n"
                "manifest = Manifest(name='ledger', version='1.0.0', summary='L', "
                "depends='user')\n"
            )
        }
    )

    with pytest.raises(RegistryError, match=re.escape("e.g. ('user',)")):
        discover((package,))


# --- load order -------------------------------------------------------------------------------


def test_load_order_puts_dependencies_first_then_sorts_by_name() -> None:
    graph = manifests(
        top=("right", "left"),
        right=("base",),
        left=("base",),
        base=(),
        alpha=("zulu", "yankee"),
        zulu=(),
        yankee=(),
        lonely=(),
    )

    order = resolve(graph, None)

    assert order == ["yankee", "zulu", "alpha", "base", "left", "lonely", "right", "top"]
    for name in order:
        for dependency in graph[name].depends:
            assert order.index(dependency) < order.index(name)


def test_load_order_does_not_depend_on_discovery_order() -> None:
    graph = manifests(
        marketplace=("auth", "fetch"), fetch=("auth",), auth=("user",), user=(), extra=()
    )
    reversed_graph = dict(reversed(list(graph.items())))

    assert resolve(graph, None) == resolve(reversed_graph, None)
    assert resolve(graph, None) == ["user", "auth", "extra", "fetch", "marketplace"]


def test_enabled_subset_loads_only_the_named_modules_in_order() -> None:
    graph = manifests(user=(), auth=("user",), fetch=("auth",), marketplace=("auth", "fetch"))

    assert resolve(graph, ["auth", "user"]) == ["user", "auth"]
    assert resolve(graph, []) == []


def test_real_modules_load_in_dependency_order() -> None:
    registry = load(("modules",), None)

    names = [m.name for m in registry.manifests]
    assert names == [
        "user",
        "auth",
        "audit",
        "fetch",
        "ledger",
        "marketplace",
        "payment",
        "seller",
        "dashboard",
        "graphql",
        "webhook",
        "live",
        "paylink",
        "wallet",
        "web",
    ]


def test_every_real_module_imports_only_from_the_modules_it_depends_on() -> None:
    """DESIGN: a module imports only from ``app/`` and the modules in its ``depends`` (not those
    it reaches through them: disabling one of those must not break it)."""
    outside = []
    for found in discover(("modules",)).values():
        allowed = {found.manifest.name, *found.manifest.depends}
        for path in Path(found.module.__file__).parent.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "modules" and len(parts) > 1 and parts[1] not in allowed:
                        outside.append(f"{path.relative_to(ROOT)}: {name}")
    assert outside == []


# --- what load(hooks) wires in ----------------------------------------------------------------

MEMO_MODULE = {
    "__init__.py": manifest_source(
        "memo",
        depends=("archive",),
        version="2.1.0",
        commands=("memo-count",),
        body="""
            from datetime import timedelta


            def load(hooks):
                from .. import load_calls
                from . import api, cli, jobs

                load_calls.append(hooks.manifest.name)
                hooks.blueprint(api.blp)
                hooks.command(cli.memo_count)
                hooks.subscribe("memo.written", jobs.index_memo)
                hooks.periodic(jobs.purge_memos, timedelta(minutes=5), queue="imports")
                hooks.job(jobs.reindex_memo)
            """,
    ),
    "models.py": """
        from sqlalchemy import Integer, String
        from sqlalchemy.orm import Mapped, mapped_column

        from app.db import Base


        class Memo(Base):
            __tablename__ = "memo_memo"

            id: Mapped[int] = mapped_column(Integer, primary_key=True)
            text: Mapped[str] = mapped_column(String(200))
        """,
    "api.py": """
        import marshmallow as ma
        from flask.views import MethodView
        from flask_smorest import Blueprint

        blp = Blueprint("memo", __name__, description="Memos")


        class MemoSchema(ma.Schema):
            text = ma.fields.String(required=True)


        @blp.route("/memos")
        class Memos(MethodView):
            @blp.response(200, MemoSchema(many=True))
            def get(self):
                return [{"text": "remember the milk"}]

            @blp.arguments(MemoSchema)
            @blp.response(201, MemoSchema)
            def post(self, memo):
                return memo
        """,
    "cli.py": """
        import click


        @click.command("memo-count")
        @click.option("--shout", is_flag=True)
        def memo_count(shout):
            \"\"\"Print how many memos there are.\"\"\"
            click.echo("MEMOS: 0" if shout else "memos: 0")
        """,
    "jobs.py": """
        def index_memo(payload):
            pass


        def purge_memos():
            pass


        def reindex_memo(memo_id):
            pass
        """,
}

ARCHIVE_MODULE = manifest_source(
    "archive",
    body="""
        def load(hooks):
            from .. import load_calls

            load_calls.append(hooks.manifest.name)
        """,
)

# A module that is present but disabled: importing its code (models, load) would fail loudly.
HEAVY_MODULE = {
    "__init__.py": manifest_source(
        "heavy",
        body="""
            def load(hooks):
                raise AssertionError("load() of a disabled module must not run")
            """,
    ),
    "models.py": 'raise AssertionError("models of a disabled module must not be imported")\n',
}


@pytest.fixture
def memo_package(packages: FakeModulePackages) -> str:
    return packages.package(
        {"memo": MEMO_MODULE, "archive": ARCHIVE_MODULE, "heavy": HEAVY_MODULE},
        package_init="load_calls = []\n",
    )


@pytest.fixture
def memo_app(tmp_path: Path, memo_package: str) -> Flask:
    return build_app(tmp_path, module_packages=(memo_package,), modules=("memo", "archive"))


def test_modules_are_loaded_in_dependency_order(memo_app: Flask, memo_package: str) -> None:
    assert sys.modules[memo_package].load_calls == ["archive", "memo"]
    manifests = memo_app.extensions["lapak.registry"].manifests
    assert [(m.name, m.version) for m in manifests] == [("archive", "1.0.0"), ("memo", "2.1.0")]


def test_module_blueprint_is_served_under_api_v1_and_its_module_name(memo_app: Flask) -> None:
    client = memo_app.test_client()

    listed = client.get("/api/v1/memo/memos")
    created = client.post("/api/v1/memo/memos", json={"text": "call back"})
    unprefixed = client.get("/memos")

    assert (listed.status_code, listed.json) == (200, [{"text": "remember the milk"}])
    assert (created.status_code, created.json) == (201, {"text": "call back"})
    assert unprefixed.status_code == 404
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert set(paths["/api/v1/memo/memos"]) == {"get", "post"}


def test_module_command_is_part_of_the_app_cli(memo_app: Flask) -> None:
    runner = memo_app.test_cli_runner()

    listed = runner.invoke(args=["--help"])
    ran = runner.invoke(args=["memo-count", "--shout"])

    assert "memo-count" in listed.output
    assert (ran.exit_code, ran.output) == (0, "MEMOS: 0\n")


def test_module_subscribers_jobs_and_periodic_jobs_are_in_the_wiring(
    memo_app: Flask, memo_package: str
) -> None:
    jobs = sys.modules[f"{memo_package}.memo.jobs"]
    wiring = memo_app.extensions["lapak.registry"].wiring

    assert wiring.subscribers == {"memo.written": [jobs.index_memo]}
    assert Periodic(jobs.purge_memos, timedelta(minutes=5), "imports") in wiring.periodic
    # The core's outbox sweep is periodic work too.
    assert Periodic(dispatch_outbox, SWEEP_EVERY, "events") in wiring.periodic
    assert wiring.jobs == {
        f"{memo_package}.memo.jobs.purge_memos": jobs.purge_memos,
        f"{memo_package}.memo.jobs.reindex_memo": jobs.reindex_memo,
    }


def test_enabled_module_models_join_the_metadata(memo_app: Flask, memo_package: str) -> None:
    memo_model = sys.modules[f"{memo_package}.memo.models"].Memo

    assert Base.metadata.tables["memo_memo"] is memo_model.__table__


def test_disabled_module_code_is_never_imported(memo_app: Flask, memo_package: str) -> None:
    loaded = [m.name for m in memo_app.extensions["lapak.registry"].manifests]

    assert "heavy" not in loaded
    assert f"{memo_package}.heavy" in sys.modules  # its manifest was read...
    assert f"{memo_package}.heavy.models" not in sys.modules  # ...and nothing else


def test_broken_models_of_an_enabled_module_are_not_silenced(
    tmp_path: Path, memo_package: str
) -> None:
    with pytest.raises(AssertionError, match="models of a disabled module must not be imported"):
        build_app(tmp_path, module_packages=(memo_package,), modules=("heavy",))


def test_models_importing_a_missing_library_fail_with_that_library_named(
    tmp_path: Path, packages: FakeModulePackages
) -> None:
    package = packages.package(
        {
            "ledger": {
                "__init__.py": manifest_source("ledger"),
                "models.py": "import lapak_missing_library_xyz\n",
            }
        }
    )

    with pytest.raises(ModuleNotFoundError) as failed:
        build_app(tmp_path, module_packages=(package,))

    assert failed.value.name == "lapak_missing_library_xyz"


def test_blueprint_own_url_prefix_is_kept_under_the_module_prefix(
    tmp_path: Path, packages: FakeModulePackages
) -> None:
    package = packages.package(
        {
            "ledger": manifest_source(
                "ledger",
                body="""
                    from flask.views import MethodView
                    from flask_smorest import Blueprint

                    blp = Blueprint("ledger_journals", __name__, url_prefix="/journals")


                    @blp.route("/")
                    class Journals(MethodView):
                        @blp.response(200)
                        def get(self):
                            return {"journals": []}


                    def load(hooks):
                        hooks.blueprint(blp)
                    """,
            )
        }
    )
    app = build_app(tmp_path, module_packages=(package,))

    assert app.test_client().get("/api/v1/ledger/journals/").status_code == 200


# --- LAPAK_MODULES and GET /api/v1/modules ----------------------------------------------------


def test_modules_endpoint_lists_the_real_modules_in_dependency_order(tmp_path: Path) -> None:
    response = build_app(tmp_path).test_client().get("/api/v1/modules")

    assert response.status_code == 200
    assert response.json["items"] == [
        {
            "name": package.manifest.name,
            "version": package.manifest.version,
            "summary": package.manifest.summary,
            "depends": list(package.manifest.depends),
            "order": order,
        }
        for order, package in enumerate(
            [
                modules.user,
                modules.auth,
                modules.audit,
                modules.fetch,
                modules.ledger,
                modules.marketplace,
                modules.payment,
                modules.seller,
                modules.dashboard,
                modules.graphql,
                modules.webhook,
                modules.live,
                modules.paylink,
                modules.wallet,
                modules.web,
            ]
        )
    ]


def test_modules_setting_loads_only_the_subset(tmp_path: Path) -> None:
    app = build_app(tmp_path, modules=("auth", "user"))

    items = app.test_client().get("/api/v1/modules").json["items"]

    assert [(item["name"], item["order"]) for item in items] == [("user", 0), ("auth", 1)]


def test_lapak_modules_variable_loads_only_the_subset(tmp_path: Path) -> None:
    settings = settings_with_modules_variable(tmp_path, " fetch ,user,auth ")

    items = create_app(settings).test_client().get("/api/v1/modules").json["items"]

    assert [item["name"] for item in items] == ["user", "auth", "fetch"]


def test_modules_override_given_as_a_comma_separated_string_loads_the_subset(
    tmp_path: Path,
) -> None:
    app = build_app(tmp_path, modules="user,auth")

    assert [m.name for m in app.extensions["lapak.registry"].manifests] == ["user", "auth"]


def _hooks(name: str, wiring: Wiring) -> ModuleHooks:
    return ModuleHooks(Manifest(name=name, version="1", summary="s"), wiring)


def test_a_scope_belongs_to_one_module_and_has_a_plain_name() -> None:
    wiring = Wiring()
    _hooks("shop", wiring).scope("stock:read", "Read stock", roles=("seller",))
    assert wiring.scopes["stock:read"].roles == frozenset({"seller"})
    assert wiring.scopes["stock:read"].module == "shop"
    with pytest.raises(RegistryError, match="'shop' and 'other' both declare the scope"):
        _hooks("other", wiring).scope("stock:read", "Again", roles=("admin",))
    for bad in ("stock", "Stock:Read", "stock read", ""):
        with pytest.raises(RegistryError, match="must look like"):
            _hooks("shop", wiring).scope(bad, "x", roles=("admin",))
    with pytest.raises(RegistryError, match="a tuple"):
        _hooks("shop", wiring).scope("stock:write", "x", roles="admin")
