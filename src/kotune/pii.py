"""Korean personal data: find it. Pure functions over strings; the one place for every PII
pattern (kotune.masking replaces what is found, and scans the result again for leaks).

Each kind needs a shape strict enough, a checksum, or a cue word before it, so that dates,
times, money, sizes, versions, order and tracking numbers, ISBNs and business phone numbers
(1588-xxxx) survive. The shapes, checksums and cue words are described in docs/korean.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kotune.checksums import brn_checksum_ok, corporate_checksum_ok, luhn_ok, rrn_checksum_ok
from kotune.config import PII_KINDS as KINDS

__all__ = ["KINDS", "Span", "brn_checksum_ok", "corporate_checksum_ok", "find_pii", "find_names"]
__all__ += [
    "find_structured",
    "luhn_ok",
    "may_hold_pii",
    "name_core",
    "name_forms",
    "names_pattern",
    "narrow",
]
__all__ += ["rrn_checksum_ok"]

# ------------------------------------------------------------------------------ shapes

_REGION = (
    r"(?:서울|부산|대구|인천|광주|대전|울산|세종|경기|강원|충북|충남|전북|전남|경북|경남|제주)"
    r"(?:특별시|광역시|특별자치시|특별자치도|도|시)?"
)
_CITY = r"[가-힣]{1,6}(?:시|군|구|읍|면)"
_ROAD = r"[가-힣0-9○]{1,12}(?:로|길)"
_BUILDINGS = (
    "빌라", "빌딩", "빌", "아파트", "맨션", "타워", "오피스텔", "하이츠", "캐슬", "자이", "푸르지오",
    "래미안", "아이파크", "힐스테이트", "팰리스", "레지던스", "하우스", "주택", "연립", "원룸",
    "기숙사", "생활관", "고시원", "고시텔", "센터", "스퀘어", "플라자", "프라자", "타운", "빌리지",
    "하임", "오피스",
)  # fmt: skip
# a building's name and its kind: 한빛타워, 래미안, 한빛빌, 행복원룸
_BUILDING = rf"[가-힣A-Za-z0-9○]{{0,12}}(?:{'|'.join(_BUILDINGS)})"
_DONG = r"(?:\d{1,4}|[A-Z])동"  # an apartment block: 101동, B동
_UNIT = rf"(?:{_DONG}[ \t]?)?\d{{1,5}}호"
# after an address number: the end, punctuation or space, or a particle (에, 에서, 으로, 쪽 …);
# not another syllable (`을지로 3가` is a place, `학교로 5분` a duration)
_AFTER_NUMBER = r"(?=$|[^가-힣\d]|[에으로까쪽번야이입])"
# after the address's own parts: a building, 동/호, a floor (…로 97 한빛타워 1804호)
# (래미안 101-1203: block and unit written with a dash after a building's name)
# (a building's name may hold a space there: …로 79, 센텀 한빛타워 12층)
_TAIL = (
    rf"(?:[ \t]?,?[ \t]?(?:(?:[가-힣A-Za-z0-9○]{{1,12}}[ \t])?{_BUILDING}(?:[ \t]?(?:{_UNIT}|\d{{1,4}}-\d{{1,5}}(?![\d-]){_AFTER_NUMBER}))?|{_UNIT}|"
    rf"(?:{_DONG}[ \t]?)?\d{{1,3}}층))*"
)
_ROAD_PART = rf"{_ROAD}[ \t]?\d{{1,5}}(?:-\d{{1,5}})?(?:[ \t]?번?길[ \t]?\d{{1,5}})?{_AFTER_NUMBER}"
_LOT_PART = (
    rf"[가-힣○]{{1,8}}[동리][ \t]?(?:산[ \t]?)?\d{{1,5}}(?:-\d{{1,5}})?(?:번지)?{_AFTER_NUMBER}"
)
# a street section and a lot number: 을지로 3가 12-3, 명동2가 54-1번지
_SECTION_PART = rf"[가-힣○]{{1,10}}(?:로|동)[ \t]?\d{{1,2}}가[ \t]\d{{1,5}}(?:-\d{{1,5}})?(?:번지)?{_AFTER_NUMBER}"
_ADDRESS = re.compile(
    rf"(?P<ADDRESS>(?:{_REGION}[ \t]?)?(?:{_CITY}[ \t])*"
    rf"(?:(?:{_ROAD_PART}|{_SECTION_PART}|{_LOT_PART}){_TAIL}|"
    rf"{_BUILDING}[ \t]?(?:{_UNIT}|\d{{1,4}}-\d{{1,5}}(?![\d-]){_AFTER_NUMBER})|{_DONG}[ \t]?\d{{1,5}}호))"
    # what is left of an address when the rest was not written: a unit, a building number, a lot
    rf"|(?P<UNIT>(?<![\d.,-])\d{{2,5}}호(?![선실기차점관수봉갱\d]))"
    rf"|(?P<BLOCK>(?<![\d가-힣.,-])\d{{3,4}}동(?=$|[ \t,.!?]|에|앞|쪽|으로|입구))"
    rf"|(?P<LOT>(?<![\d-])\d{{1,5}}-\d{{1,5}}번지)"
)
_ADDRESS_HINT = re.compile(
    r"[로길동리가산][ \t]?\d|\d[ \t]?(?:호|번지|동|번?길)"
    rf"|[{''.join(sorted({kind[-1] for kind in _BUILDINGS}))}][ \t]?\d{{1,4}}-\d"  # 래미안 101-1203
)
# rooms, lines, typhoons and gazette numbers that are not where anyone lives
_NOT_A_HOME_BEFORE = re.compile(
    r"(?:제|태풍|강의실|회의실|교실|열람실|실습실|병실|진료실|법정)[ \t]?$"
)
_NOT_A_HOME_AFTER = re.compile(
    r"[ \t]?(?:강의실|회의실|교실|열람실|실습실|강당|태풍|법정|병실|열차)"
)

_EN_STREET = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|"
    r"Parkway|Pkwy|Terrace|Highway|Hwy|Square|Sq|Circle|Cir)"
)
_EN_ADDRESS = re.compile(  # 1600 Amphitheatre Parkway, Mountain View, CA 94043
    rf"(?<![\w#-])\d{{1,6}}[A-Za-z]?(?: [A-Z][A-Za-z'.-]*){{1,5}} {_EN_STREET}\b\.?"
    r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|#)\.? ?#?[\w-]+)?"
    r"(?:, [A-Z][a-z]+(?: [A-Z][a-z]+)*){0,2}(?:,? [A-Z]{2}\b)?(?: \d{5}(?:-\d{4})?)?"
)

_PLATE_SYLLABLES = set(
    "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주아바사자배하허호육해공국합"
)
_COUNTERS = (
    "원", "개", "명", "번", "회", "건", "점", "쪽", "분", "초", "년", "월", "일", "시", "살",
    "장", "권", "대", "층", "평", "달러", "km", "kg", "%", "세",
)  # fmt: skip
_REGIONS_SHORT = (
    "서울|부산|대구|인천|광주|대전|울산|세종|경기|강원|충북|충남|전북|전남|경북|경남|제주"
)

_D = "[-\u2010\u2011\u2013\u2014\uff0d]"  # a dash as typed or pasted: -, ‐, –, —, －
_PHONE_SEP = rf"(?:[ \t]?(?:{_D}|\.)[ \t]?|[ \t])"  # -, ., a space, or ` - ` between groups
# the endings of the sites people share a profile or page of without `https://` (a path follows)
_TLD = r"(?:com|net|org|kr|io|me|ly|gl|be|tv|co|app|dev|so|page|link|site|info|blog)"

# One alternation, one pass over the text; the first group that matches names the kind. Every
# alternative starts with a digit, a Latin letter, @ or +: the lookahead lets the engine skip
# every Hangul syllable at once (5× faster on chat text) — region names before a plate or licence
# number are the exception, and are listed in it.
_PATTERN = re.compile(
    rf"(?=[0-9A-Za-z@+._%(-]|{_REGIONS_SHORT})(?:"
    + "|".join(
        [
            r"(?P<EMAIL>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})",
            # a URL stops at Hangul: particles are glued on (`https://a.kr/x에서`)
            r"(?P<URL>(?:https?://|www\.)[^\s가-힣<>\"']+|"
            rf"(?<![\w@.-])(?:[A-Za-z0-9-]+\.)+{_TLD}/[^\s가-힣<>\"']+)",
            # 운전면허번호 AA-BB-CCCCCC-DD: AA a region code (11–28), or the region's name
            rf"(?P<DRIVER_LICENSE>(?<![\d-])(?:(?:1[1-9]|2[0-8])(?:-\d{{2}}-\d{{6}}-| \d{{2}} \d{{6}} )|"
            rf"(?:{_REGIONS_SHORT})[ \t]?\d{{2}}-\d{{6}}-)\d{{2}}(?![\d-]))",
            # 주민/외국인등록번호 YYMMDD-GNNNNNN (also with a dot or a space, or starred)
            rf"(?P<RRN>(?<![\d-])\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[ \t]?(?:{_D}|\.)?[ \t]?"
            r"(?:\d{7}|[1-8]\*{6}|\*{7})(?![\d*]))",
            r"(?P<CORPORATE_ID>(?<![\d-])\d{6}-\d{7}(?![\d-]))",
            r"(?P<BUSINESS_ID>(?<![\d-])\d{3}-\d{2}-\d{5}(?![\d-]))",
            r"(?P<CARD>(?<![\d-])(?:\d{4}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}|\d{4}[- ]?\d{6}[- ]?\d{5})(?![\d-]))",
            # 010-1234-5678, (010)1234-5678, +82 10 …, 82-10-…; dashes, dots, spaces or none
            rf"(?P<MOBILE>(?<![\d+])(?:\+?82[ .]?{_D}?[ .]?\(?0?\)?1[016789]|\(?01[016789]\)?)"
            rf"{_PHONE_SEP}?\d{{3,4}}{_PHONE_SEP}?\d{{4}}(?!\d))",
            # 02-345-6789, (02) 345-6789, 031)123-4567, +82 2 …, 070 and 0502–0508 numbers
            rf"(?P<LANDLINE>(?<![\d-])(?:\+?82[ .]?{_D}?[ .]?\(?0?\)?(?:2|[3-6][1-5]|70)|"
            rf"\(?(?:02|0[3-6][1-5]|070|050[2-8])\)?)"
            rf"(?:(?:\)[ \t]?|{_PHONE_SEP})\d{{3,4}}{_PHONE_SEP}\d{{4}}|\d{{7,8}})(?!\d))",
            # 자동차 번호판 12가 3456, 123가 4567, 서울 12가 3456
            rf"(?P<PLATE>(?<![\d가-힣])(?:(?:{_REGIONS_SHORT})[ \t]?)?\d{{2,3}}[ \t]?[가-힣][ \t]?\d{{4}}(?!\d))",
            r"(?P<IP>(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d))",
            r"(?P<PASSPORT>(?<![A-Za-z0-9])[MSRODGmsrodg]\d{3}[A-Za-z]\d{4}(?![A-Za-z0-9]))",
            r"(?P<ACCOUNT>(?<![\d,.-])\d{2,6}(?:-\d{2,7}){1,3}(?![\d,.-])|(?<![\d,.-])\d{10,14}(?![\d,.-]))",
            r"(?P<MENTION>@[가-힣A-Za-z0-9_](?:[가-힣A-Za-z0-9_.]{0,28}[가-힣A-Za-z0-9_])?)",
        ]
    )
    + ")"
)
_BANKS = (
    "계좌", "통장", "입금", "송금", "이체", "은행", "국민", "신한", "우리", "하나", "농협", "기업",
    "카카오뱅크", "케이뱅크", "토스", "새마을", "우체국", "수협", "씨티", "SC제일", "부산은행",
    "대구은행", "경남은행", "광주은행", "전북은행", "제주은행", "account", "bank",
)  # fmt: skip
_KEYWORDS = re.compile("|".join(map(re.escape, _BANKS)))
# numbers of things, not people: a checksum-valid 사업자/법인 shape after these is left alone
_ORDER_CUES = re.compile(
    r"(?:주문|송장|운송장|배송|예약|접수|결제|거래|승인|영수증|[Oo]rder|[Tt]racking|[Ii]nvoice)"
    r"[ \t]*(?:번호|No\.?|#)?[ \t]*[:：]?[ \t]*$"
)
_VERSION_CUES = re.compile(
    r"(?:[vV]|[Vv]er(?:sion)?\.?|버전|iOS|[Aa]ndroid|안드로이드|펌웨어|[Ff]irmware)[ \t:]*$"
)

# Kinds found only after a cue word (여권번호: M12345678, 우편번호 04524, 생년월일: 1988.07.21).
_SEP = r"[ \t]*(?:[:：=#]|는|은|이|가|번호|번호는|번호:|is:?)?[ \t]*\(?"
_DATE_VALUE = (
    r"\d{4}[./-] ?\d{1,2}[./-] ?\d{1,2}\.?|(?:\d{4}|\d{2})년 ?\d{1,2}월 ?\d{1,2}일|"
    r"\d{8}|\d{6}|\d{1,2}월 ?\d{1,2}일|\d{1,2}/\d{1,2}/\d{4}"
)
# a Korean full name after 예금주/수령인/성명: a common surname and one or two syllables
_SURNAMES = (
    "김이박최정강조윤장임한오서신권황안송류유전홍고문양손배백허남심노하곽성차주우구민진나지엄"
    "채원천방공현함변염여추도소석선설마길연위표명기반왕금옥육인맹제모탁국어은편용예경봉사부가복태목"
)
_SURNAME = rf"(?:남궁|황보|제갈|선우|독고|사공|[{_SURNAMES}])"
_FULL_NAME = (  # (not the words that follow these cues: 이름, 성함, 정보 …)
    r"(?!이름|성함|정보|확인|변경|본인|명의|계좌|번호|주소|연락처)"
    rf"{_SURNAME}[가-힣]{{1,2}}"
    r"(?=$|[^가-힣]|[이은는가을를의에야님씨입으])"  # a particle may follow: 홍길동입니다
)
# A full name before 씨 or 님 written apart, as spelling wants it (박서준 씨가, 최유진 님께): 씨
# after two or three syllables, 님 after three only (`이제 님이`, `진짜 님`: 님 is also "you")
_HONORED = re.compile(  # (not seeds: 수박 씨, nor words before 씨 뿌리기)
    r"(?<![가-힣])(?!수박|사과|참외|고추|호박|오이|배추|부추|마늘|고구마|유자|이번|오늘|우리|조금|모두)"
    rf"(?P<PERSON>{_SURNAME}[가-힣]{{1,2}}(?= 씨)|{_SURNAME}[가-힣]{{2}}(?= 님))"
    r" [씨님](?=$|[^가-힣]|[이가은는을를의에께한랑과와도])"
)
# An account on a messenger or a social site, named after its site or the word 아이디 (a person:
# like an @mention). After the site's name alone the handle needs a digit, `_`, `.` or `-` in
# it (`인스타 story` is no one); after 아이디/ID/계정 any handle does.
_SITES_KO = (
    "인스타그램",
    "인스타",
    "트위터",
    "틱톡",
    "스레드",
    "페이스북",
    "페북",
    "깃허브",
    "디스코드",
    "디코",
)
_SITES = rf"{'|'.join(_SITES_KO)}|(?i:insta(?:gram)?|twitter|tiktok|facebook|github)"
_ID_WORD = r"아이디|ID|(?<![A-Za-z])id(?![A-Za-z])|계정"
_HANDLE = re.compile(
    rf"(?:(?P<SITE>{_SITES})[ \t]*(?P<WORD>{_ID_WORD})?|(?:카톡|카카오톡|카카오)?[ \t]*(?P<BARE>{_ID_WORD}))"
    r"[ \t]*(?:[:：=]|는|은|이|가|을|를)?[ \t]*@?"
    r"(?P<PERSON>(?=[A-Za-z0-9._-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9._-]{2,29})(?![A-Za-z0-9._-]*[@/])"
)
# the Latin words that can start an account's mention, case by case (an inline (?i) flag makes
# a search 3× slower)
_ACCOUNT_LATIN = r"ID|(?<![A-Za-z])id(?![A-Za-z])|[Ii]nsta|INSTA|[Tt]witter|[Tt]ik[Tt]ok|[Ff]acebook|[Gg]it[Hh]ub"
_HANDLE_HINT = re.compile(
    rf"(?=[A-Za-z아계{''.join(sorted({w[0] for w in _SITES_KO}))}])"
    rf"(?:아이디|계정|{'|'.join(_SITES_KO)}|{_ACCOUNT_LATIN})"
)

_CUED = re.compile(
    "|".join(
        rf"(?:{cue}){_SEP}(?P<{kind}>{value})(?![\dA-Za-z])"
        for kind, cue, value in [
            (
                "PASSPORT",
                r"여권|(?i:passport)(?: (?i:no)\.?| (?i:number))?",
                r"[MSRODGmsrodg]\d{8}",
            ),
            # after its name, any 13 digits (or the 6 before the dash) are a 주민/외국인등록번호
            (
                "RRN",
                r"(?:주민|외국인)(?:등록)?[ \t]?번호(?:[ \t]?(?:앞|뒷)자리)?",
                rf"\d{{6}}[ \t]?(?:{_D}|\.)?[ \t]?[\d*]{{7}}|\d{{6}}(?![ \t]?{_D})",
            ),
            # after its name, a card-shaped number is a card's, whatever its check digit
            (
                "CARD",
                r"(?:신용|체크)카드(?:[ \t]?번호)?|카드[ \t]?번호|(?i:card (?:no\.?|number))",
                r"\d{4}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}|\d{4}[- ]?\d{6}[- ]?\d{5}",
            ),
            (
                "DRIVER_LICENSE",
                r"(?:운전)?면허(?:증)?|[Dd]river'?s? [Ll]icen[cs]e(?: [Nn]o\.?| [Nn]umber)?",
                r"\d{12}|\d{2}[- ]\d{2}[- ]\d{6}[- ]\d{2}",
            ),
            (
                "BUSINESS_ID",
                r"사업자(?:등록)?|BRN|[Bb]usiness(?: [Rr]egistration)? (?:[Nn]o\.?|[Nn]umber)",
                r"\d{10}|\d{3}[- ]\d{2}[- ]\d{5}",
            ),
            ("CORPORATE_ID", r"법인(?:등록)?", r"\d{13}|\d{6}[- ]\d{7}"),
            ("PERSON", r"예금주(?:명)?|수령인|성명", _FULL_NAME),
            (
                "ZIPCODE",
                r"우편|\(우\)|우\)|[Zz][Ii][Pp](?: ?[Cc]ode)?|[Pp]ost(?:al)? ?[Cc]ode",
                r"\d{5}|\d{3}-\d{3}",
            ),
            (
                "BIRTHDATE",
                r"생년월일|출생일|생일|[Dd]\.?[Oo]\.?[Bb]\.?|[Dd]ate of [Bb]irth|[Bb]irth ?[Dd]ate|[Bb]irthday",
                _DATE_VALUE,
            ),
        ]
    )
)
# The rarer kinds, looked for only where this one scan finds a sign of them.
_RARE_HINTS = re.compile(  # the lookahead skips every other syllable at once
    r"(?=[A-Za-z여면사법우생출일주외카예수성\d.(])(?:"
    rf"(?P<EN>\b{_EN_STREET}\b)|"
    r"(?P<CUE>여권|(?i:passport)|면허|[Ll]icen[cs]e|사업자|BRN|[Bb]usiness|법인|우편|우\)|주민|외국인|"
    r"카드|(?i:card)|예금주|수령인|성명|"
    r"[Zz][Ii][Pp]|[Pp]ost|생년|출생|생일|[Dd]\.?[Oo]\.?[Bb]|[Bb]irth)|(?P<BORN>[일\d.] ?생))"
)
# An older passport number (M12345678) has no shape of its own: a letter and 8 digits are
# also product, document and staff numbers. Without 여권 before it, it is one only in a message
# about a flight or a border, and when its digits are no date (S20240301 is a document's).
_OLD_PASSPORT = re.compile(r"(?<![A-Za-z0-9_-])[MSRODG]\d{8}(?![A-Za-z0-9_-])")
_TRAVEL = re.compile(
    r"여권|[Pp]assport|PASSPORT|출국|입국|비자|[Vv]isa|VISA|항공|비행기|공항|발권|탑승|체크인|"
    r"[Ff]light|[Aa]irline|[Aa]irport"
)
_PRODUCT_CUE = re.compile(
    r"(?:품번|모델(?:명|번호)?|상품(?:번호|코드)?|제품(?:번호|코드)?|부품(?:번호)?|[Mm]odel|SKU|[Ii]tem)"
    r"[ \t]*(?:[:：#]|은|는|이|가)?[ \t]*$"
)
_DATE_DIGITS = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
# a birth date said as such: 1988년 7월 21일생(이야), 1988.07.21생 (not 3월 2일 생각, 생방송)
_BORN = re.compile(
    r"(?P<BIRTHDATE>(?<![\d.])(?:(?:\d{4}|\d{2})년 ?\d{1,2}월 ?\d{1,2}일|"
    r"(?:\d{4}|\d{2})[./-] ?\d{1,2}[./-] ?\d{1,2}\.?)"
    r" ?생)(?=$|[^가-힣]|[이인입으])"
)

# Every structured kind needs a digit, an @, a URL's start or site, or a cue word for a name or
# an account: most chat lines have none of them, and this one cheap search lets them skip the
# big patterns (its lookahead skips every other character at once).
_LATIN_CUES = rf"www\.|https?:|\.{_TLD}/|{_ACCOUNT_LATIN}"
_CUE_WORDS = ("예금주", "수령인", "성명", "아이디", "계정", *_SITES_KO)
# (full-width digits, ＠ and Latin letters are candidates too: find_pii reads them as ASCII)
_WIDE_ALNUM = "\uff10-\uff19\uff20-\uff3a\uff41-\uff5a"
_CANDIDATE = re.compile(
    rf"(?=[0-9@.hwIiTtFfGg씨님{_WIDE_ALNUM}{''.join(sorted({w[0] for w in _CUE_WORDS}))}])"
    rf"(?:[0-9@{_WIDE_ALNUM}]|{_LATIN_CUES}|{'|'.join(_CUE_WORDS)}|(?<=[가-힣] )[씨님])"
)


# Full-width forms (０１０－１２３４－５６７８, Ｍ１２３４５６７８, ＠민지), as Korean and Japanese
# keyboards type them, and the ideographic space: read as their ASCII selves under NFC too. One
# character for one keeps every offset, so spans found in the narrowed text fit the original.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_WIDE = re.compile("[\uff01-\uff5e\u3000]")


def narrow(text: str) -> str:
    """The text with full-width ASCII forms as ASCII, the same length (no copy when none)."""
    return text.translate(_FULL_WIDTH) if _WIDE.search(text) else text


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    confidence: float = 1.0


_ADDRESS_CUE = (
    re.compile(  # 주소 a little before; 집 just before (집은 잠실동 22, not 집 앞 버스로 3)
        r"(?:주소|배송지|[Aa]ddress)[^\n]{0,8}$|집(?:은|이|은요|이요)?[ \t]*[:：]?[ \t]*$"
    )
)


def _address_ok(text: str, before: str = "") -> bool:
    """A road match needs more than `…로 3`: a region or city before it, a 번길/길 number, a
    building and unit after it, or the word 주소 just before (`버스로 3 정거장` is not an
    address); a lot number (지번) more than `…동 2` (우동 2그릇): a dash or 번지."""
    if re.search(rf"\d호$|{_BUILDING}", text) or re.match(rf"^(?:{_REGION}|{_CITY})[ \t]", text):
        return True
    if _ADDRESS_CUE.search(before):
        return True
    if re.search(r"\d[ \t]?번?길[ \t]?\d", text):
        return True
    return bool(re.search(r"\d-\d|번지", text))


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _account_ok(text: str, start: int, end: int) -> bool:
    """10–14 digits near a bank's word; or, with no word, grouped the way banks group them:
    12–14 digits in 3 or 4 groups (신한 110-123-456789, 카카오뱅크 3333-01-2345678), not after
    an order or tracking number's name and not starting with a year (2024-0301-123456)."""
    value = text[start:end]
    digits = _digits(value)
    if not 10 <= len(digits) <= 14:
        return False
    if _KEYWORDS.search(text[max(0, start - 20) : end + 12]):
        return True
    groups = value.split("-")
    return (
        len(digits) >= 12
        and 3 <= len(groups) <= 4
        and not re.fullmatch(r"(?:19|20)\d\d", groups[0])
        and not _ORDER_CUES.search(text[max(0, start - 16) : start])
        and not re.search(r"ISBN[ \t:]*$", text[max(0, start - 8) : start])
    )


