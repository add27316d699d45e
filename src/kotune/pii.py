"""Korean personal data: find it, mask it with typed placeholders and consistent pseudonyms, and
check that nothing is left. Pure functions over strings; one place for every PII pattern.

Kinds: PHONE (mobile and landline), RRN (주민/외국인등록번호), CARD (Luhn), ACCOUNT (near a bank
word), EMAIL, URL, ADDRESS (도로명, 지번, 동/호), PERSON (speaker names, their given-name forms,
@mentions). Dates, times, money, sizes, calories, versions and durations are left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("PHONE", "RRN", "CARD", "ACCOUNT", "EMAIL", "URL", "ADDRESS", "PERSON")

_REGION = (
    r"(?:서울|부산|대구|인천|광주|대전|울산|세종|경기|강원|충북|충남|전북|전남|경북|경남|제주)"
    r"(?:특별시|광역시|특별자치시|특별자치도|도|시)?"
)
_CITY = r"[가-힣]{1,6}(?:시|군|구)"
_ROAD = r"[가-힣0-9]{1,12}(?:로|길)"
_UNIT = r"\d{1,4}동[ \t]?\d{1,5}호"
# a named building with a unit: 한빛빌 502호, 래미안 101동 1203호
_BUILDING = (
    r"[가-힣A-Za-z0-9]{0,12}(?:빌라|빌|아파트|맨션|타워|오피스텔|빌딩|하이츠|캐슬|자이|푸르지오|래미안)"
    r"[ \t]?(?:\d{1,4}동[ \t]?)?\d{1,5}호"
)
# after an address number: the end, punctuation or space, or a particle (에, 에서, 으로, 쪽 …);
# not another syllable (`을지로 3가` is a place, `학교로 5분` a duration)
_AFTER_NUMBER = r"(?=$|[^가-힣\d]|[에으로까쪽번])"
_ROAD_PART = (
    rf"{_ROAD}[ \t]?\d{{1,5}}(?:-\d{{1,5}})?(?:[ \t]?번?길[ \t]?\d{{1,5}})?{_AFTER_NUMBER}"
    rf"(?:[ \t]?,?[ \t]?{_UNIT})?"
)
_LOT_PART = rf"[가-힣]{{1,8}}[동리][ \t]\d{{1,5}}(?:-\d{{1,5}})?(?:번지)?{_AFTER_NUMBER}(?:[ \t]?,?[ \t]?{_UNIT})?"
_BANKS = (
    "계좌", "통장", "입금", "송금", "이체", "은행", "국민", "신한", "우리", "하나", "농협", "기업",
    "카카오뱅크", "케이뱅크", "토스", "새마을", "우체국", "수협", "씨티", "SC제일", "부산은행",
    "대구은행", "경남은행", "광주은행", "전북은행", "제주은행", "account", "bank",
)  # fmt: skip

# One alternation, one pass over the text; the first group that matches names the kind.
_PATTERN = re.compile(
    "|".join(
        [
            r"(?P<EMAIL>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})",
            # a URL stops at Hangul: particles are glued on (`https://a.kr/x에서`)
            r"(?P<URL>(?:https?://|www\.)[^\s가-힣<>\"']+)",
            r"(?P<RRN>(?<![\d-])\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[ \t]?-?[ \t]?[1-8](?:\d{6}|\*{6})(?![\d*]))",
            r"(?P<CARD>(?<![\d-])(?:\d{4}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}|\d{4}[- ]?\d{6}[- ]?\d{5})(?![\d-]))",
            r"(?P<MOBILE>(?<![\d+])(?:\+82[- .]?\(?0?\)?1[016789]|01[016789])[- .]?\d{3,4}[- .]?\d{4}(?!\d))",
            r"(?P<LANDLINE>(?<![\d-])(?:02|0[3-6][1-5]|070)(?:\)|[- .])?[ \t]?\d{3,4}[- .]\d{4}(?!\d))",
            r"(?P<ACCOUNT>(?<![\d,.-])\d{2,6}(?:-\d{2,7}){1,3}(?![\d,.-])|(?<![\d,.-])\d{10,14}(?![\d,.-]))",
            r"(?P<MENTION>@[가-힣A-Za-z0-9_]{1,20})",
        ]
    )
)
# Addresses are tried on their own and only where a number sits next to 로/길/동/리/호/번지: the
# Hangul road and region patterns are costly to try at every syllable of every line.
_ADDRESS = re.compile(
    rf"(?P<ADDRESS>(?:{_REGION}[ \t]?)?(?:{_CITY}[ \t])*(?:{_ROAD_PART}|{_LOT_PART}|{_BUILDING}|{_UNIT}))"
)
_ADDRESS_HINT = re.compile(r"[로길동리][ \t]?\d|\d[ \t]?(?:호|번지|번?길)")
_KEYWORDS = re.compile("|".join(map(re.escape, _BANKS)))
# Every structured kind needs a digit, an @ or a URL start: most chat lines have none of them,
# and this one cheap search lets them skip the big pattern.
_CANDIDATE = re.compile(r"[0-9@]|www\.|https?:")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, char in enumerate(digits):
        d = int(char)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def rrn_checksum_ok(digits: str) -> bool:
    """The 주민등록번호 check digit (numbers issued since Oct 2020 may fail it: confidence only)."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    weights = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]
    check = (11 - sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11) % 10
    return check == int(digits[12])


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    confidence: float = 1.0


