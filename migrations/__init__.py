"""Alembic migrations: one history for the core and every module (see ``lapak db``)."""
