"""Lapak's business modules; each sub-package declares a ``manifest`` in its ``__init__.py``."""
