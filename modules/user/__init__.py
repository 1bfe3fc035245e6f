"""Users and roles; admins import user CSV files in the background."""

from app.registry import Manifest

manifest = Manifest(
    name="user",
    version="0.1.0",
    summary="Users, roles and CSV imports",
)
