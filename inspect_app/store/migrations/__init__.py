"""Alembic migrations of the results store, applied by ``ResultsStore`` when it opens a database."""
