"""The request text and the parser of the formats real teachers answer in."""

from __future__ import annotations

import pytest

from kotune.selfinstruct.prompts import encode_prompt, parse_answer
from kotune.selfinstruct.seeds import Task

EXAMPLES = [
    Task("비 오는 날 먹기 좋은 메뉴 추천해 줘.", "", "김치전 어때요?\n1. 김치전\n2. 칼국수"),
    Task("다음 음식을 한식과 중식으로 나눠 줘.", "김밥, 짜장면", "한식: 김밥\n중식: 짜장면"),
]


def test_the_prompt_numbers_the_examples_and_asks_for_the_next_ones():
    prompt = encode_prompt(EXAMPLES, 8)
    assert (
        "###\n1. 지시: 비 오는 날 먹기 좋은 메뉴 추천해 줘.\n1. 입력:\n<입력 없음>\n1. 출력:\n김치전"
        in prompt
    )
    assert "2. 입력:\n김밥, 짜장면\n2. 출력:\n한식: 김밥" in prompt
    assert prompt.endswith("3번부터 10번까지 새 과제 8개를 이어서 써 주세요.")
    assert "새로 만들어 주세요" in prompt and "그림" in prompt  # requirements incl. the blacklist


def test_the_prompt_written_by_encode_prompt_parses_back():
    prompt = encode_prompt(EXAMPLES, 8)
    assert parse_answer(prompt, "stop").tasks == EXAMPLES


PLAIN = """9. 지시: 편의점 도시락 고르는 요령 알려줘.
9. 입력:
<입력 없음>
9. 출력:
1. 단백질 반찬이 있는지 보세요.
2. 나트륨을 확인하세요.
###
10. 지시: 다음 음식을 분류해 줘.
10. 입력:
김밥, 짜장면
10. 출력:
한식: 김밥
중식: 짜장면
###"""
BOLD = """네, 새 과제를 만들어 드릴게요!

**9. 지시:** 여름철 입맛 돋우는 반찬 추천해 줘.
**9. 입력:** 없음
**9. 출력:** 오이소박이와 열무김치가 좋아요.

---

**10. 지시:** 냉면 육수 만드는 법은?
**10. 입력:** (없음)
**10. 출력:**
1. 양지를 삶아요.
2. 동치미 국물을 섞어요."""
ENGLISH = """### Task 9
- Instruction: 저녁 메뉴 골라 줘
- Input: 2명, 2만 원
- Output: 김치찌개 어때요?

### Task 10
- Instruction: 수박 고르는 법
- Input: N/A
- Output: 두드려 보세요"""
NO_NUMBERS = """지시: 저녁 메뉴 골라 줘
입력: 2명, 2만 원
출력: 김치찌개 어때요?

지시: 수박 고르는 법
입력: -
출력: 두드려 보세요"""
JSON = """```json
[{"instruction": "간식 추천", "input": "", "output": "젤리"},
 {"지시": "라면 레시피", "입력": "없음", "출력": "물 500ml"}]
```"""
INNER_LABELS = """9. 지시: 다음 중 매운 음식은?
9. 입력: 짜장면, 짬뽕
9. 출력:
답: 짬뽕
출력: 짬뽕이 더 매워요.
10. 입력: 없음
10. 출력: 지시가 없는 과제"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PLAIN, [("편의점 도시락 고르는 요령 알려줘.", "", "1. 단백질 반찬이 있는지 보세요.\n2. 나트륨을 확인하세요."),
                 ("다음 음식을 분류해 줘.", "김밥, 짜장면", "한식: 김밥\n중식: 짜장면")]),
        (BOLD, [("여름철 입맛 돋우는 반찬 추천해 줘.", "", "오이소박이와 열무김치가 좋아요."),
                ("냉면 육수 만드는 법은?", "", "1. 양지를 삶아요.\n2. 동치미 국물을 섞어요.")]),
        (ENGLISH, [("저녁 메뉴 골라 줘", "2명, 2만 원", "김치찌개 어때요?"), ("수박 고르는 법", "", "두드려 보세요")]),
        (NO_NUMBERS, [("저녁 메뉴 골라 줘", "2명, 2만 원", "김치찌개 어때요?"), ("수박 고르는 법", "", "두드려 보세요")]),
        (JSON, [("간식 추천", "", "젤리"), ("라면 레시피", "", "물 500ml")]),
        # a label inside an output stays in it; a task without an instruction is kept for the
        # filters to count (as empty)
        (INNER_LABELS, [("다음 중 매운 음식은?", "짜장면, 짬뽕", "답: 짬뽕\n출력: 짬뽕이 더 매워요."),
                        ("", "", "지시가 없는 과제")]),
        ("죄송하지만 도와드릴 수 없습니다.", []),
        ("", []),
    ],
    ids=["plain", "markdown-bold", "english-labels", "no-numbers", "json", "inner-labels", "refusal", "empty"],
)  # fmt: skip
def test_answers_in_the_formats_models_write(text, expected):
    parsed = parse_answer(text, "stop")
    assert [(t.instruction, t.input, t.output) for t in parsed.tasks] == expected
    assert parsed.truncated == 0


def test_an_answer_cut_at_max_tokens_loses_its_last_task():
    parsed = parse_answer(PLAIN, "length")
    assert [t.instruction for t in parsed.tasks] == ["편의점 도시락 고르는 요령 알려줘."]
    assert parsed.truncated == 1
    assert parse_answer("", "length").truncated == 0
