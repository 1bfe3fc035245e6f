"""Users and roles; admins import user CSV files in the background."""

from datetime import timedelta

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="user",
    version="0.3.0",
    summary="Users, roles, activation and CSV imports",
)


def load(hooks: ModuleHooks) -> None:
    from . import api, cli, importer, jobs, passwords, phones

    hooks.setup(passwords.install)
    hooks.setup(phones.install)
    hooks.setup(importer.install)
    hooks.blueprint(api.blp, prefix="users")
    hooks.command(cli.users)
    hooks.demo(cli.load_demo)
    hooks.job(jobs.run_import)
    hooks.periodic(jobs.watch_imports, every=timedelta(seconds=5))  # not behind long imports
