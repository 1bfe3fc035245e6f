"""The external commodity price feed, IDR to USD conversion and weekly aggregates."""

from datetime import timedelta

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="fetch",
    version="0.2.0",
    summary="Commodity feed, currency rates and aggregates",
    depends=("auth",),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, demo, feeds, rates

    hooks.setup(rates.install)
    hooks.setup(feeds.install)
    hooks.blueprint(api.blp)
    hooks.periodic(rates.refresh_rates, every=timedelta(hours=1))
    hooks.periodic(feeds.refresh_feeds, every=timedelta(minutes=1))
    hooks.demo(demo.load_demo)