def _check(kind: str, text: str, start: int, end: int) -> str | None:
    """The kind this match really is after the checks beyond its shape (None: not PII)."""
    value = text[start:end]
    if kind in ("MOBILE", "LANDLINE"):
        return "PHONE"
    if kind == "MENTION":
        return "PERSON"
    if kind == "CARD":
        return kind if luhn_ok(_digits(value)) else None
    if kind in ("BUSINESS_ID", "CORPORATE_ID"):
        ok = (brn_checksum_ok if kind == "BUSINESS_ID" else corporate_checksum_ok)(_digits(value))
        if ok and not _ORDER_CUES.search(text[max(0, start - 16) : start]):
            return kind
        return "ACCOUNT" if _account_ok(text, start, end) else None
    if kind == "ACCOUNT":
        if _account_ok(text, start, end):
            return kind
        return _bare_id(text, start, end)
    if kind == "PLATE":
        letter = re.search(r"[가-힣](?=[ \t]?\d{4}$)", value)
        after = text[end : end + 2].lstrip()
        if letter is None or letter.group() not in _PLATE_SYLLABLES or after.startswith(_COUNTERS):
            return None
        return kind
    if kind == "IP":
        octets = [int(part) for part in value.split(".")]
        if (
            max(octets) > 255
            or max(octets) < 10
            or _VERSION_CUES.search(text[max(0, start - 12) : start])
        ):
            return None
        return kind
    if kind == "RRN":
        return _rrn_or_corporate(text, start, end)
    return kind


