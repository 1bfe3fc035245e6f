"""The module registry: find manifests, order them by ``depends``, wire each module in.

Like Odoo's loader, manifests are read first (a module's ``__init__.py`` holds only its
``manifest`` and an optional ``load(hooks)`` function); code is imported only for the modules that
are enabled, in dependency order. Every refusal is a :class:`RegistryError` with one line that
says what to change.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `lapak --help` reads manifests through this file: keep it light
    import click
    from flask_smorest import Blueprint

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class RegistryError(RuntimeError):
    """The set of modules cannot be loaded as configured."""


@dataclass(frozen=True)
class Manifest:
    """What a module says about itself. Plain data: no imports of the module's code."""

    name: str
    version: str
    summary: str
    depends: tuple[str, ...] = ()
    #: The ``lapak`` commands ``load(hooks)`` adds: ``lapak --help`` lists them from here without
    #: importing the module's code.
    commands: tuple[str, ...] = ()
    #: The ``LAPAK_*`` variables the module reads from ``Settings.module_env``, lower-case
    #: without the prefix: any other ``LAPAK_*`` variable is reported as a probable misspelling.
    settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= NAME_CHARS:
            raise RegistryError(
                f"module name {self.name!r} must be lower-case letters, digits and underscores"
            )
        for attribute in ("depends", "commands", "settings"):
            value = getattr(self, attribute)
            if isinstance(value, str):
                raise RegistryError(
                    f"module {self.name!r}: {attribute} must be a tuple of names, e.g. ({value!r},)"
                )


@dataclass
class Discovered:
    manifest: Manifest
    package: str
    module: ModuleType


@dataclass
class Periodic:
    func: Callable[..., Any]
    every: timedelta
    queue: str


@dataclass(frozen=True)
class ApiScope:
    """A scope an API key may be given (``orders:read``): what it opens and to whom.

    ``roles`` are the owner roles whose keys may hold it; a view opens to it with
    ``@requires(..., scope="orders:read")``.
    """

    name: str
    description: str
    roles: frozenset[str]
    module: str


@dataclass(frozen=True)
class MenuEntry:
    """A link in the web client's menu (``hooks.screens``): shown to users with one of
    ``roles`` (everyone logged in if empty), sorted by ``order`` then ``label``."""

    label: str
    #: The Flask endpoint of the screen, e.g. ``"marketplace_screens.orders"``.
    endpoint: str
    roles: frozenset[str] = frozenset()
    order: int = 100


SCOPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-:")


@dataclass
class Wiring:
    """Everything the loaded modules registered, for the app factory, jobs and events."""

    blueprints: list[tuple[str, Blueprint]] = field(default_factory=list)
    commands: list[click.Command] = field(default_factory=list)
    jobs: dict[str, Callable[..., Any]] = field(default_factory=dict)
    subscribers: dict[str, list[Callable[[dict[str, Any]], None]]] = field(default_factory=dict)
    #: Subscribers to every event, whatever its name (``ModuleHooks.subscribe_all``).
    every_event: list[Callable[[Any], None]] = field(default_factory=list)
    periodic: list[Periodic] = field(default_factory=list)
    on_commit: dict[str, list[Callable[[dict[str, Any]], None]]] = field(default_factory=dict)
    authenticator: Callable[[], Any] | None = None
    setups: list[Callable[[Any, Any], None]] = field(default_factory=list)
    demos: list[Callable[[], list[str]]] = field(default_factory=list)
    #: The parts of ``lapak demo``'s history (``ModuleHooks.demo_history``), in load order.
    demo_histories: list[Callable[[], Any]] = field(default_factory=list)
    authenticator_module: str | None = None
    #: The API-key scope catalogue: every scope a module declared with ``hooks.scope(...)``.
    scopes: dict[str, ApiScope] = field(default_factory=dict)
    request_observers: list[Callable[[Any, Any, float], None]] = field(default_factory=list)
    audit_sinks: list[Callable[[str, str, dict[str, Any]], None]] = field(default_factory=list)
    health_sections: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    #: The web client: the shell (one module's blueprint, at ``/web/``), the modules' screens
    #: (each at ``/web/<module>/``) and their menu entries.
    web_shell: Blueprint | None = None
    web_shell_module: str | None = None
    screens: list[tuple[str, Blueprint]] = field(default_factory=list)
    menu: list[MenuEntry] = field(default_factory=list)


