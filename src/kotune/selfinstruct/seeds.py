"""Seed tasks in the Self-Instruct format: `{id, name, instruction, instances: [{input, output}],
is_classification}`, as a JSON array or JSON lines (the reference's seed_tasks.jsonl)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kotune.errors import DataError
from kotune.records import json_type


@dataclass(frozen=True)
class Task:
    """One instruction record: a seed's first instance, a prompt example, or a generated task."""

    instruction: str
    input: str
    output: str

    def as_record(self) -> dict[str, str]:
        """The Alpaca record (`kotune ingest --format alpaca` reads it)."""
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


@dataclass(frozen=True)
class SeedTask:
    id: str
    name: str
    instruction: str
    instances: tuple[Task, ...]
    is_classification: bool

    @property
    def example(self) -> Task:
        """What a prompt shows: the first instance, as Alpaca's generate_instruction.py does."""
        return self.instances[0]


def _items(path: Path) -> list[tuple[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: seed tasks file not found") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg != "Extra data":  # JSON lines fail as "Extra data" after the first object
            raise DataError(
                f"{path}:{error.lineno}: invalid JSON at column {error.colno}: {error.msg}"
            ) from None
        document = None
    if isinstance(document, list):
        lines = _array_item_lines(text, len(document))
        return [(f"{path}:{line}", item) for line, item in zip(lines, document)]
    if isinstance(document, dict):
        return [(f"{path}:1", document)]
    items = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"{path}:{lineno}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{lineno}: invalid JSON: {error.msg}") from None
    return items


def _array_item_lines(text: str, count: int) -> list[int]:
    """The line where each top-level item of a JSON array starts (for error messages)."""
    decoder = json.JSONDecoder()
    lines, pos = [], text.index("[") + 1
    for _ in range(count):
        while text[pos] in " \t\r\n,":
            pos += 1
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
    return lines


def _text(item: dict[str, Any], key: str, where: str, *, empty_ok: bool = False) -> str:
    if key not in item:
        raise DataError(f"{where}: missing field '{key}'")
    value = item[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {json_type(value)}")
    if not empty_ok and not value.strip():
        raise DataError(f"{where}: field '{key}' is empty")
    return value.strip()


def parse_seed_task(item: Any, where: str) -> SeedTask:
    if not isinstance(item, dict):
        raise DataError(f"{where}: a seed task must be an object, got {json_type(item)}")
    task_id = item.get("id")
    if not isinstance(task_id, (str, int)) or isinstance(task_id, bool) or str(task_id) == "":
        raise DataError(f"{where}: field 'id' must be a non-empty string")
    where = f"{where} (id {task_id})"
    instances = item.get("instances")
    if not isinstance(instances, list) or not instances:
        raise DataError(f"{where}: field 'instances' must be a non-empty list of {{input, output}}")
    parsed = []
    for index, instance in enumerate(instances):
        at = f"{where}: instances[{index}]"
        if not isinstance(instance, dict):
            raise DataError(f"{at} must be an object, got {json_type(instance)}")
        parsed.append(
            Task(
                _text(item, "instruction", where),
                _text(instance, "input", at, empty_ok=True),
                _text(instance, "output", at),
            )
        )
    flag = item.get("is_classification", False)
    if not isinstance(flag, bool):
        raise DataError(f"{where}: field 'is_classification' must be true or false")
    return SeedTask(
        str(task_id), str(item.get("name", "")), parsed[0].instruction, tuple(parsed), flag
    )


def read_seed_tasks(path: str | Path) -> list[SeedTask]:
    """Every seed task, checked; an error names the file, the line and the field."""
    path = Path(path)
    tasks, seen = [], {}
    for where, item in _items(path):
        task = parse_seed_task(item, where)
        if task.id in seen:
            raise DataError(f"{where}: duplicate id '{task.id}' (first at {seen[task.id]})")
        seen[task.id] = where
        tasks.append(task)
    if not tasks:
        raise DataError(f"{path}: no seed tasks")
    return tasks