def _rrn_or_corporate(text: str, start: int, end: int) -> str | None:
    """A 법인등록번호 can look like a 주민등록번호 (110111-0012346: 11-01-11 and a 0): the cue
    법인 before it, then the checksums tell them apart. G 0 or 9 (born in the 1800s) needs a
    checksum; G 1–8 stays an RRN when neither holds (numbers issued since Oct 2020 have none).
    A 법인 number starts with its registry office, 11xx–28xx (900101-… cannot be one)."""
    before = text[max(0, start - 16) : start]
    if re.search(r"법인[^\d]{0,8}$", before):
        return "CORPORATE_ID"
    if re.search(r"(?:주민|외국인)[^\d]{0,10}$", before):
        return "RRN"
    digits = _digits(text[start:end])
    if len(digits) < 13:  # starred
        return "RRN"
    if rrn_checksum_ok(digits):
        return "RRN" if digits[6] in "12345678" or not _thing_cue(text, start) else None
    if _corporate_ok(digits) and not _thing_cue(text, start):
        return "CORPORATE_ID"
    if digits[6] in "12345678":
        return "RRN"
    return "ACCOUNT" if _account_ok(text, start, end) else None


def _thing_cue(text: str, start: int) -> bool:
    """An order, tracking, booking, version or ISBN number's name just before: not a person's."""
    before = text[max(0, start - 16) : start]
    return bool(
        _ORDER_CUES.search(before)
        or _VERSION_CUES.search(before)
        or re.search(r"ISBN[ \t:]*$", before)
    )