def _address_ok(text: str) -> bool:
    """A road match needs more than `…로 3`: a region or city before it, a 번길/길 number, or a
    building and unit after it (`버스로 3 정거장` is not an address)."""
    if re.search(rf"{_UNIT}|\d호$", text) or re.match(rf"^(?:{_REGION}|{_CITY})", text):
        return True
    if re.search(r"\d+번?길", text):
        return True
    # a lot number (지번) needs more than `…동 2` (우동 2그릇): a dash or 번지
    return bool(re.match(r"^[가-힣]{1,8}[동리][ \t]\d+(?:-\d+|번지)", text))


def find_structured(text: str) -> list[Span]:
    """Spans of every kind but names, each checked beyond its shape."""
    spans = []
    if not _CANDIDATE.search(text):
        return spans
    matches = list(_PATTERN.finditer(text))
    if _ADDRESS_HINT.search(text):
        matches += _ADDRESS.finditer(text)
    for match in matches:
        kind, value = match.lastgroup, match.group()
        start, end = match.span()
        if kind in ("MOBILE", "LANDLINE"):
            kind = "PHONE"
        elif kind == "MENTION":
            kind = "PERSON"
        elif kind == "CARD":
            digits = re.sub(r"\D", "", value)
            if not luhn_ok(digits):
                continue
        elif kind == "RRN":
            digits = re.sub(r"\D", "", value)
            spans.append(Span(start, end, kind, 1.0 if rrn_checksum_ok(digits) else 0.8))
            continue
        elif kind == "ACCOUNT":
            digits = re.sub(r"\D", "", value)
            window = text[max(0, start - 20) : end + 12]
            if not 10 <= len(digits) <= 14 or not _KEYWORDS.search(window):
                continue
        elif kind == "ADDRESS":
            value = value.strip()
            end = start + len(match.group().rstrip())
            if not _address_ok(value):
                continue
        elif kind == "URL":
            value = value.rstrip(".,)!?")
            end = start + len(value)
        spans.append(Span(start, end, kind))
    return spans


def name_forms(names: Iterable[str]) -> list[str]:
    """Each name and, for a 3-syllable Korean full name, its given name (김민지 → 민지), longest
    first so that 김민지 is masked whole. Particles after a name stay (민지야 → <PERSON1>야)."""
    forms = set()
    for name in names:
        name = name.strip()
        if len(name) < 2:
            continue
        forms.add(name)
        if len(name) == 3 and re.fullmatch(r"[가-힣]{3}", name):
            forms.add(name[1:])
    return sorted(forms, key=lambda f: (-len(f), f))


Names = list[str] | tuple[str, ...] | re.Pattern | None  # name forms, or names_pattern(forms)


def names_pattern(forms: Names) -> re.Pattern | None:
    """One compiled alternation of the name forms (longest first), or None."""
    if forms is None or isinstance(forms, re.Pattern):
        return forms
    return re.compile("|".join(re.escape(f) for f in forms)) if forms else None


def find_names(text: str, names: Names) -> list[Span]:
    pattern = names_pattern(names)
    if pattern is None:
        return []
    return [Span(m.start(), m.end(), "PERSON") for m in pattern.finditer(text)]


def find_pii(text: str, forms: Names = None) -> list[Span]:
    """Non-overlapping spans, earliest first; on overlap the longer span wins."""
    spans = sorted(
        find_structured(text) + find_names(text, forms),
        key=lambda s: (s.start, -(s.end - s.start)),
    )
    kept: list[Span] = []
    for span in spans:
        if kept and span.start < kept[-1].end:
            if span.end - span.start > kept[-1].end - kept[-1].start:
                kept[-1] = span
            continue
        kept.append(span)
    return kept


