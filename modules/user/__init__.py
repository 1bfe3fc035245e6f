"""Users and roles; admins import user CSV files in the background."""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="user",
    version="0.2.0",
    summary="Users, roles and activation",
)


def load(hooks: ModuleHooks) -> None:
    from . import api, cli, passwords

    hooks.setup(passwords.install)
    hooks.blueprint(api.blp, prefix="users")
    hooks.command(cli.users)
    hooks.demo(cli.load_demo)