class ModuleHooks:
    """The API a module's ``load(hooks)`` uses to plug itself into the application."""

    def __init__(self, manifest: Manifest, wiring: Wiring) -> None:
        self.manifest = manifest
        self._wiring = wiring

    def blueprint(self, blueprint: Blueprint, prefix: str | None = None) -> None:
        """Serve ``blueprint`` under ``/api/v1/<prefix>`` (default: the module's name), plus the
        blueprint's own ``url_prefix``."""
        self._wiring.blueprints.append((prefix or self.manifest.name, blueprint))

    def command(self, command: click.Command) -> None:
        """Add a click command or group to the ``lapak`` CLI (declared in the manifest's
        ``commands``)."""
        if command.name not in self.manifest.commands:
            raise RegistryError(
                f"module {self.manifest.name!r} adds the command {command.name!r} that its "
                f"manifest does not declare: add commands=({command.name!r},) to the Manifest"
            )
        self._wiring.commands.append(command)

    def job(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Declare a background job function (usable as a decorator)."""
        self._wiring.jobs[f"{func.__module__}.{func.__qualname__}"] = func
        return func

    def subscribe(self, event: str, subscriber: Callable[[dict[str, Any]], None]) -> None:
        """Call ``subscriber(payload)`` for every committed ``event`` (at least once)."""
        self._wiring.subscribers.setdefault(event, []).append(subscriber)

    def subscribe_all(self, subscriber: Callable[[Any], None]) -> None:
        """Call ``subscriber(event)`` for every committed event, whatever its name, with an
        ``app.events.CommittedEvent`` (its id, name, time and payload): for fan-out such as
        webhooks. Like ``subscribe``: at least once, in a savepoint of the dispatch's
        transaction, after the event's named subscribers."""
        self._wiring.every_event.append(subscriber)

    def on_commit(self, event: str, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(payload)`` in this process right after a transaction that emitted
        ``event`` commits. Best effort (e.g. dropping a cache); use ``subscribe`` for work that
        must happen."""
        self._wiring.on_commit.setdefault(event, []).append(listener)

    def authenticator(self, authenticate: Callable[[], Any]) -> None:
        """Provide the function that turns the current request into an ``app.security.Principal``
        (or raises ``Unauthenticated``). One module may do this."""
        if self._wiring.authenticator_module not in (None, self.manifest.name):
            raise RegistryError(
                f"modules {self._wiring.authenticator_module!r} and {self.manifest.name!r} both "
                "provide the authenticator; disable one of them"
            )
        self._wiring.authenticator = authenticate
        self._wiring.authenticator_module = self.manifest.name

    def scope(self, name: str, description: str, roles: Iterable[str]) -> None:
        """Declare an API-key scope (``"orders:read"``) that this module's views name in
        ``@requires(scope=...)``; keys of owners with one of ``roles`` may be given it. A scope
        belongs to one module; the modules depending on it use it without declaring it again."""
        if not name or not set(name) <= SCOPE_CHARS or ":" not in name:
            raise RegistryError(
                f"module {self.manifest.name!r}: scope {name!r} must look like 'orders:read' "
                "(lower-case letters, digits, '_', '-' and one ':')"
            )
        owner = self._wiring.scopes.get(name)
        if owner is not None:
            raise RegistryError(
                f"modules {owner.module!r} and {self.manifest.name!r} both declare the scope "
                f"{name!r}; keep it in one of them"
            )
        if isinstance(roles, str):
            raise RegistryError(
                f"module {self.manifest.name!r}: the roles of scope {name!r} are a tuple, "
                f"e.g. ({roles!r},)"
            )
        self._wiring.scopes[name] = ApiScope(
            name, description, frozenset(roles), self.manifest.name
        )

    def setup(self, install: Callable[[Any, Any], None]) -> None:
        """Call ``install(app, settings)`` once the app exists: read and validate the module's
        own settings (raise ``SettingsError``) and keep per-app state in ``app.extensions``."""
        self._wiring.setups.append(install)

    def demo(self, load_demo: Callable[[], list[str]]) -> None:
        """Add a step to ``lapak demo``; it returns lines to print (e.g. credentials). Steps run
        before the history, with the clock just before its first moment (what they make was
        there before it), and leave alone what an earlier run made."""
        self._wiring.demos.append(load_demo)

    def demo_history(self, start: Callable[[], Any]) -> None:
        """Add a part to ``lapak demo``'s history (:mod:`app.demo`): after every ``demo`` step,
        ``start()`` returns an ``app.demo.DemoHistory`` whose ``step`` is called at each moment
        of the history (the clock at that moment), after those of the modules loaded before."""
        self._wiring.demo_histories.append(start)

    def request_observer(self, observe: Callable[[Any, Any, float], None]) -> None:
        """Call ``observe(request, response, duration_ms)`` after every request, once its answer
        is final (``app/http.py``). It runs on the request path: it must be quick (append to a
        buffer, no I/O) and never raise (what it raises is logged and the answer still goes)."""
        self._wiring.request_observers.append(observe)

    def audit_sink(self, sink: Callable[[str, str, dict[str, Any]], None]) -> None:
        """Call ``sink(event, outcome, fields)`` for every :func:`app.log.audit` line, whatever
        the log level. Quick and never raising, as a request observer."""
        self._wiring.audit_sinks.append(sink)

    def health_section(self, name: str, figures: Callable[[], dict[str, Any]]) -> None:
        """Add ``name: figures()`` to the system health report (``GET /api/v1/system/health``,
        when the audit module is loaded). ``figures`` reads what it needs (JSON-able values);
        an exception there shows as that section's error, not as a failed report."""
        if name in self._wiring.health_sections:
            raise RegistryError(f"two modules add the health section {name!r}; rename one")
        self._wiring.health_sections[name] = figures

    def web_shell(self, blueprint: Blueprint) -> None:
        """Provide the web client's shell, served at ``/web/``: login, the layout that screens
        extend, the menu. One module may do this; without it no screen is served."""
        if self._wiring.web_shell_module not in (None, self.manifest.name):
            raise RegistryError(
                f"modules {self._wiring.web_shell_module!r} and {self.manifest.name!r} both "
                "provide the web shell; disable one of them"
            )
        self._wiring.web_shell = blueprint
        self._wiring.web_shell_module = self.manifest.name

    def screens(self, blueprint: Blueprint, *menu: MenuEntry) -> None:
        """Serve this module's web screens (a plain Flask blueprint rendering Jinja templates
        that extend the shell's layout) at ``/web/<module>/`` plus the blueprint's own
        ``url_prefix``, and add ``menu`` to the web client's menu. Served only when a module
        provides the shell (``web_shell``): a module does not depend on the web client to
        offer screens to it."""
        self._wiring.screens.append((self.manifest.name, blueprint))
        self._wiring.menu.extend(menu)

    def periodic(self, func: Callable[..., Any], every: timedelta, queue: str = "periodic") -> None:
        """Enqueue ``func()`` every ``every`` (by the worker's ticker, once across workers)."""
        self.job(func)
        self._wiring.periodic.append(Periodic(func, every, queue))


@dataclass
class Registry:
    """The loaded modules, in load order, and what they registered."""

    loaded: list[Discovered]
    wiring: Wiring
    #: Every discovered module's settings, enabled or not: a disabled module's setting is no
    #: misspelling.
    module_settings: frozenset[str] = frozenset()

    @property
    def manifests(self) -> list[Manifest]:
        return [d.manifest for d in self.loaded]


def discover(packages: Sequence[str]) -> dict[str, Discovered]:
    """Import the manifest of every sub-package of ``packages``; refuse duplicate names."""
    found: dict[str, Discovered] = {}
    for package_name in packages:
        try:
            package = importlib.import_module(package_name)
        except ImportError as error:
            raise RegistryError(
                f"module package {package_name!r} cannot be imported ({error}); "
                "check LAPAK_MODULE_PACKAGES"
            ) from None
        if not hasattr(package, "__path__"):
            raise RegistryError(
                f"module package {package_name!r} is a single module, not a package (a folder "
                "with __init__.py); check LAPAK_MODULE_PACKAGES"
            )
        for info in pkgutil.iter_modules(package.__path__):
            if not info.ispkg or info.name.startswith("_"):
                continue
            dotted = f"{package_name}.{info.name}"
            module = importlib.import_module(dotted)
            manifest = getattr(module, "manifest", None)
            if not isinstance(manifest, Manifest):
                raise RegistryError(
                    f"{dotted} has no `manifest = Manifest(...)` in its __init__.py; "
                    "add one or move the package out of the modules folder"
                )
            if manifest.name in found:
                raise RegistryError(
                    f"duplicate module name {manifest.name!r} in {found[manifest.name].package} "
                    f"and {dotted}; rename one of them"
                )
            found[manifest.name] = Discovered(manifest, dotted, module)
    return found


def resolve(manifests: Mapping[str, Manifest], enabled: Iterable[str] | None) -> list[str]:
    """Return the enabled module names in load order (dependencies first, then by name)."""
    if enabled is None:
        wanted = set(manifests)
    else:
        wanted = set(enabled)
        unknown = sorted(wanted - set(manifests))
        if unknown:
            raise RegistryError(
                f"LAPAK_MODULES names unknown module(s) {', '.join(unknown)}; "
                f"available: {', '.join(sorted(manifests))}"
            )
    for name in sorted(wanted):
        for dependency in manifests[name].depends:
            if dependency not in manifests:
                raise RegistryError(
                    f"module {name!r} depends on {dependency!r}, which is not installed; "
                    f"add it or remove the dependency"
                )
            if dependency not in wanted:
                raise RegistryError(
                    f"module {name!r} needs {dependency!r}, which LAPAK_MODULES leaves out; "
                    f"enable {dependency!r} too or disable {name!r}"
                )
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name) :], name]
            raise RegistryError(
                f"dependency cycle {' -> '.join(cycle)}; remove one of these depends"
            )
        state[name] = "visiting"
        for dependency in sorted(manifests[name].depends):
            visit(dependency, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in sorted(wanted):
        visit(name, [])
    return order


def enabled_manifests(packages: Sequence[str], enabled: Iterable[str] | None) -> list[Manifest]:
    """The enabled modules' manifests in load order, without importing any module's code."""
    found = discover(packages)
    order = resolve({name: d.manifest for name, d in found.items()}, enabled)
    return [found[name].manifest for name in order]


def load(packages: Sequence[str], enabled: Iterable[str] | None) -> Registry:
    """Discover, resolve and load modules; each one's ``models`` is imported, then ``load()``."""
    found = discover(packages)
    order = resolve({name: d.manifest for name, d in found.items()}, enabled)
    wiring = Wiring()
    loaded = []
    for name in order:
        discovered = found[name]
        import_models(discovered.package)
        hook = getattr(discovered.module, "load", None)
        if hook is not None:
            hook(ModuleHooks(discovered.manifest, wiring))
        loaded.append(discovered)
    settings = frozenset(name for d in found.values() for name in d.manifest.settings)
    return Registry(loaded, wiring, settings)


def import_models(package: str) -> ModuleType | None:
    """Import ``<package>.models`` when the module has one, so its tables join the metadata."""
    try:
        return importlib.import_module(f"{package}.models")
    except ModuleNotFoundError as error:
        if error.name == f"{package}.models":
            return None
        raise