def _bare_id(text: str, start: int, end: int) -> str | None:
    """Digits with no separator and no cue: a 사업자등록번호 (10) or 법인등록번호 (13) when its
    shape and check digit hold — a tax office (1xx–6xx), a type that is not 00, a serial that is
    not 0000; a registry office (11xx–28xx), a 법인 kind — and nothing says it is an
    order, a version, a book or an amount (1234567890원)."""
    value = text[start:end]
    after = text[end : end + 3].lstrip()
    if not value.isdigit() or after.startswith(_COUNTERS) or _thing_cue(text, start):
        return None
    if len(value) == 10 and value[0] in "123456" and value[3:5] != "00" and value[5:9] != "0000":
        return "BUSINESS_ID" if brn_checksum_ok(value) else None
    if len(value) == 13:
        return "CORPORATE_ID" if _corporate_ok(value) else None
    return None


# 법인 kinds (5th–6th digits): 11–15 commercial, 21–22 civil, 31–51 special, 71 other, 81–86 foreign
_CORPORATE_KINDS = frozenset(
    f"{kind:02d}" for kind in [*range(11, 16), 21, 22, *range(31, 52), 71, *range(81, 87)]
)


def _corporate_ok(digits: str) -> bool:
    """A 법인등록번호's registry office (11xx–28xx), its kind, its check digit."""
    return (
        "11" <= digits[:2] <= "28"
        and digits[4:6] in _CORPORATE_KINDS
        and corporate_checksum_ok(digits)
    )


