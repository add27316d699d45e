"""Alembic's entry: runs the migrations on the connection the app hands over (or on
`sqlalchemy.url` when run from the alembic command line)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from kotune.serving.store.models import Base

config = context.config
target_metadata = Base.metadata


def run(connection) -> None:
    # SQLite cannot ALTER most things: batch mode rebuilds the table instead
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as fresh:
        run(fresh)
