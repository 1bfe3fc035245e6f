"""Login with JWT, one live session per user, API keys with signed requests, role and scope
checks for the other modules."""

from datetime import timedelta

from app.registry import Manifest, MenuEntry, ModuleHooks
from app.security import requires

__all__ = ["manifest", "requires"]

manifest = Manifest(
    name="auth",
    version="0.4.0",
    summary="JWT login, single session, API keys with signed requests, role checks",
    depends=("user",),
    settings=(
        "jwt_algorithm",
        "jwt_secret",
        "jwt_private_key_file",
        "jwt_key_id",
        "jwt_public_keys",
        "jwt_issuer",
        "jwt_audience",
        "session_idle_minutes",
        "session_absolute_hours",
        "session_cache_seconds",
        "login_max_account_failures",
        "login_max_ip_failures",
        "login_window_seconds",
        "login_lockout_seconds",
        "login_max_lockout_seconds",
        "api_key_window_seconds",
        "api_key_roll_grace_hours",
        "api_key_max_grace_hours",
        "api_key_cache_seconds",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, api_keys, demo, replay, screens, services

    hooks.setup(services.install)
    hooks.blueprint(api.blp)
    hooks.screens(
        screens.screens,
        MenuEntry(
            "API keys", "auth_screens.api_keys_page", frozenset(api_keys.KEY_ROLES), order=90
        ),
    )
    hooks.authenticator(services.authenticate_request)
    hooks.on_commit("user.updated", services.forget_user_sessions)
    hooks.on_commit("user.updated", services.forget_user_keys)
    hooks.subscribe("user.deactivated", services.end_sessions_of_deactivated_user)
    hooks.subscribe("user.password_set", services.end_sessions_after_password_set)
    hooks.periodic(replay.forget_expired, every=timedelta(minutes=10))
    hooks.demo(demo.load_demo)
