"""Opening the database: the default location, the engine for any SQLAlchemy URL, and the
Alembic upgrade that runs at every start (a new database is created, an old one migrated)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kotune.errors import KotuneError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def default_db_url() -> str:
    """SQLite under the user's data folder ($XDG_DATA_HOME or ~/.local/share): outside any git
    tree, so conversations never end up in a commit."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'kotune' / 'kotune.db'}"


def display_url(url: str) -> str:
    """The URL with any password masked, for the start-up line and error messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as the user gave it
        return url


def create_db_engine(url: str) -> Any:
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except ArgumentError:
        raise KotuneError(f"--db {url!r}: not a database URL (e.g. sqlite:///chat.db)") from None
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # writers wait up to 30 s for the lock instead of failing at once
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    try:
        engine = create_engine(parsed, **options)
    except NoSuchModuleError:
        raise KotuneError(f"--db {display_url(url)}: unknown database kind") from None
    except ImportError as error:
        raise KotuneError(
            f"--db {display_url(url)}: its driver is not installed ({error.name})"
        ) from None
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")  # cascades on delete, as on PostgreSQL
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not wait for a writer
            cursor.close()

    return engine


def alembic_config(connection: Any = None) -> Any:
    """Alembic's configuration for the migrations shipped in the package (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Any) -> None:
    """`alembic upgrade head` on this engine, in one transaction where the dialect allows."""
    from alembic import command
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise KotuneError(f"--db {display_url(str(engine.url))}: {reason}") from None


def open_store(url: str | None = None) -> Any:
    """The store for `url` (default: `default_db_url()`), migrated to the newest schema."""
    from kotune.serving.store.repository import Store

    engine = create_db_engine(url or default_db_url())
    upgrade(engine)
    return Store(engine)
