"""The external commodity price feed, IDR to USD conversion and weekly aggregates."""

from datetime import timedelta

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="fetch",
    version="0.2.0",
    summary="Commodity feed, currency rates and aggregates",
    depends=("auth",),
    settings=(
        "fetch_sources",
        "fetch_default_source",
        "fetch_url_hosts",
        "fetch_allowed_hosts",
        "fetch_fresh_seconds",
        "fetch_keep_seconds",
        "fetch_retry_seconds",
        "fetch_connect_timeout",
        "fetch_total_timeout",
        "fetch_max_bytes",
        "fetch_max_redirects",
        "fetch_retries",
        "fetch_allow_loopback",
        "fetch_ca_bundle",
        "rate_provider",
        "rate_provider_url",
        "rate_fixed_idr_usd",
        "rate_cache_seconds",
        "rate_retry_seconds",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, demo, feeds, rates

    hooks.setup(rates.install)
    hooks.setup(feeds.install)
    hooks.blueprint(api.blp)
    hooks.periodic(rates.refresh_rates, every=timedelta(hours=1))
    hooks.periodic(feeds.refresh_feeds, every=timedelta(minutes=1))
    hooks.demo(demo.load_demo)
