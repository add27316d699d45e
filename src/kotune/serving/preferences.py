"""Food preferences read from what a user says (`매운 거 좋아해요`, `오이는 싫어요`, `땅콩 알레르기
있어요`), and the prompt line that hands them to the model. Pure: Kiwi morphemes and cue
patterns, no I/O; the caller passes the Kiwi instance, made once by `new_kiwi()` (it takes ~2 s
and ~100 MB to load)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kotune.serving.preference_words import (
    ALLERGY_NOUNS,
    ATTRIBUTE_HEADS,
    DISLIKE_VERBS,
    EAT_VERBS,
    FAVOURITE_HEADS,
    FOOD_WORDS,
    HEDGE_HEADS,
    INNER_CONNECTIVES,
    LIKE_VERBS,
    NOT_ITEMS,
    NOUNS,
    PERSONS,
    QUESTION_ENDINGS,
    REASON_NOUNS,
    SYMPTOMS,
    TIME_WORDS,
)

POLARITIES = ("like", "dislike", "cannot_eat")
NEUTRAL = "neutral"  # `싫어하진 않아요`: no longer a preference; it clears an earlier one
LABELS = {"like": "좋아함", "dislike": "싫어함", "cannot_eat": "못 먹음"}
# markup typed or pasted into a message (`<b>오이</b>는 싫어요`): its tag names are no food
MARKUP_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")


@dataclass(frozen=True)
class Statement:
    item: str  # as the user wrote it, particles off: 오이, 매운 것, 닭가슴살 샐러드
    polarity: str  # like, dislike, cannot_eat, or neutral (clears the item)


@dataclass
class _Clause:
    tokens: list[Any]
    question: bool = False


def new_kiwi() -> Any:
    """The Kiwi to read preferences with: FOOD_WORDS added as nouns, its model built (seconds,
    ~100 MB). Share one; it is not changed afterwards, so calls from several threads are safe
    as far as Kiwi's own analysis is."""
    from kiwipiepy import Kiwi

    kiwi = Kiwi()
    for word in FOOD_WORDS:
        kiwi.add_user_word(word, "NNG", 0)
    kiwi.tokenize("매운 거 좋아해요")  # builds the model now, once
    return kiwi


def read_preferences(text: str, kiwi: Any) -> list[Statement]:
    """The preferences a message states, in order; a later statement about an item replaces an
    earlier one. Questions, wishes, past habits and other people's tastes state none. `kiwi`:
    one from `new_kiwi()` (a plain Kiwi misreads some short food nouns)."""
    found: dict[str, str] = {}
    # tags blanked to spaces of the same length: the items' offsets into `text` still hold
    text = MARKUP_TAG.sub(lambda tag: " " * len(tag.group()), text)
    for sentence in _sentences(kiwi.tokenize(text)):
        clauses = _clauses(sentence)
        carried: list[str] = []  # items of the sentence so far, for a clause that omits its own
        for index, clause in enumerate(clauses):
            following = clauses[index + 1] if index + 1 < len(clauses) else None
            polarity, items = _read_clause(clause, following, text)
            if polarity and not items:
                items = carried
            if items:
                carried = items
            if polarity:
                for item in items:
                    found.pop(item, None)  # re-insert: the latest statement goes last
                    found[item] = polarity
    return [Statement(item, polarity) for item, polarity in found.items()]


def preference_prompt(preferences: list[tuple[str, str]]) -> str:
    """The system-prompt line that tells the model the user's preferences (empty if none):
    `사용자 선호: 좋아함 — 매운 것, 떡볶이; 싫어함 — 오이; 못 먹음 — 땅콩`."""
    groups = []
    for polarity in POLARITIES:
        items = [item for item, p in preferences if p == polarity]
        if items:
            groups.append(f"{LABELS[polarity]} — {', '.join(items)}")
    return f"사용자 선호: {'; '.join(groups)}" if groups else ""


