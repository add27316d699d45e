"""The filters, as tables: Korean near-duplicates caught, distinct tasks kept, every other reason."""

from __future__ import annotations

import pytest

from kotune.config import SelfInstructFilterConfig
from kotune.scoring import KiwiMorphemes
from kotune.selfinstruct.filters import REASONS, ContentMorphemes, TaskFilter
from kotune.selfinstruct.seeds import Task


@pytest.fixture(scope="module")
def tokens(kiwi: KiwiMorphemes) -> ContentMorphemes:
    return ContentMorphemes(kiwi)


def task(instruction: str, output: str = "네, 이렇게 해 보세요.", given: str = "") -> Task:
    return Task(instruction, given, output)


SIMILAR = [  # (kept earlier, new): the same request again
    ("비 오는 날 먹기 좋은 메뉴 추천해 줘.", "비가 오는 날에 먹기 좋은 메뉴를 추천해 주세요."),  # particles, politeness
    ("비 오는 날 먹기 좋은 메뉴 추천해 줘.", "비오는날 먹기좋은 메뉴 추천좀"),  # spacing, 좀
    ("비 오는 날 먹기 좋은 메뉴 추천해 줘.", "비 오는 날엔 어떤 메뉴 먹으면 좋을까?"),  # a question now
    ("김치찌개 맛있게 끓이는 법 알려줘.", "김치찌개를 맛있게 끓이는 방법을 알려 주실래요?"),
    ("다이어트 중인데 저녁 메뉴 추천해 줘.", "다이어트 하는 중인데 저녁 메뉴 좀 추천해 줄래?"),
    ("다이어트 중인데 저녁 메뉴 추천해 줘.", "다이어트 중에 먹을 저녁 메뉴를 골라 줘."),  # another verb
    ("편의점 간식 추천해줘.", "편의점에서 살 간식을 추천해 주세요"),
    ("후라이드 치킨 한 마리 칼로리가 얼마야?", "후라이드 치킨 한 마리는 칼로리가 얼마나 돼?"),
    # as in both references (0.7 on English words): one word changed in a long frame is similar
    ("비 오는 날 먹기 좋은 메뉴 추천해 줘.", "눈 오는 날 먹기 좋은 메뉴 추천해 줘."),
]  # fmt: skip
DISTINCT = [
    ("라면 추천해 줘", "떡볶이 추천해 줘"),  # 0.83 on all morphemes: why content morphemes
    ("후라이드 치킨 한 마리 칼로리가 얼마야?", "양념치킨 한 마리 단백질은 몇 그램이야?"),
    ("편의점 간식 추천해줘.", "편의점 도시락 고르는 요령 알려줘."),
    ("회식 장소로 어떤 메뉴가 좋을까?", "혼밥하기 편한 메뉴가 뭐가 있을까?"),
    ("김치찌개 맛있게 끓이는 법 알려줘.", "김치찌개에 어울리는 반찬은?"),
]


@pytest.mark.parametrize(("earlier", "new"), SIMILAR)
def test_korean_near_duplicates_are_caught(tokens, earlier, new):
    check = TaskFilter(SelfInstructFilterConfig(), tokens, [task(earlier)])
    assert check.reason(task(new)) == "similar"
    assert check.most_similar(new) == (pytest.approx(check.rouge_l(new, earlier)), earlier)


@pytest.mark.parametrize(("earlier", "new"), DISTINCT)
def test_distinct_tasks_are_kept(tokens, earlier, new):
    check = TaskFilter(SelfInstructFilterConfig(), tokens, [task(earlier)])
    assert check.reason(task(new)) is None
    assert check.rouge_l(new, earlier) < 0.7


def test_kept_tasks_join_the_pool(tokens):
    check = TaskFilter(SelfInstructFilterConfig(), tokens, [])
    assert check.reason(task("편의점 간식 추천해줘.")) is None
    check.keep(task("편의점 간식 추천해줘."))
    assert check.reason(task("편의점 간식을 추천해 주세요")) == "similar"


def test_all_morphemes_would_call_distinct_requests_duplicates(kiwi, tokens):
    """The reason for content morphemes: particles and endings (하/어/주/어) dominate short
    Korean requests, so on every morpheme two different dishes look like one request."""
    from rouge_score.rouge_scorer import RougeScorer

    every = RougeScorer(["rougeL"], tokenizer=kiwi).score("라면 추천해 줘", "떡볶이 추천해 줘")
    assert every["rougeL"].fmeasure >= 0.8
    content = RougeScorer(["rougeL"], tokenizer=tokens).score("라면 추천해 줘", "떡볶이 추천해 줘")
    assert content["rougeL"].fmeasure == 0.5


REASON_CASES = [
    (task("이 음식 사진 보고 칼로리 알려 줘"), "blacklist"),
    (task("김치찌개 끓이는 과정을 그려 줄래?"), "blacklist"),  # 그리다
    (task("잡채 레시피 동영상 링크 보내 줘"), "blacklist"),
    (task("일주일 식단표를 엑셀 파일로 만들어 줘"), "blacklist"),
    (task("회사 근처 맛집 지도 보여 줘"), "blacklist"),
    (task("칼로리 표를 plot 해 줘"), "blacklist"),
    (task("Draw 떡볶이 please"), "blacklist"),
    (task("이 메뉴 어때?", given="첨부한 이미지 참고"), "blacklist"),  # the input too
    (task("점심 메뉴 추천해 줘. 그리고 디저트도!"), None),  # 그리고 is "and"
    (task("지도자 연수 회식 메뉴 정해 줘"), None),  # 지도자 is a leader, not a map
    (task("mapo tofu 집에서 만드는 법"), None),  # map inside a word
    (task("..."), "empty"),
    (task("라면 끓이는 법", output="  "), "empty"),
    (task("라면 끓이는 법", output="—"), "empty"),
    (task("Recommend a snack"), "not_korean"),
    (task("밥?"), "too_short"),
    (task("라면 끓이는 법", output="네"), "too_short"),
    (task("메뉴 " * 160), "too_long"),
    (task("라면 끓이는 법", output="물 " * 1001), "too_long"),
    (task("편의점 간식 추천해 줘", output="편의점 간식 추천해 줘!"), "repeats_instruction"),
    (task("편의점 간식 추천해 줘", output="편의점 간식을 추천해 드릴게요."), "repeats_instruction"),
    (task("편의점 간식 추천해 줘", output="젤리나 초콜릿은 어떠세요?"), None),
]


@pytest.mark.parametrize(("candidate", "reason"), REASON_CASES)
def test_each_reason(tokens, candidate, reason):
    assert TaskFilter(SelfInstructFilterConfig(), tokens, []).reason(candidate) == reason


def test_every_reason_is_reachable():
    assert {r for _, r in REASON_CASES} | {"similar", "truncated"} == set(REASONS) | {None}
