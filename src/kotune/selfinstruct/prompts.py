"""The request a teacher sees and the parser of what it answers.

The prompt is Stanford Alpaca's prompt.txt adapted to Korean: its requirements, then the k
examples as `###`-separated numbered tasks (`1. 지시:` / `1. 입력:` / `1. 출력:`), then a request
for the next ones. The parser reads what real models write back: that format, Markdown bold and
headings, English labels, labels without numbers, a JSON array, and text around the tasks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from kotune.selfinstruct.seeds import Task

NO_INPUT = "<입력 없음>"

# Alpaca's requirements (prompt.txt), in Korean, for any topic the examples set; "400자" stands
# for its "less than 100 words" (the menu answers run 60–400 characters).
HEADER = """\
다양한 과제 {new}개를 새로 만들어 주세요. 과제는 한국어 언어 모델에게 주어지고, 모델이 과제를 얼마나 잘 해내는지 평가하는 데 쓰입니다.

지켜야 할 점:
1. 다양성을 위해 과제마다 같은 동사를 되풀이하지 마세요.
2. 지시문의 말투도 다양하게: 질문과 요청하는 문장을 섞어 쓰세요.
3. 과제의 종류도 다양하게: 추천, 설명, 비교, 분류, 방법 안내, 계획 세우기 등을 섞으세요.
4. 글로만 답하는 언어 모델이 해낼 수 있는 과제여야 합니다. 그림·사진·영상·소리를 만들거나 보라는 과제, 파일이나 링크를 여는 과제, 알람·주문·예약처럼 행동을 해야 하는 과제는 만들지 마세요.
5. 모든 과제는 자연스러운 한국어로 쓰세요.
6. 지시문은 한두 문장으로 쓰세요. 질문이든 요청이든 괜찮습니다.
7. 필요하면 지시문에 맞는 입력을 쓰세요. 입력에는 예산, 인원, 재료, 조건처럼 실제 같은 구체적인 내용을 넣고 빈칸 같은 자리표시는 쓰지 마세요.
8. 입력이 필요 없는 과제도 있습니다. 그럴 때는 입력에 "{no_input}"이라고 쓰세요.
9. 출력은 지시문과 입력에 맞는 좋은 답이어야 하고 400자를 넘지 않아야 합니다.
10. 아래 예시와 같은 주제로 쓰되, 예시와 겹치는 과제는 만들지 마세요.

