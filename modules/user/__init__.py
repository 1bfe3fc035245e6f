"""Users and roles; admins import user CSV files in the background."""

from datetime import timedelta

from app.registry import Manifest, MenuEntry, ModuleHooks

ADMINS = frozenset({"admin"})

manifest = Manifest(
    name="user",
    version="0.3.0",
    summary="Users, roles, activation and CSV imports",
    commands=("users",),
    settings=(
        "password_time_cost",
        "password_memory_kib",
        "password_parallelism",
        "import_dir",
        "import_max_bytes",
        "import_max_rows",
        "import_chunk_rows",
        "import_stale_seconds",
        "import_max_attempts",
        "default_phone_region",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, cli, demo, importer, jobs, passwords, phones, screens

    hooks.setup(passwords.install)
    hooks.setup(phones.install)
    hooks.setup(importer.install)
    hooks.blueprint(api.blp, prefix="users")
    hooks.screens(
        screens.screens,
        MenuEntry("Users", "user_screens.users", ADMINS, order=80),
        MenuEntry("Imports", "user_screens.imports_page", ADMINS, order=81),
    )
    hooks.command(cli.users)
    hooks.demo(demo.load_demo)
    hooks.job(jobs.run_import)
    hooks.periodic(jobs.watch_imports, every=timedelta(seconds=5))  # not behind long imports