def find_structured(text: str) -> list[Span]:
    """Spans of every kind but names, each checked beyond its shape."""
    spans: list[Span] = []
    if not _CANDIDATE.search(text):
        return spans
    for match in _PATTERN.finditer(text):
        start, end = match.span()
        kind = _check(match.lastgroup, text, start, end)
        if kind == "URL":
            end = start + len(match.group().rstrip(".,)!?"))
        if kind == "RRN":
            confidence = 1.0 if rrn_checksum_ok(_digits(match.group())) else 0.8
            spans.append(Span(start, end, kind, confidence))
        elif kind:
            spans.append(Span(start, end, kind))
    if _ADDRESS_HINT.search(text):
        for match in _ADDRESS.finditer(text):
            start = match.start()
            value = match.group().rstrip()
            end = start + len(value)
            if match.lastgroup == "ADDRESS" and not _address_ok(
                value, text[max(0, start - 12) : start]
            ):
                continue
            if match.lastgroup in ("UNIT", "BLOCK") and (
                _NOT_A_HOME_BEFORE.search(text[max(0, start - 6) : start])
                or _NOT_A_HOME_AFTER.match(text, end)
            ):
                continue
            spans.append(Span(start, end, "ADDRESS"))
    hints = {m.lastgroup for m in _RARE_HINTS.finditer(text)} if _RARE_HINTS.search(text) else ()
    if "EN" in hints:
        spans += [Span(*m.span(), "ADDRESS") for m in _EN_ADDRESS.finditer(text)]
    if "CUE" in hints:
        spans += [Span(*m.span(m.lastgroup), m.lastgroup) for m in _CUED.finditer(text)]
    if "BORN" in hints or "CUE" in hints:
        spans += [Span(*m.span(), "BIRTHDATE") for m in _BORN.finditer(text)]
    if _OLD_PASSPORT.search(text) and _TRAVEL.search(text):
        spans += [
            Span(*m.span(), "PASSPORT")
            for m in _OLD_PASSPORT.finditer(text)
            if not _DATE_DIGITS.fullmatch(m.group()[1:])
            and not _thing_cue(text, m.start())
            and not _PRODUCT_CUE.search(text[max(0, m.start() - 12) : m.start()])
        ]
    if _HANDLE_HINT.search(text):
        for m in _HANDLE.finditer(text):
            handle = m.group("PERSON").rstrip("._-")
            if m.group("WORD") or m.group("BARE") or re.search(r"[\d_.-]", handle):
                spans.append(Span(m.start("PERSON"), m.start("PERSON") + len(handle), "PERSON"))
    if " 씨" in text or " 님" in text:
        spans += [Span(*m.span("PERSON"), "PERSON") for m in _HONORED.finditer(text)]
    return spans


