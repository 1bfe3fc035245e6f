"""A module package for tests only: real modules that use the core the way business modules do."""
