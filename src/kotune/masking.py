"""Masking what kotune.pii finds: typed placeholders (`<PHONE>`), one pseudonym per person across
the whole dataset (`<PERSON1>`), the people to look for, and the scan for anything left.

Pseudonyms are numbered in order of first appearance over the dataset, so they can only be
given once every span before is known: kotune.cleaning finds spans on every core, then numbers
the people in file order, then masks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kotune.pii import KINDS, Names, Span, find_pii, name_core, name_forms, names_pattern, narrow

# Labels an export gives its owner: not a person's name.
OWNER_LABELS = frozenset({"회원님", "You", "you", "나"})


@lru_cache(maxsize=65536)
def person_key(name: str) -> str:
    """Who a name form stands for: 김민지, 민지, @민지, ＠민지 and the nickname 김민지🌸 are one
    person."""
    name = name_core(narrow(name).lstrip("@"))
    return name[1:] if len(name) == 3 and re.fullmatch(r"[가-힣]{3}", name) else name


@dataclass
class Pseudonyms:
    """Consistent stand-ins for people across a whole dataset: the first person seen is
    <PERSON1> everywhere, given-name forms included (김민지 and 민지 are the same person)."""

    names: dict[str, str] = field(default_factory=dict)

    def register(self, name: str) -> str:
        key = person_key(name)
        if key not in self.names:
            self.names[key] = f"<PERSON{len(self.names) + 1}>"
        return self.names[key]


def apply_spans(text: str, spans: list[Span], pseudonyms: Pseudonyms) -> str:
    """The text with each span replaced by its placeholder (people: their pseudonym)."""
    pieces, last = [], 0
    for span in spans:
        pieces.append(text[last : span.start])
        if span.kind == "PERSON":
            pieces.append(pseudonyms.register(text[span.start : span.end]))
        else:
            pieces.append(f"<{span.kind}>")
        last = span.end
    pieces.append(text[last:])
    return "".join(pieces)


def mask_text(
    text: str, forms: Names, pseudonyms: Pseudonyms, kinds: Iterable[str] = KINDS
) -> tuple[str, list[Span]]:
    """The text with every found span replaced, and the spans (offsets in the input)."""
    kinds = frozenset(kinds)
    spans = [s for s in find_pii(text, forms) if s.kind in kinds]
    return apply_spans(text, spans, pseudonyms), spans


def leaks(text: str, forms: Names, kinds: Iterable[str] = KINDS) -> list[Span]:
    """What the detectors (and the original names) still find in already-masked text."""
    kinds = frozenset(kinds)
    return [s for s in find_pii(text, forms) if s.kind in kinds]


def leak_report(
    records: Iterable[dict[str, Any]], forms: Names, kinds: Iterable[str]
) -> list[dict[str, Any]]:
    """Where masked records still hold something the detectors find (no values)."""
    forms = names_pattern(forms)
    found = []
    for record in records:
        for k, message in enumerate(record["messages"]):
            for span in leaks(message["content"], forms, kinds):
                found.append(
                    {"id": record["id"], "message": k, "kind": span.kind}
                    | {"start": span.start, "end": span.end}
                )
    return found


def speaker_names(records: Iterable[dict[str, Any]]) -> list[str]:
    """Every speaker named in the records' metadata, in first-seen order."""
    names: dict[str, None] = {}
    for record in records:
        for name in record.get("meta", {}).get("speakers", []):
            if name not in OWNER_LABELS:
                names.setdefault(name, None)
    return list(names)


# A proper noun followed by one of these is a person: 민지야, 준호씨, 서연이랑, 지훈한테
_PERSON_CUES = ("야", "아", "씨", "님", "이랑", "랑", "한테", "에게", "이가", "이는")


def kiwi_person_names(texts: Iterable[str], kiwi: Any) -> list[str]:
    """Proper nouns (Kiwi NNP) directly followed by a person cue, in first-seen order."""
    names: dict[str, None] = {}
    texts = list(texts)
    for text, tokens in zip(texts, kiwi.tokenize(texts), strict=True):
        for token, following in zip(tokens, tokens[1:], strict=False):
            # 박서준 씨, 예린 님: 씨 and 님 (Kiwi: NNB) are written apart, as the rules want
            apart = following.tag == "NNB" and following.form in ("씨", "님")
            if token.tag == "NNP" and len(token.form) >= 2 and token.end <= following.start:
                if following.start > token.end + (1 if apart else 0):
                    continue
                rest = text[following.start : following.start + 2]
                if rest.startswith(_PERSON_CUES):
                    # 지훈이랑: Kiwi keeps the 이 that follows a given name ending in a consonant
                    form = (
                        token.form[:-1]
                        if len(token.form) == 3 and token.form.endswith("이")
                        else token.form
                    )
                    names.setdefault(form, None)
    return list(names)


def people(found: Iterable[str], extra: Iterable[str]) -> list[str]:
    """The people to mask: names found in the data, then the persona's own, without owner labels
    and repeats, in that order."""
    return list(dict.fromkeys(n for n in [*found, *extra] if n and n not in OWNER_LABELS))


__all__ = [
    "OWNER_LABELS",
    "Pseudonyms",
    "apply_spans",
    "kiwi_person_names",
    "leak_report",
    "leaks",
    "mask_text",
    "name_forms",
    "people",
    "person_key",
    "speaker_names",
]
