"""Alembic migrations of the registry database (run by :func:`broker.registry.database.migrate`)."""
