"""Every query the app makes, each in its own short transaction. Every read or change of a
conversation or preference takes the user's id: one user never reaches another's rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from kotune.errors import KotuneError
from kotune.serving.store.models import (
    ITEM_MAX,
    Conversation,
    LoginSession,
    Message,
    Preference,
    User,
)

TITLE_CHARS = 40  # a conversation is titled by the start of its first message


class NotFound(Exception):
    """No such row for this user (also when it exists but belongs to someone else)."""


class UserExists(KotuneError):
    pass


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    display_name: str
    password_hash: str


@dataclass(frozen=True)
class Turn:
    """What `begin_turn` committed: ids, the history to send, the user's preferences."""

    conversation_id: str
    title: str
    user_message_id: int
    assistant_message_id: int
    history: list[dict[str, str]]
    preferences: list[dict[str, Any]]


def now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every one stored here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _message(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "complete": m.complete,
        "created_at": as_utc(m.created_at).isoformat(),
    }


def _preference(p: Preference) -> dict[str, Any]:
    return {"id": p.id, "item": p.item, "polarity": p.polarity}


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
            conv = self._owned(db, user_id, conversation_id)
            messages = db.scalars(
                select(Message)
                .where(Message.conversation_id == conv.id)
                .order_by(Message.created_at, Message.id)
            )
            return {"id": conv.id, "title": conv.title, "messages": [_message(m) for m in messages]}

    def delete_conversation(self, user_id: int, conversation_id: str) -> None:
        with self.session.begin() as db:
            conv = self._owned(db, user_id, conversation_id)
            message_ids = select(Message.id).where(Message.conversation_id == conv.id)
            db.execute(
                update(Preference)
                .where(Preference.source_message_id.in_(message_ids))
                .values(source_message_id=None)
            )
            db.execute(delete(Message).where(Message.conversation_id == conv.id))
            db.delete(conv)

    def _owned(self, db: Any, user_id: int, conversation_id: str) -> Conversation:
        conv = db.get(Conversation, conversation_id) if len(conversation_id) <= 32 else None
        if conv is None or conv.user_id != user_id:
            raise NotFound(conversation_id)
        return conv

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
        moment = now()
        with self.session.begin() as db:
            if conversation_id is None:
                title = " ".join(content.split())[:TITLE_CHARS]
                conv = Conversation(
                    id=uuid.uuid4().hex,
                    user_id=user_id,
                    title=title,
                    created_at=moment,
                    updated_at=moment,
                )
                db.add(conv)
            else:
                conv = self._owned(db, user_id, conversation_id)
                conv.updated_at = moment
            earlier = list(
                db.scalars(
                    select(Message)
                    .where(Message.conversation_id == conv.id, Message.complete.is_(True))
                    .order_by(Message.created_at.desc(), Message.id.desc())
                )
            )
            question = Message(
                conversation_id=conv.id,
                role="user",
                content=content,
                created_at=moment,
                complete=True,
            )
            answer = Message(
                conversation_id=conv.id,
                role="assistant",
                content="",
                created_at=moment,
                complete=False,
            )
            db.add(question)
            db.flush()  # the question's id, and it sorts before the answer at equal times
            db.add(answer)
            db.flush()
            self._apply(db, user_id, question.id, statements, moment)
            preferences = db.scalars(
                select(Preference).where(Preference.user_id == user_id).order_by(Preference.id)
            )
            return Turn(
                conv.id,
                conv.title,
                question.id,
                answer.id,
                _recent(earlier, history_chars) + [{"role": "user", "content": content}],
                [_preference(p) for p in preferences],
            )

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

    def _apply(
        self,
        db: Any,
        user_id: int,
        message_id: int,
        statements: list[tuple[str, str]],
        moment: datetime,
    ) -> None:
        """A later statement about an item replaces the earlier one; `neutral` removes it."""
        for item, polarity in statements:
            item = item[:ITEM_MAX]
            row = db.scalar(
                select(Preference).where(Preference.user_id == user_id, Preference.item == item)
            )
            if polarity == "neutral":
                if row is not None:
                    db.delete(row)
            elif row is None:
                db.add(
                    Preference(
                        user_id=user_id,
                        item=item,
                        polarity=polarity,
                        source_message_id=message_id,
                        updated_at=moment,
                    )
                )
            else:
                row.polarity, row.source_message_id, row.updated_at = polarity, message_id, moment
            db.flush()

    def preferences(self, user_id: int) -> list[dict[str, Any]]:
        with self.session() as db:
            rows = db.scalars(
                select(Preference).where(Preference.user_id == user_id).order_by(Preference.id)
            )
            return [_preference(p) for p in rows]

    def delete_preference(self, user_id: int, preference_id: int) -> None:
        with self.session.begin() as db:
            row = db.get(Preference, preference_id)
            if row is None or row.user_id != user_id:
                raise NotFound(str(preference_id))
            db.delete(row)


def _recent(newest_first: list[Message], budget_chars: int) -> list[dict[str, str]]:
    """The latest complete turns that fit in `budget_chars`, oldest first. The engine trims
    further by tokens; this keeps a long conversation from sending its whole past."""
    kept: list[dict[str, str]] = []
    used = 0
    for m in newest_first:
        used += len(m.content)
        if used > budget_chars:
            break
        kept.append({"role": m.role, "content": m.content})
    kept.reverse()
    return kept