# ------------------------------------------------------------------------------ names


# What decorates a nickname around the name itself: 김민지🌸, ♡서연♡, 준호(회사), [공지]지훈,
# 박준호/마케팅 — brackets and what they hold go, and what follows a / or |; the name is then
# the only run of Hangul left (`공부하는 민지`, `오늘도 화이팅` have no one name: they stay whole)
_NAME_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}|<[^>]*>|【[^】]*】")
_HANGUL_RUN = re.compile(r"[가-힣]+")


def name_core(name: str) -> str:
    """The Korean name inside a decorated nickname (준호(회사) → 준호), or the name itself."""
    if re.fullmatch(r"[가-힣]{2,4}", name):
        return name
    bare = _NAME_BRACKETS.sub(" ", name)
    runs = _HANGUL_RUN.findall(re.split(r"[/|]", bare)[0]) or _HANGUL_RUN.findall(bare)
    return runs[0] if len(runs) == 1 and 2 <= len(runs[0]) <= 4 else name


def name_forms(names: Iterable[str]) -> list[str]:
    """Each name, the Korean name inside a decorated nickname (김민지🌸 → 김민지), and for a
    3-syllable Korean full name its given name (김민지 → 민지); longest first so that 김민지 is
    masked whole. Particles after a name stay (민지야 → <PERSON1>야)."""
    forms = set()
    for name in names:
        name = name.strip()
        if len(name) < 2:
            continue
        forms.add(name)
        core = name_core(name)
        forms.add(core)
        if len(core) == 3 and re.fullmatch(r"[가-힣]{3}", core):
            forms.add(core[1:])
    return sorted((f for f in forms if len(f) >= 2), key=lambda f: (-len(f), f))


