"""The external commodity price feed, IDR to USD conversion and weekly aggregates."""

from app.registry import Manifest

manifest = Manifest(
    name="fetch",
    version="0.1.0",
    summary="Commodity feed, currency rates and aggregates",
    depends=("auth",),
)
