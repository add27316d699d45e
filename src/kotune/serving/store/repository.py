"""Every query the app makes, each in its own short transaction. Every read or change of a
conversation or preference takes the user's id: one user never reaches another's rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from kotune.errors import KotuneError
from kotune.serving.store.models import Conversation, LoginSession, Message, Preference, User
from kotune.serving.store.turns import (
    NotFound,
    Turn,
    as_utc,
    begin_turn,
    message_dict,
    now,
    owned,
    preference_dict,
)

__all__ = ["Account", "NotFound", "Store", "Turn", "UserExists", "as_utc", "now"]


class UserExists(KotuneError):
    pass


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    display_name: str
    password_hash: str


class Store:
    def __init__(self, engine: Any):
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------------ users

    def add_user(self, username: str, password_hash: str, display_name: str = "") -> Account:
        with self.session.begin() as db:
            user = User(
                username=username,
                display_name=display_name,
                password_hash=password_hash,
                created_at=now(),
            )
            db.add(user)
            try:
                db.flush()
            except IntegrityError:
                raise UserExists(f"user {username!r} already exists") from None
            return Account(user.id, user.username, user.display_name, user.password_hash)

    def user_by_name(self, username: str) -> Account | None:
        with self.session() as db:
            user = db.scalar(select(User).where(User.username == username))
            if user is None:
                return None
            return Account(user.id, user.username, user.display_name, user.password_hash)

    def list_users(self) -> list[dict[str, Any]]:
        counts = (
            select(Conversation.user_id, func.count().label("n"))
            .group_by(Conversation.user_id)
            .subquery()
        )
        query = (
            select(User, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.user_id == User.id)
            .order_by(User.username)
        )
        with self.session() as db:
            return [
                {
                    "username": u.username,
                    "display_name": u.display_name,
                    "created_at": as_utc(u.created_at),
                    "conversations": n,
                }
                for u, n in db.execute(query)
            ]

    def remove_user(self, username: str) -> bool:
        """The user and everything of theirs (conversations, messages, preferences, sessions)."""
        with self.session.begin() as db:
            user_id = db.scalar(select(User.id).where(User.username == username))
            if user_id is None:
                return False
            # explicit, not only ON DELETE CASCADE: the same on a SQLite file made without it
            conversation_ids = select(Conversation.id).where(Conversation.user_id == user_id)
            db.execute(delete(Preference).where(Preference.user_id == user_id))
            db.execute(delete(Message).where(Message.conversation_id.in_(conversation_ids)))
            db.execute(delete(Conversation).where(Conversation.user_id == user_id))
            db.execute(delete(LoginSession).where(LoginSession.user_id == user_id))
            db.execute(delete(User).where(User.id == user_id))
            return True

    def set_password_hash(self, username: str, password_hash: str) -> bool:
        """New password; every session of the user ends (a stolen one with it)."""
        with self.session.begin() as db:
            user = db.scalar(select(User).where(User.username == username))
            if user is None:
                return False
            user.password_hash = password_hash
            db.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
            return True

    # ------------------------------------------------------------------------ sessions

    def add_session(self, user_id: int, token_hash: str, csrf: str, expires: datetime) -> None:
        with self.session.begin() as db:
            db.add(
                LoginSession(
                    token_hash=token_hash,
                    user_id=user_id,
                    csrf_token=csrf,
                    created_at=now(),
                    expires_at=expires,
                )
            )

    def session_user(self, token_hash: str) -> tuple[Account, str] | None:
        """The account and CSRF token of a live session (None when unknown or expired)."""
        query = (
            select(LoginSession, User)
            .join(User, User.id == LoginSession.user_id)
            .where(LoginSession.token_hash == token_hash)
        )
        with self.session() as db:
            row = db.execute(query).first()
            if row is None:
                return None
            login, user = row
            if as_utc(login.expires_at) <= now():
                return None
            account = Account(user.id, user.username, user.display_name, user.password_hash)
            return account, login.csrf_token

    def end_session(self, token_hash: str) -> None:
        with self.session.begin() as db:
            db.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash))
            db.execute(delete(LoginSession).where(LoginSession.expires_at <= now()))

    # ------------------------------------------------------------------------ conversations

    def conversations(self, user_id: int) -> list[dict[str, Any]]:
        query = (
            select(Conversation)
            .where(Conversation.user_id == user_id)
            .order_by(Conversation.updated_at.desc(), Conversation.id)
        )
        with self.session() as db:
            return [
                {"id": c.id, "title": c.title, "updated_at": as_utc(c.updated_at).isoformat()}
                for c in db.scalars(query)
            ]

    def conversation(self, user_id: int, conversation_id: str) -> dict[str, Any]:
        with self.session() as db:
            conv = owned(db, user_id, conversation_id)
            messages = db.scalars(
                select(Message)
                .where(Message.conversation_id == conv.id)
                .order_by(Message.created_at, Message.id)
            )
            return {
                "id": conv.id,
                "title": conv.title,
                "messages": [message_dict(m) for m in messages],
            }

    def delete_conversation(self, user_id: int, conversation_id: str) -> None:
        with self.session.begin() as db:
            conv = owned(db, user_id, conversation_id)
            message_ids = select(Message.id).where(Message.conversation_id == conv.id)
            db.execute(
                update(Preference)
                .where(Preference.source_message_id.in_(message_ids))
                .values(source_message_id=None)
            )
            db.execute(delete(Message).where(Message.conversation_id == conv.id))
            db.delete(conv)

    def begin_turn(
        self,
        user_id: int,
        conversation_id: str | None,
        content: str,
        statements: list[tuple[str, str]] = (),
        history_chars: int = 6000,
    ) -> Turn:
        """Commit the user's message (and a new conversation if none is given), the preferences
        it states, and the answer's row marked incomplete — all before generation starts."""
        with self.session.begin() as db:
            return begin_turn(db, user_id, conversation_id, content, statements, history_chars)

    def finish_turn(
        self,
        message_id: int,
        content: str,
        complete: bool,
        usage: tuple[int | None, int | None] = (None, None),
        first_token_ms: int | None = None,
        latency_ms: int | None = None,
    ) -> None:
        """The answer as it ended: whole (`complete`) or what was streamed before it broke."""
        with self.session.begin() as db:
            db.execute(
                update(Message)
                .where(Message.id == message_id)
                .values(
                    content=content,
                    complete=complete,
                    prompt_tokens=usage[0],
                    completion_tokens=usage[1],
                    first_token_ms=first_token_ms,
                    latency_ms=latency_ms,
                )
            )

    # ------------------------------------------------------------------------ preferences

    def preferences(self, user_id: int) -> list[dict[str, Any]]:
        with self.session() as db:
            rows = db.scalars(
                select(Preference).where(Preference.user_id == user_id).order_by(Preference.id)
            )
            return [preference_dict(p) for p in rows]

    def delete_preference(self, user_id: int, preference_id: int) -> None:
        with self.session.begin() as db:
            row = db.get(Preference, preference_id)
            if row is None or row.user_id != user_id:
                raise NotFound(str(preference_id))
            db.delete(row)
