"""Login with JWT, one live session per user, role checks for the other modules."""

from app.registry import Manifest

manifest = Manifest(
    name="auth",
    version="0.1.0",
    summary="JWT login, single session, role checks",
    depends=("user",),
)
