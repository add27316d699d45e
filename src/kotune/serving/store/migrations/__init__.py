"""Alembic migrations of the chat store (run by `kotune.serving.store.database.upgrade`)."""