# ---------------------------------------------------------------------------- morphemes


def _sentences(tokens: list[Any]) -> list[list[Any]]:
    sentences: dict[int, list[Any]] = {}
    for token in tokens:
        sentences.setdefault(token.sent_position, []).append(token)
    return list(sentences.values())


def _clauses(tokens: list[Any]) -> list[_Clause]:
    """Split at final endings and at connectives that join clauses (`-는데`, `-고`, `-면`);
    `-어`/`-지`/`-게` join a verb to its auxiliary (`좋아하지 않아요`) and stay inside."""
    clauses, current = [], _Clause([])
    for i, token in enumerate(tokens):
        if token.tag == "SF" or (token.tag == "SP" and token.form != ","):
            if token.form == "?":
                (
                    current if current.tokens else (clauses[-1] if clauses else current)
                ).question = True
            if current.tokens:
                clauses.append(current)
                current = _Clause([])
            continue
        current.tokens.append(token)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        ends = token.tag == "EF" or (
            token.tag == "EC" and not (token.form in INNER_CONNECTIVES and nxt is not None)
        )
        ends = ends or token.tag == "NNB" and token.form == "데" and tokens[i - 1].tag == "ETM"
        if token.tag == "EF" and token.form in QUESTION_ENDINGS:
            current.question = True
        if ends:
            clauses.append(current)
            current = _Clause([])
    if current.tokens:
        clauses.append(current)
    return clauses


def _cue(tokens: list[Any]) -> tuple[int, str] | None:
    """The last preference cue of a clause: its index and kind (like, dislike, eat, allergy,
    so-so), or None. `좋아하지` comes out as 좋/VA 어/EC 하/VX: the adjective is the cue."""
    found = None
    for i, t in enumerate(tokens):
        if t.tag == "VV" and t.lemma in LIKE_VERBS or t.tag == "VA" and t.form == "좋":
            found = (i, "like")
        elif t.tag == "VV" and t.lemma in DISLIKE_VERBS or t.tag == "VA" and t.form == "싫":
            found = (i, "dislike")
        elif t.tag == "VV" and t.lemma in EAT_VERBS:
            found = (i, "eat")
        elif (
            t.tag == "NNG"
            and t.form == "사랑"
            and i + 1 < len(tokens)
            and tokens[i + 1].tag == "XSV"
        ):
            found = (i, "like")  # 사랑/NNG 하/XSV
        elif t.tag == "NNG" and t.form in ALLERGY_NOUNS:
            found = (i, "allergy")
        elif t.tag == "MAG" and t.form == "별로" and _is_predicate_adverb(tokens[i + 1 :]):
            found = (i, "so-so")
        elif t.tag == "VV" and t.lemma == "빠지다" and _after_ee(tokens[:i]):
            found = (i, "hooked")  # `요즘 샐러드에 (푹) 빠졌어요`
    return found


def _after_ee(before: list[Any]) -> bool:
    """The tokens end in the particle 에, adverbs after it aside (`마라탕에 푹`)."""
    rest = [t for t in before if t.tag != "MAG"]
    return bool(rest) and rest[-1].tag == "JKB" and rest[-1].form == "에"


def _is_predicate_adverb(rest: list[Any]) -> bool:
    """`별로예요`, `요즘은 별로`: 별로 as the predicate (not `별로 안 매워요`)."""
    return all(t.tag in ("VCP", "EF", "EC", "EP", "JX", "ETM") for t in rest)


