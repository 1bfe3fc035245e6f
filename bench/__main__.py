"""``python -m bench``: run every benchmark with its defaults, one after the other.

``python -m bench NAME...`` runs only those; ``python -m bench.NAME --help`` shows a benchmark's
own options.
"""

from __future__ import annotations

import importlib
import sys

#: Benchmark name -> module with a ``main(argv) -> int``; its results go to results/<name>.json.
BENCHMARKS = {
    "http_overhead": "bench.http_overhead",
    "auth": "bench.auth",
    "user_import": "bench.user_import",
    "fetch": "bench.fetch",
    "orders": "bench.orders",
    "ledger": "bench.ledger",
    "payments": "bench.payments",
    "webhooks": "bench.webhooks",
    "dashboard": "bench.dashboard",
    "graphql": "bench.graphql",
    "live": "bench.live",
}


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    status = 0
    for name in argv or list(BENCHMARKS):
        status = importlib.import_module(BENCHMARKS[name]).main([]) or status
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
