"""Lapak benchmarks: ``python -m bench.<name>`` (or ``python -m bench`` for all of them).

Each benchmark starts what it needs, measures its own baseline in the same run, prints a table
and writes ``bench/results/<name>.json`` through :func:`bench.runner.run_benchmark`.
"""