과제 목록:
"""

FOOTER = "위와 똑같은 형식으로 {first}번부터 {last}번까지 새 과제 {new}개를 이어서 써 주세요."


def encode_prompt(examples: list[Task], new_tasks: int) -> str:
    """One user message: the requirements, the numbered examples, the request for more."""
    parts = [HEADER.format(new=new_tasks, no_input=NO_INPUT)]
    for number, task in enumerate(examples, start=1):
        instruction = re.sub(r"\s+", " ", task.instruction).strip().rstrip(":")
        parts.append(
            f"###\n{number}. 지시: {instruction}\n{number}. 입력:\n{task.input or NO_INPUT}\n"
            f"{number}. 출력:\n{task.output}\n"
        )
    first = len(examples) + 1
    parts.append("###\n" + FOOTER.format(first=first, last=first + new_tasks - 1, new=new_tasks))
    return "".join(parts)


# ------------------------------------------------------------------------------------ parsing

# Words a real answer may label a field with. Not 질문/답/요청: answers use those inside outputs.
LABELS = {
    "instruction": "지시|지시문|지시 ?사항|명령|명령어|instruction|task|prompt",
    "input": "입력|입력값|입력 ?내용|input|context",
    "output": "출력|출력 ?내용|답변|응답|output|response|answer",
}
_FIELD = {
    alias.replace(" ?", ""): field
    for field, aliases in LABELS.items()
    for alias in aliases.replace(" ?", "").split("|")
}
_ALL_LABELS = "|".join(sorted({a for al in LABELS.values() for a in al.split("|")}, key=len)[::-1])
# `9. 지시: …`, `**9. 지시:** …`, `- 지시 : …`, `(9) Instruction: …`, `9번 출력:`, `### 9. Output:`
_LABEL_LINE = re.compile(
    rf"""^[\s>#*_\-•]*                 # Markdown noise: quote, heading, bold, bullet
    (?:(?:task|과제|예시)\s*)?           # `Task 9.` / `과제 9.`
    [(\[]?(?P<number>\d{{1,3}})?[)\]]?\s*(?:번)?\s*[.)．:]?\s*
    [*_]*\s*
    (?P<label>{_ALL_LABELS})
    \s*[*_]*\s*[:：]\s*[*_]*[ \t]*
    (?P<rest>.*)$""",
    re.IGNORECASE | re.VERBOSE,
)
# a line that only separates tasks: `###`, `---`, `### 9`, `**과제 9**`, `Task 9:`
_SEPARATOR = re.compile(
    r"^\s*(?:[#=*\-]{3,}|#{1,6}|\*\*)?\s*(?:(?:task|과제|예시)\s*)?(?:\d{1,3}\s*(?:번)?)?\s*[.:)]?"
    r"\s*(?:\*\*)?\s*$",
    re.IGNORECASE,
)
_NO_INPUT = re.compile(
    r"^[<(\[「\"']*\s*(?:입력\s*없음|없음|해당\s*없음|no\s*input|noinput|none|n/?a|-|—|\.|)\s*"
    r"[>)\]」\"']*\.?$",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*$", re.MULTILINE)


@dataclass
class ParsedAnswer:
    tasks: list[Task]
    truncated: int  # tasks dropped because the answer was cut at max_tokens (0 or 1)


def _clean_inline(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^(\*\*|__)(.*)\1$", r"\2", text).strip()
    if len(text) >= 2 and text[0] + text[-1] in ('""', "''", "“”", "「」", "『』"):
        text = text[1:-1].strip()
    return text


def _clean_block(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in lines).strip("\n")
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return re.sub(r"^(\*\*|__)(.*)\1$", r"\2", text, flags=re.S).strip()


def _task(fields: dict[str, list[str]]) -> Task:
    instruction = _clean_inline(" ".join(fields.get("instruction", [])))
    given = _clean_block(fields.get("input", []))
    given = "" if _NO_INPUT.match(given) else given
    return Task(instruction, given, _clean_block(fields.get("output", [])))


def _from_json(text: str) -> list[Task] | None:
    body = _FENCE.sub("", text).strip()
    if not body.startswith(("[", "{")):
        return None
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None
    if isinstance(document, dict):
        lists = [v for v in document.values() if isinstance(v, list)]
        document = lists[0] if len(lists) == 1 else [document]
    if not isinstance(document, list):
        return None
    tasks = []
    for item in document:
        if not isinstance(item, dict):
            continue
        fields: dict[str, list[str]] = {}
        for key, value in item.items():
            field = _FIELD.get(str(key).strip().lower().replace(" ", ""))
            if field and isinstance(value, str):
                fields[field] = [value]
        if fields:
            tasks.append(_task(fields))
    return tasks


def parse_answer(text: str, finish_reason: str | None) -> ParsedAnswer:
    """The tasks in a teacher's answer, in order. If generation stopped at max_tokens, the last
    task is likely cut and is dropped (as Alpaca's post_process_gpt3_response does)."""
    tasks = _from_json(text)
    if tasks is None:
        tasks = _from_lines(text)
    truncated = 0
    if finish_reason == "length" and tasks:
        tasks, truncated = tasks[:-1], 1
    return ParsedAnswer(tasks, truncated)


def _from_lines(text: str) -> list[Task]:
    tasks: list[Task] = []
    fields: dict[str, list[str]] | None = None
    current = None  # the field being read
    number = None  # the current task's number, if its labels carry one

    def finish() -> None:
        if fields:
            tasks.append(_task(fields))

    for line in _FENCE.sub("", text).splitlines():
        match = _LABEL_LINE.match(line)
        field = _FIELD[match["label"].lower().replace(" ", "")] if match else None
        renumbered = bool(match and match["number"] and number and match["number"] != number)
        repeated = match and fields is not None and field in fields and not renumbered
        if repeated and field != "instruction":  # `출력:` again inside an output: its own text
            fields[current].append(line)
            continue
        if match:
            if fields is None or field == "instruction" or renumbered:
                finish()
                fields, number = {}, match["number"]
            fields[field] = [match["rest"]]
            current = field
            number = number or match["number"]
        elif line.strip() and _SEPARATOR.match(line):
            finish()
            fields, current = None, None
        elif fields is not None and current is not None:
            fields[current].append(line)
    finish()
    return tasks
