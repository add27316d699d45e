"""What a generated task must pass to be kept, each failure counted by its reason.

Similarity is ROUGE-L on Kiwi *content* morphemes (nouns, verb and adjective stems, adverbs,
roots, foreign words, numbers): particles, endings, derivational suffixes and auxiliaries are
grammar, not the request. On all morphemes `라면 추천해 줘` and `떡볶이 추천해 줘` share 5 of 6
(ROUGE-L 0.83, a false duplicate); on content morphemes 1 of 2 (0.5), while `비가 오는 날에 …
추천해 주세요` against `비 오는 날 … 추천해 줘` stays 1.0. rouge_score's own tokenizer keeps only
[a-z0-9], so on Hangul it would never fire.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING

from kotune.selfinstruct.seeds import Task

if TYPE_CHECKING:
    from kotune.config import SelfInstructFilterConfig
    from kotune.scoring import KiwiMorphemes

# in the order they are checked; a task is counted once, under its first failure
REASONS = (
    "truncated",  # the last task of an answer cut at max_tokens (Alpaca drops it too)
    "empty",  # an empty or punctuation-only instruction or output
    "not_korean",  # no Hangul in the instruction (the references' "starts non-English")
    "too_short",
    "too_long",
    "blacklist",  # asks for what a text model cannot do: images, files, links, drawing …
    "repeats_instruction",  # the output says the instruction again instead of answering it
    "similar",  # ROUGE-L >= the threshold against a seed or an already kept instruction
)

# Morpheme tag prefixes kept for similarity (Sejong tags as Kiwi gives them): nouns, numerals,
# pronouns, verb and adjective stems, determiners, adverbs, roots, foreign words, numbers, Hanja.
CONTENT_TAGS = ("NN", "NR", "NP", "VV", "VA", "MM", "MAG", "XR", "SL", "SN", "SH", "W_")

# The references' English blacklist (Alpaca's generate_instruction.py, which extends
# Self-Instruct's), plus links and URLs. Whole words, any case.
BLACKLIST_EN = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
    "photo", "photos", "link", "links", "url", "screenshot", "attachment",
)  # fmt: skip
# The same in Korean, matched on Kiwi nouns so that 그림자 (a shadow) or 지도자 (a leader) pass.
BLACKLIST_NOUNS_KO = frozenset(
    [
        "이미지",
        "그림",
        "사진",
        "파일",
        "링크",
        "그래프",
        "지도",
        "동영상",
        "영상",
        "비디오",
        "오디오",
        "음성",
        "음악",
        "녹음",
        "도표",
        "차트",
        "다이어그램",
        "순서도",
        "스크린샷",
        "첨부",
        "첨부파일",
        "웹사이트",
        "홈페이지",
        "유튜브",
    ]
)
# verb stems: 그리다 (draw; 그리고 "and" is another morpheme), 첨부하다 is covered by 첨부
BLACKLIST_VERBS_KO = frozenset({"그리", "촬영"})

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORDISH = re.compile(r"\w", re.UNICODE)


def _en_pattern() -> re.Pattern[str]:
    words = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in BLACKLIST_EN)
    return re.compile(rf"(?<![A-Za-z])(?:{words})(?![A-Za-z])", re.IGNORECASE)


_BLACKLIST_EN = _en_pattern()


def is_blank(text: str) -> bool:
    """Empty, or nothing but punctuation, symbols and spaces (`...`, `-`, `**`, `「」`)."""
    return not any(_WORDISH.match(ch) and unicodedata.category(ch)[0] in "LN" for ch in text)


def visible_chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


class ContentMorphemes:
    """A rouge_score tokenizer: the content morphemes of a text, memoised (each instruction is
    compared with hundreds of others, and Kiwi is the slow part)."""

    def __init__(self, morphemes: KiwiMorphemes) -> None:
        self.morphemes = morphemes
        self.memo: dict[str, list[str]] = {}
        self.tags: dict[str, list[tuple[str, str]]] = {}

    def tagged(self, text: str) -> list[tuple[str, str]]:
        if text not in self.tags:
            self.tags[text] = self.morphemes.tagged(text)
        return self.tags[text]

    def tokenize(self, text: str) -> list[str]:
        if text not in self.memo:
            self.memo[text] = [
                form.lower() for form, tag in self.tagged(text) if tag.startswith(CONTENT_TAGS)
            ]
        return self.memo[text]


def _could_reach(a: list[str], a_counts: Counter, b: list[str], threshold: float) -> bool:
    """An upper bound on ROUGE-L before the O(|a|·|b|) LCS: LCS <= the shared token count."""
    if not a or not b:
        return False
    shared = sum((a_counts & Counter(b)).values())
    return 2 * shared / (len(a) + len(b)) >= threshold


class TaskFilter:
    """Checks candidates against the seeds and everything kept so far (call `keep` on a pass)."""

    def __init__(
        self, cfg: SelfInstructFilterConfig, tokens: ContentMorphemes, seeds: list[Task]
    ) -> None:
        from rouge_score.rouge_scorer import RougeScorer

        self.cfg = cfg
        self.tokens = tokens
        self.scorer = RougeScorer(["rougeL"], tokenizer=tokens)
        self.pool: list[list[str]] = []  # content morphemes of seed and kept instructions
        self.pool_texts: list[str] = []
        for seed in seeds:
            self.keep(seed)

    def rouge_l(self, a: str, b: str) -> float:
        """ROUGE-L F1 on content morphemes (F1 = 2·LCS / (|a| + |b|))."""
        return self.scorer.score(a, b)["rougeL"].fmeasure

    def most_similar(self, instruction: str) -> tuple[float, str]:
        """The highest ROUGE-L against the pool and the instruction it was reached with."""
        mine = self.tokens.tokenize(instruction)
        counts = Counter(mine)
        best, text = 0.0, ""
        for other, other_text in zip(self.pool, self.pool_texts):
            if not _could_reach(mine, counts, other, max(best, 1e-9)):
                continue
            score = self.rouge_l(instruction, other_text)
            if score > best:
                best, text = score, other_text
        return best, text

    def reason(self, task: Task) -> str | None:
        """The first rule the task breaks (one of REASONS), or None if it may be kept."""
        cfg = self.cfg
        if is_blank(task.instruction) or is_blank(task.output):
            return "empty"
        if not _HANGUL.search(task.instruction):
            return "not_korean"
        length = visible_chars(task.instruction)
        output_length = len(task.output.strip())  # as the clean stage counts a turn
        if length < cfg.min_instruction_chars or output_length < cfg.min_output_chars:
            return "too_short"
        if length > cfg.max_instruction_chars or output_length > cfg.max_output_chars:
            return "too_long"
        if self.blacklisted(f"{task.instruction}\n{task.input}"):
            return "blacklist"
        if self.repeats(task):
            return "repeats_instruction"
        if self.similar(task.instruction):
            return "similar"
        return None

    def blacklisted(self, text: str) -> bool:
        if _BLACKLIST_EN.search(text):
            return True
        for form, tag in self.tokens.tagged(text):
            if tag.startswith("NN") and form in BLACKLIST_NOUNS_KO:
                return True
            if tag == "VV" and form in BLACKLIST_VERBS_KO:
                return True
        return False

    def repeats(self, task: Task) -> bool:
        squash = lambda s: re.sub(r"\W+", "", s).lower()  # noqa: E731
        if squash(task.output) == squash(task.instruction):
            return True
        return self.rouge_l(task.instruction, task.output) >= self.cfg.rouge_l

    def similar(self, instruction: str) -> bool:
        mine = self.tokens.tokenize(instruction)
        counts = Counter(mine)
        threshold = self.cfg.rouge_l
        return any(
            _could_reach(mine, counts, other, threshold)
            and self.rouge_l(instruction, other_text) >= threshold
            for other, other_text in zip(self.pool, self.pool_texts)
        )

    def keep(self, task: Task) -> None:
        self.pool.append(self.tokens.tokenize(task.instruction))
        self.pool_texts.append(task.instruction)
