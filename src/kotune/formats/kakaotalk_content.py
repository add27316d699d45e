"""What a KakaoTalk message holds that nobody typed: media placeholders (a photo, a call, a
deleted message) and system notices, in the spellings clients have used since 2015
(docs/korean.md lists them)."""

from __future__ import annotations

import re

# ------------------------------------------------------------------------------ placeholders

# What the client writes instead of what was sent (not text the person typed): whole messages.
_EXACT = {
    "photo": (
        "사진", "<사진>", "‹사진>", "<사진›", "‹사진›", "〈사진〉", "(사진)", "[사진]",
        "<사진 읽지 않음>", "Photo", "photo", "<Photo>", "(Photo)", "Photos", "이미지",
    ),
    "video": ("동영상", "<동영상>", "‹동영상>", "(동영상)", "Video", "video", "<Video>"),
    "emoticon": (
        "이모티콘", "(이모티콘)", "<이모티콘>", "‹이모티콘>", "Emoticon", "emoticon", "(emoticon)",
        "<Emoticon>", "스티커", "Sticker",
    ),
    "voice": ("음성메시지", "음성 메시지", "(음성메시지)", "Voice Message", "voice message"),
    "call": (
        "보이스톡 해요.", "페이스톡 해요.", "보이스톡 취소", "페이스톡 취소", "부재중 보이스톡",
        "Voice Call", "Face Talk", "Voice Talk",
    ),
    "deleted": (
        "삭제된 메시지입니다.", "메시지가 삭제되었습니다.", "채팅방 관리자가 메시지를 가렸습니다.",
        "This message was deleted.", "The message has been deleted.", "Message deleted.",
        "Deleted message.",
    ),
}  # fmt: skip
_PATTERNED = [
    (re.compile(r"사진 \d+장|\d+ photos?|<사진 \d+장>"), "photo"),
    (re.compile(r"(?:파일|File|file): .+"), "file"),
    (re.compile(r"(?:보이스톡|페이스톡|Voice Call|Face Talk) \d+(?::\d{2}){1,2}"), "call"),
    (re.compile(r"샵검색 ?: ?.+"), "search"),  # a #search shared: the query, not a reply
    # KakaoPay cards the client writes (a transfer, an envelope, a refund, a request): not typed
    (
        re.compile(
            r"(?:[\d,]+원을 보냈어요\.?|송금봉투가 도착했어요\.?) ?\n?송금 받기 전까지.*|"
            r"(?:[\d,]+원을 받았어요\.?|송금봉투를 받았어요\.?) ?\n?받은 카카오페이머니는.*|"
            r"[\d,]+원 (?:자동환불 예정|송금요청 메세지가 도착했어요)[\s\S]*|"
            r"정산 내용을 확인해주세요\.\n[\s\S]*정산금액[\s\S]*",
            re.DOTALL,
        ),
        "pay",
    ),
]
PLACEHOLDER_KINDS = tuple(_EXACT) + ("file", "search", "pay")
TAGS = {
    "photo": "<사진>",
    "video": "<동영상>",
    "emoticon": "<이모티콘>",
    "voice": "<음성>",
    "call": "<통화>",
    "file": "<파일>",
    "search": "<샵검색>",
    "pay": "<송금>",
    "deleted": None,  # nothing was said: never kept
}
_BY_TEXT = {text: kind for kind, texts in _EXACT.items() for text in texts}
_BY_TEXT |= {
    text[:-1]: kind for text, kind in _BY_TEXT.items() if text.endswith(".")
}  # 삭제된 메시지입니다
_PATTERN_STARTS = (
    "사진", "<사진", "파일", "File", "file", "보이스", "페이스", "Voice", "Face", "샵검색", "송금봉투",
    "정산",
)  # fmt: skip
_FIRST_CHARS = {text[0] for texts in _EXACT.values() for text in texts}
_FIRST_CHARS |= {text[0] for text in _PATTERN_STARTS} | set("0123456789 \t")


# An emoticon sent with words in one bubble: `(이모티콘) 고마워` (the words are typed text)
_EMOTICON_FIRST = re.compile(r"\((?:이모티콘|emoticon|Emoticon)\) (?=\S)")


def emoticon_prefix(text: str) -> int:
    """How long the emoticon placeholder is that starts a message with words after it (0: none)."""
    m = _EMOTICON_FIRST.match(text) if text[:1] == "(" else None
    return m.end() if m else 0


def placeholder(text: str) -> str | None:
    """The kind of placeholder (photo, video, …) if the whole message is one, else None."""
    if len(text) > 120 or text[:1] not in _FIRST_CHARS:  # short, and starting like one
        return None
    kind = _BY_TEXT.get(text)
    if kind is None and text[:1].isspace() or text[-1:].isspace():
        text = text.strip()
        kind = _BY_TEXT.get(text)
    if kind is not None:
        return kind
    if text[:1].isdigit() or text.startswith(_PATTERN_STARTS):
        for pattern, kind in _PATTERNED:
            if pattern.fullmatch(text):
                return kind
    return None


# ------------------------------------------------------------------------------ system notices

# Notices written as a line of their own, with no speaker: told from what people type by these
# whole-line phrases (PC exports write them without a time stamp, the CSV export as a row).
NOTICE = re.compile(
    r"^(?:"
    r".+님이 (?:들어왔습니다|나갔습니다|입장하셨습니다|퇴장하셨습니다|방장이 되었습니다|"
    r"부방장이 되었습니다)\.?|"
    r".+님을 (?:내보냈|부방장으로 지정했|부방장에서 해제했)습니다\.?|"
    r".+님(?:이 .+님)?을 초대(?:했|하였)습니다\.?|"  # older clients: 초대하였습니다
    r"(?:채팅방 관리자|방장|부방장)(?:이|가) 메시지를 가렸습니다\.?|"
    r"운영정책을 위반한 메시지로 신고 접수 시 .+|"
    r"타인, 기관 등의 사칭에 유의해 주세요\..*|"
    r".+ invited .+\.|.+ (?:left|joined|entered) (?:this|the) chatroom\.|.+ has left\.|"
    r".+ kicked .+ from (?:this|the) chatroom\.|"
    r".+ (?:has been|was) (?:removed|kicked) from (?:this|the) chatroom\.|"
    r".+ is now the (?:host|co-host) of (?:this|the) chatroom\."
    r")[ \t]*$"
)


def is_notice(line: str) -> bool:
    return bool(NOTICE.match(line))