def _read_clause(clause: _Clause, following: _Clause | None, text: str) -> tuple[str, list[str]]:
    tokens = clause.tokens
    cue = _cue(tokens)
    if cue is None or clause.question or _third_person(tokens):
        return "", _items(tokens, len(tokens), text, allergy=False)
    index, kind = cue
    tail = tokens[index + 1 :]
    if _honorific(tail):
        return "", []  # `좋아하세요`: said of someone the speaker honours, or asked
    if kind == "hooked":
        return "like", _items(tokens, index, text, allergy=True)
    before = tokens[:index]
    negated = _negated(before, tail)
    past = any(t.tag == "EP" and t.form in ("었", "았", "였") for t in _until_ending(tail))
    adnominal = next((t for t in tail if t.tag not in ("EC", "VX", "EP", "JX")), None)
    adnominal_head = None
    if adnominal is not None and adnominal.tag == "ETM":
        position = tail.index(adnominal)
        adnominal_head = tail[position + 1] if position + 1 < len(tail) else None
    items = _items(tokens, index, text, allergy=kind == "allergy")
    if adnominal_head is not None and not _cannot(tail):
        start = tokens.index(adnominal_head) + 1
        topic = start < len(tokens) and tokens[start].tag in ("JX", "JKS")
        if adnominal_head.form in FAVOURITE_HEADS and topic and kind in ("like", "dislike"):
            items = _items(tokens[start:], len(tokens) - start, text, allergy=False, topic=True)
        elif adnominal_head.form not in HEDGE_HEADS:
            # `매운 거 좋아하는 친구`: the cue describes a noun and states nothing; its items
            # carry to a next clause that has a cue of its own (`… 건 아닌데 좋아하진 않아요`)
            return "", items
    if kind == "eat":
        wish = any(t.tag == "VX" and t.form == "싶" or _is_intention(t) for t in tail)
        if _condition_with_symptom(tail, following):
            return "cannot_eat", items
        if wish or past:
            return "", items
        if negated or _cannot(tail):
            return "cannot_eat", items
        if before and before[-1].tag == "MAG" and before[-1].form == "잘":
            return "like", items  # `매운 거 잘 먹어요`
        if before and before[-1].tag == "EC" and len(before) > 1 and before[-2].lemma == "즐기다":
            return "like", items  # `즐겨 먹어요`
        return "", items
    if past and tokens[index].lemma != "질리다":
        return "", items  # `예전엔 좋아했는데`: no longer says what is liked now
    if kind == "allergy":
        absent = any(t.tag == "VA" and t.form == "없" for t in tail)
        return (NEUTRAL if absent else "cannot_eat"), items
    if kind == "so-so":
        return "dislike", items
    if kind == "like":
        return ("dislike" if negated else "like"), items
    return (NEUTRAL if negated else "dislike"), items


def _honorific(tail: list[Any]) -> bool:
    """The cue's own -시- (`좋아하세요`, `드세요`): no one honours themself."""
    return any(
        t.tag == "EP"
        and t.form in ("시", "으시", "세")
        or t.tag == "EF"
        and t.form.startswith(("세", "으세", "셔", "십", "시"))
        for t in _until_ending(tail)
    )


def _is_intention(token: Any) -> bool:
    """`먹을래요`, `먹을게`, `먹으려고`: what one will do now, not a standing habit."""
    if token.tag == "EC":
        return token.form.endswith("려고")
    return token.tag == "EF" and token.form.lstrip("을을ㄹ").startswith(("래", "게"))


def _until_ending(tail: list[Any]) -> list[Any]:
    out = []
    for t in tail:
        out.append(t)
        if t.tag in ("EF", "EC", "ETM") and t.form not in INNER_CONNECTIVES:
            break
    return out


def _negated(before: list[Any], tail: list[Any]) -> bool:
    """`안 좋아해요` (short negation) or `좋아하지 않아요` / `좋아하진 않아요` (long)."""
    if before and before[-1].tag == "MAG" and before[-1].form in ("안", "못"):
        return True
    inner = _until_ending(tail)
    return any(t.tag == "VX" and t.form in ("않", "못하") for t in inner)


def _cannot(tail: list[Any]) -> bool:
    """`먹을 수 없어요`: the eat verb with 수 없다."""
    forms = [(t.form, t.tag) for t in tail[:4]]
    return ("수", "NNB") in forms and ("없", "VA") in forms