@dataclass
class Pseudonyms:
    """Consistent stand-ins for people across a whole dataset: the first person seen is
    <PERSON1> everywhere, given-name forms included (김민지 and 민지 are the same person)."""

    names: dict[str, str] = field(default_factory=dict)

    def register(self, name: str) -> str:
        key = self._key(name)
        if key not in self.names:
            self.names[key] = f"<PERSON{len(self.names) + 1}>"
        return self.names[key]

    @staticmethod
    def _key(name: str) -> str:
        name = name.lstrip("@")
        return name[1:] if len(name) == 3 and re.fullmatch(r"[가-힣]{3}", name) else name


def mask_text(
    text: str, forms: Names, pseudonyms: Pseudonyms, kinds: frozenset[str] = frozenset(KINDS)
) -> tuple[str, list[Span]]:
    """The text with every found span replaced, and the spans (offsets in the input)."""
    spans = [s for s in find_pii(text, forms) if s.kind in kinds]
    pieces, last = [], 0
    for span in spans:
        pieces.append(text[last : span.start])
        if span.kind == "PERSON":
            pieces.append(pseudonyms.register(text[span.start : span.end]))
        else:
            pieces.append(f"<{span.kind}>")
        last = span.end
    pieces.append(text[last:])
    return "".join(pieces), spans


@dataclass
class RecordMasker:
    """Masks conversation records for the clean stage; counts and an audit trail of where
    (record id, message, kind, offsets) — never the values."""

    names: list[str]
    kinds: frozenset[str] = frozenset(KINDS)
    pseudonyms: Pseudonyms = field(default_factory=Pseudonyms)
    audit: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.forms = name_forms(self.names) if "PERSON" in self.kinds else []
        self.names_re = names_pattern(self.forms)  # compiled once for the whole dataset

    def __call__(self, record: dict[str, Any]) -> tuple[dict[str, Any], Counter]:
        counts: Counter = Counter()
        messages = []
        for k, message in enumerate(record["messages"]):
            masked, spans = mask_text(
                message["content"], self.names_re, self.pseudonyms, self.kinds
            )
            for span in spans:
                counts[span.kind.lower()] += 1
                self.audit.append(
                    {
                        "id": record["id"],
                        "message": k,
                        "kind": span.kind,
                        "start": span.start,
                        "end": span.end,
                    }
                )
            messages.append({**message, "content": masked})
        meta = dict(record.get("meta", {}))
        if "speakers" in meta and "PERSON" in self.kinds:
            meta["speakers"] = [self.pseudonyms.register(s) for s in meta["speakers"]]
        return {**record, "messages": messages, "meta": meta}, counts


def leaks(text: str, forms: Names, kinds: frozenset[str] = frozenset(KINDS)) -> list[Span]:
    """What the detectors (and the original names) still find in already-masked text."""
    return [s for s in find_pii(text, forms) if s.kind in kinds]


# Labels an export gives its owner: not a person's name.
OWNER_LABELS = frozenset({"회원님", "You", "you", "나"})


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
            if token.tag == "NNP" and len(token.form) >= 2 and token.end == following.start:
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


def leak_report(
    records: Iterable[dict[str, Any]], forms: Names, kinds: frozenset[str]
) -> list[dict[str, Any]]:
    """Where masked records still hold something the detectors find (no values)."""
    forms = names_pattern(forms)
    found = []
    for record in records:
        for k, message in enumerate(record["messages"]):
            for span in leaks(message["content"], forms, kinds):
                found.append(
                    {
                        "id": record["id"],
                        "message": k,
                        "kind": span.kind,
                        "start": span.start,
                        "end": span.end,
                    }
                )
    return found


def build_masker(
    records: list[dict[str, Any]], kinds: list[str], names: list[str], kiwi: Any = None
) -> RecordMasker:
    """The clean stage's masker: speaker names from the data, the persona's extra names and,
    with a Kiwi instance, proper nouns before a person cue."""
    found = speaker_names(records) + [n for n in names if n not in OWNER_LABELS]
    if kiwi is not None:
        found += kiwi_person_names((m["content"] for r in records for m in r["messages"]), kiwi)
    return RecordMasker(list(dict.fromkeys(found)), frozenset(kinds))
