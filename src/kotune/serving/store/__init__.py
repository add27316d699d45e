"""The chat app's database: SQLAlchemy 2 models, Alembic migrations run at start, and the
queries the web app and `kotune users` make. Dialect-neutral: SQLite by default, any URL."""

from kotune.serving.store.database import default_db_url, display_url, open_store
from kotune.serving.store.repository import NotFound, Store, UserExists

__all__ = ["NotFound", "Store", "UserExists", "default_db_url", "display_url", "open_store"]
