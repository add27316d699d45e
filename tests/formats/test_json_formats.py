"""summarization, alpaca and chat: good input becomes conversations, bad input names the record."""

import pytest

from kotune.errors import ConfigError, DataError
from kotune.formats import alpaca, chat, summarization
from kotune.ingest import ingest


def turns(records):
    return [[(m["role"], m["content"]) for m in r["messages"]] for r in records]


def test_summarization_puts_the_instruction_before_the_text():
    lines = [
        (1, {"id": "pc-1", "text": "본문", "summary": "요약"}),
        (2, {"text": "둘째", "summary": "요약2"}),
    ]
    records, skipped = summarization.parse(
        lines, "data/papers.jsonl", summarization.Options(instruction="요약하세요.")
    )
    assert turns(records) == [
        [("user", "요약하세요.\n\n본문"), ("assistant", "요약")],
        [("user", "요약하세요.\n\n둘째"), ("assistant", "요약2")],
    ]
    assert [r["id"] for r in records] == ["pc-1", "papers-2"] and skipped == {}


def test_alpaca_json_array_and_jsonl_with_and_without_input():
    array = [
        {"instruction": "비 오는 날 메뉴 추천", "input": "", "output": "김치전이오."},
        {"instruction": "메뉴 추천", "input": "예산 1만 원", "output": "국밥"},
    ]
    records, _ = alpaca.parse(array, "menu.json", None)
    assert turns(records) == [
        [("user", "비 오는 날 메뉴 추천"), ("assistant", "김치전이오.")],
        [("user", "메뉴 추천\n\n예산 1만 원"), ("assistant", "국밥")],
    ]
    lines = [(1, array[0]), (3, array[1])]
    assert turns(alpaca.parse(lines, "menu.jsonl", None)[0]) == turns(records)


def test_chat_openai_and_sharegpt():
    lines = [
        (
            1,
            {
                "messages": [
                    {"role": "user", "content": "안녕"},
                    {"role": "assistant", "content": "반가워"},
                ]
            },
        ),
        (
            2,
            {
                "id": "s",
                "conversations": [
                    {"from": "system", "value": "짧게"},
                    {"from": "human", "value": "뭐해"},
                    {"from": "gpt", "value": "쉬어"},
                ],
            },
        ),
    ]
    records, _ = chat.parse(lines, "c.jsonl", None)
    assert turns(records) == [
        [("user", "안녕"), ("assistant", "반가워")],
        [("system", "짧게"), ("user", "뭐해"), ("assistant", "쉬어")],
    ]
    assert [r["id"] for r in records] == ["c-1", "s"]


@pytest.mark.parametrize(
    ("parse", "document", "message"),
    [
        (
            summarization.parse,
            [(4, {"id": "a", "text": "x"})],
            "p.jsonl:4 (id a): missing field 'summary'",
        ),
        (
            summarization.parse,
            [(2, {"text": 3, "summary": "s"})],
            "p.jsonl:2 (id p-1): field 'text' must be a string",
        ),
        (alpaca.parse, [{"instruction": "i"}], "p.jsonl: [0] (id p-1): missing field 'output'"),
        (
            alpaca.parse,
            [{"instruction": "i", "input": 5, "output": "o"}],
            "field 'input' must be a string",
        ),
        (alpaca.parse, {"instruction": "i"}, "expected a JSON array of objects or JSON lines"),
        (alpaca.parse, ["text"], "p.jsonl: [0] must be an object"),
        (chat.parse, [(1, {"text": "x"})], "p.jsonl:1 (id p-1): missing field 'messages'"),
        (
            chat.parse,
            [(1, {"messages": [{"role": "bot2", "content": "x"}]})],
            "messages[0]: field 'role' must be one of",
        ),
        (
            chat.parse,
            [(1, {"conversations": [{"from": "human"}]})],
            "conversations[0]: missing field 'value'",
        ),
    ],
)
def test_bad_records_are_named(parse, document, message):
    options = summarization.Options() if parse is summarization.parse else None
    with pytest.raises(DataError) as error:
        parse(document, "p.jsonl", options)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("fmt", "given", "names", "message"),
    [
        ("summarization", {"me": "x"}, None, "unknown key persona.data.options.me"),
        ("alpaca", {"x": 1}, None, "persona.data.options: the alpaca format takes none, got x"),
        ("alpaca", {"me": "x"}, {"me": "--me", "options": "--options"}, "takes none, got --me"),
    ],
)
def test_unknown_options_are_refused_once_before_any_file_is_read(fmt, given, names, message):
    with pytest.raises(ConfigError, match=message):
        ingest(fmt, ["no/such/file.jsonl"], given, names)


def test_null_is_called_null():
    with pytest.raises(DataError, match="field 'output' must be a string, got null"):
        alpaca.parse([{"instruction": "i", "output": None}], "p.json", None)


@pytest.mark.parametrize(
    ("fmt", "name", "message"),
    [
        ("alpaca", "notes.txt", "the alpaca format (persona.data.format) reads .json or .jsonl"),
        ("mencius", "m.jsonl", "reads .json files; for a .jsonl file try"),
        ("kakaotalk", "chat.json", "a .json file, but the kakaotalk format"),
    ],
)
def test_a_file_of_the_wrong_kind_is_one_clear_error(tmp_path, fmt, name, message):
    path = tmp_path / name
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest(fmt, [path], {"me": "x"} if fmt == "kakaotalk" else {})
