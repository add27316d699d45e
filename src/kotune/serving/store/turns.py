"""One chat turn in the store: the user's message and the answer's placeholder committed
together (with the preferences the message states), and the rows as the page reads them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from kotune.serving.store.models import ITEM_MAX, Conversation, Message, Preference

TITLE_CHARS = 40  # a conversation is titled by the start of its first message


class NotFound(Exception):
    """No such row for this user (also when it exists but belongs to someone else)."""


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


def message_dict(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "complete": m.complete,
        "created_at": as_utc(m.created_at).isoformat(),
    }


def preference_dict(p: Preference) -> dict[str, Any]:
    return {"id": p.id, "item": p.item, "polarity": p.polarity}


def owned(db: Any, user_id: int, conversation_id: str) -> Conversation:
    conv = db.get(Conversation, conversation_id) if len(conversation_id) <= 32 else None
    if conv is None or conv.user_id != user_id:
        raise NotFound(conversation_id)
    return conv


def begin_turn(
    db: Any,
    user_id: int,
    conversation_id: str | None,
    content: str,
    statements: list[tuple[str, str]] = (),
    history_chars: int = 6000,
) -> Turn:
    """In `db`'s transaction: the user's message (and a new conversation if none is given),
    the preferences it states, and the answer's row marked incomplete."""
    moment = now()
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
        conv = owned(db, user_id, conversation_id)
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
    apply_statements(db, user_id, question.id, statements, moment)
    preferences = db.scalars(
        select(Preference).where(Preference.user_id == user_id).order_by(Preference.id)
    )
    return Turn(
        conv.id,
        conv.title,
        question.id,
        answer.id,
        recent(earlier, history_chars) + [{"role": "user", "content": content}],
        [preference_dict(p) for p in preferences],
    )


def apply_statements(
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


def recent(newest_first: list[Message], budget_chars: int) -> list[dict[str, str]]:
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
