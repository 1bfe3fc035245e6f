"""Modules that only benchmarks load (``LAPAK_MODULE_PACKAGES=modules,bench.modules``)."""
