"""The same endpoint twice, open and behind ``@requires()``: what ``bench.auth`` compares.

Only ``bench.auth`` loads it; a real installation never sees it.
"""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="authprobe",
    version="1.0.0",
    summary="Benchmark probe: one view served open and behind authentication",
    depends=("auth",),
)


def load(hooks: ModuleHooks) -> None:
    from . import api

    hooks.blueprint(api.blp)
    hooks.scope("probe:read", "Benchmark probe", roles=("seller", "admin"))