Names = list[str] | tuple[str, ...] | re.Pattern | None  # name forms, or names_pattern(forms)


def names_pattern(forms: Names) -> re.Pattern | None:
    """One compiled alternation of the name forms (longest first), or None."""
    if forms is None or isinstance(forms, re.Pattern):
        return forms
    return re.compile("|".join(re.escape(narrow(f)) for f in forms)) if forms else None


def find_names(text: str, names: Names) -> list[Span]:
    pattern = names_pattern(names)
    if pattern is None or not pattern.search(text):
        return []
    return [Span(m.start(), m.end(), "PERSON") for m in pattern.finditer(text)]


def may_hold_pii(text: str, forms: re.Pattern | None) -> bool:
    """False when find_pii would surely find nothing: no digit, @ or URL start, and no name (two
    cheap searches, so that most chat lines skip the detectors)."""
    return bool(_CANDIDATE.search(text) or (forms is not None and forms.search(text)))


def find_pii(text: str, forms: Names = None) -> list[Span]:
    """Non-overlapping spans, earliest first; on overlap the longer span wins, and address parts
    with only spaces or a comma between them are one address. Full-width letters and digits
    are read as ASCII (the offsets are the original text's)."""
    forms = names_pattern(forms)
    if not may_hold_pii(text, forms):
        return []
    text = narrow(text)
    spans = find_structured(text) + find_names(text, forms)
    if len(spans) < 2:
        return spans
    spans.sort(key=lambda s: (s.start, -(s.end - s.start)))
    kept: list[Span] = []
    for span in spans:
        if kept and span.start < kept[-1].end:
            if span.end - span.start > kept[-1].end - kept[-1].start:
                kept[-1] = span
            continue
        if (
            kept
            and span.kind == kept[-1].kind == "ADDRESS"
            and not text[kept[-1].end : span.start].strip(" \t,")
        ):
            kept[-1] = Span(kept[-1].start, span.end, "ADDRESS")
            continue
        kept.append(span)
    return kept


DETECTED = {"PHONE", "RRN", "CARD", "ACCOUNT", "EMAIL", "URL", "ADDRESS", "PERSON", "BUSINESS_ID"}
DETECTED |= {"CORPORATE_ID", "PASSPORT", "DRIVER_LICENSE", "PLATE", "BIRTHDATE", "ZIPCODE", "IP"}
if set(KINDS) != DETECTED:  # the one list of kinds is kotune.config.PII_KINDS
    raise ImportError(f"PII kinds {sorted(set(KINDS) ^ DETECTED)} lack a detector or a name")