def _condition_with_symptom(tail: list[Any], following: _Clause | None) -> bool:
    """`우유는 마시면 배탈이 나요`: eating it (a `-면` clause) makes one ill."""
    if following is None or not tail or tail[0].form not in ("면", "으면"):
        return False
    return any(t.lemma in SYMPTOMS or t.form in SYMPTOMS for t in following.tokens)


def _third_person(tokens: list[Any]) -> bool:
    """`동생은 오이를 싫어해요`: someone else's taste, unless the speaker is named too."""
    speaker = any(t.tag == "NP" and t.form in ("저", "나", "제", "내") for t in tokens)
    other = any(
        t.form in PERSONS and tokens[i + 1].tag in ("JX", "JKS") for i, t in enumerate(tokens[:-1])
    )
    return other and not speaker


def _items(
    tokens: list[Any], end: int, text: str, *, allergy: bool, topic: bool = False
) -> list[str]:
    """The noun phrases before `end` that a cue can be about: particles off, obliques
    (`치킨보다`, `건강에`) and non-food nouns left out; `오이랑 당근` gives both."""
    phrases: list[tuple[list[Any], str]] = []  # tokens, the particle that closed it
    current: list[Any] = []
    for i, t in enumerate(tokens[:end]):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        modifier = t.tag in ("VA", "VA-I", "VV", "XR", "XSA") and nxt is not None
        modifier = modifier and nxt.tag in ("ETM", "XSA")
        if t.form in TIME_WORDS and current:
            phrases.append((current, "space"))
            current = [t]
        elif t.tag in NOUNS and current and all(c.form in TIME_WORDS for c in current):
            phrases.append((current, "space"))  # `요즘 샐러드에`: the time, then the item
            current = [t]
        elif _in_phrase(t, modifier, bool(current)):
            current.append(t)
        else:
            if current:
                phrases.append((current, t.tag + ":" + t.form))
            current = []
    if current:
        phrases.append((current, "end"))
    items = []
    for phrase, closer in phrases:
        if closer.startswith("NNB:") and closer[4:] in REASON_NOUNS:
            continue  # `냄새 때문에`
        if len(phrase) > 1 and phrase[-1].form in ATTRIBUTE_HEADS and phrase[-2].tag in NOUNS:
            phrase = phrase[:-1]  # `오이 냄새` → 오이
        elif len(phrase) == 1 and phrase[0].form in ATTRIBUTE_HEADS:
            continue
        nouns = [t for t in phrase if t.tag in NOUNS or t.tag == "NNB"]
        if not nouns or phrase[-1].tag not in NOUNS | {"NNB"}:
            continue
        if closer.startswith("JKB") and not (allergy and closer == "JKB:에"):
            continue  # `치킨보다 피자가`, `건강에 좋은`
        if topic and closer.startswith(("JX", "JKS")):
            continue
        if len(phrase) == 1 and (phrase[0].form in NOT_ITEMS or phrase[0].form in PERSONS):
            continue
        if phrase[-1].form in PERSONS or (
            len(nouns) == len(phrase) and nouns[-1].form in NOT_ITEMS
        ):
            continue
        items.append(_surface(phrase, text))
    return items


def _in_phrase(token: Any, modifier: bool, open_phrase: bool) -> bool:
    """Nouns, `거`/`것`, and modifiers with their ending (매운, 국물 있는) make a phrase."""
    if token.tag in NOUNS or modifier:
        return True
    if token.tag == "NNB" and token.form in ("거", "것"):
        return True
    return token.tag == "ETM" and open_phrase


def _surface(phrase: list[Any], text: str) -> str:
    """The phrase as written, with `거`/`건`/`걸` written out as `것`: 매운 것."""
    last = phrase[-1]
    head = "것" if last.tag == "NNB" else text[last.start : last.end]
    body = text[phrase[0].start : last.start] if len(phrase) > 1 else ""
    return " ".join((body + head).split())
