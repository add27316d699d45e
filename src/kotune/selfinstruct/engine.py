"""The self-instruct loop, reproducible whatever the concurrency or the interruptions.

Requests are numbered. They go out in rounds of `round_size`; every request of a round is
planned from the state the earlier rounds left (examples drawn with a generator seeded by the
run's seed and the request's number), and answers are applied strictly in request order. So a
request's prompt never depends on which answer came back first, every answer is cached under
the request that asked for it, and a rerun (after Ctrl-C, a kill, or a finished run) replays the
cache into the same records, asking the teacher only for what is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kotune.config import GenerateConfig
from kotune.errors import KotuneError
from kotune.selfinstruct.cache import ResponseCache
from kotune.selfinstruct.filters import REASONS, ContentMorphemes, TaskFilter
from kotune.selfinstruct.prompts import encode_prompt, parse_answer
from kotune.selfinstruct.seeds import SeedTask, Task

if TYPE_CHECKING:
    from kotune.selfinstruct.client import Teacher

SHRINK = 0.8  # the seed's rule (after Alpaca's utils.py): 0.8 × what did not fit
MIN_MAX_TOKENS = 64  # below this an answer cannot hold one task: give up instead


@dataclass
class Plan:
    number: int
    examples: list[Task]  # in prompt order; a shrink keeps a prefix
    max_tokens: int


@dataclass
class Outcome:
    plan: Plan
    entry: dict[str, Any]  # the cached answer
    examples: int  # how many examples the answered prompt held
    max_tokens: int
    shrinks: int
    asked: bool = False  # the teacher was asked (else every step came from the cache)


def request_seed(seed: int, number: int) -> int:
    """The `seed` sent with request `number`: fixed per run seed and request, < 2^31."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class SelfInstruct:
    """One generation run. `run()` may be interrupted; `records()` and `metrics()` then hold
    everything applied so far, and a new run with the same cache continues from there."""

    def __init__(
        self,
        cfg: GenerateConfig,
        seeds: list[SeedTask],
        cache_dir: str | Path,
        api_key: str,
        morphemes: Any = None,
        unfinished: str | Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.seeds = seeds
        self.cache = ResponseCache(cache_dir, keep=unfinished)
        self.api_key = api_key
        self.morphemes = morphemes
        self._filter: TaskFilter | None = None  # Kiwi loads in seconds: only once needed
        self.kept: list[Task] = []
        self.counts: Counter = Counter()
        self.examples = cfg.examples  # shrinks for good after a prompt too long
        self.max_tokens = cfg.sampling.max_tokens
        self.requests = 0
        self.replayed = 0  # answers taken from the cache this run
        self.teacher: Teacher | None = None
        self.stopped = ""

    # ---------------------------------------------------------------- planning (deterministic)

    def plan(self, number: int) -> Plan:
        """The examples of request `number`: Self-Instruct's 2 generated (once there are any)
        + 6 seeds, shuffled; from a generator seeded by the run's seed and the number."""
        rng = random.Random(f"{self.cfg.seed}:{number}:examples")
        machine = rng.sample(
            self.kept, min(self.cfg.examples - self.cfg.seed_examples, len(self.kept))
        )
        wanted = min(self.cfg.examples - len(machine), len(self.seeds))
        examples = machine + [s.example for s in rng.sample(self.seeds, wanted)]
        rng.shuffle(examples)
        return Plan(number, examples[: self.examples], self.max_tokens)

    def request(self, plan: Plan, examples: int, max_tokens: int) -> dict[str, Any]:
        """Exactly what is sent (and what the cache is keyed by)."""
        sampling = self.cfg.sampling
        prompt = encode_prompt(plan.examples[:examples], self.cfg.new_tasks)
        request = {
            "model": self.cfg.teacher.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": max_tokens,
            "seed": request_seed(self.cfg.seed, plan.number),
        }
        # 0 is the API's default: left out, so servers without penalties accept the request
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(sampling, name):
                request[name] = getattr(sampling, name)
        return request

    # ---------------------------------------------------------------- asking

    def _next(self, entry: dict[str, Any], examples: int, max_tokens: int) -> tuple[int, int]:
        """After a prompt too long: fewer examples, and once only one is left, fewer tokens."""
        if examples > 1:
            return max(1, int(examples * SHRINK)), max_tokens
        if int(max_tokens * SHRINK) >= MIN_MAX_TOKENS:
            return examples, int(max_tokens * SHRINK)
        raise KotuneError(
            f"the teacher's context cannot hold one example and {max_tokens} new tokens "
            f"({entry['error']['message']})"
        )

    def cached(self, plan: Plan) -> Outcome | None:
        """The answer to a plan if the cache holds it (following any shrinks), else None."""
        examples, max_tokens, shrinks = len(plan.examples), plan.max_tokens, 0
        while True:
            entry = self.cache.get(self.request(plan, examples, max_tokens))
            if entry is None:
                return None
            if "response" in entry:
                return Outcome(plan, entry, examples, max_tokens, shrinks)
            shrinks += 1
            examples, max_tokens = self._next(entry, examples, max_tokens)

    async def answer(self, plan: Plan) -> Outcome:
        """The answer to a plan, from the cache or the teacher; fewer examples (then fewer
        tokens) while the teacher says the prompt is too long."""
        examples, max_tokens, shrinks, asked = len(plan.examples), plan.max_tokens, 0, False
        while True:
            request = self.request(plan, examples, max_tokens)
            entry = self.cache.get(request)
            if entry is None:
                answer = await self.teacher_for().complete(request, plan.number)
                entry, asked = self.cache.put(request, answer), True
            if "response" in entry:
                return Outcome(plan, entry, examples, max_tokens, shrinks, asked)
            shrinks += 1
            examples, max_tokens = self._next(entry, examples, max_tokens)

    @property
    def filter(self) -> TaskFilter:
        if self._filter is None:
            from kotune.scoring import KiwiMorphemes

            tokens = ContentMorphemes(self.morphemes or KiwiMorphemes())
            seeds = [s.example for s in self.seeds]
            self._filter = TaskFilter(self.cfg.filters, tokens, seeds)
        return self._filter

    def teacher_for(self) -> Teacher:
        if self.teacher is None:
            from kotune.selfinstruct.client import Teacher

            self.teacher = Teacher(
                self.cfg.teacher, self.api_key, self.cfg.concurrency, self.cfg.seed
            )
        return self.teacher

    # ---------------------------------------------------------------- applying (in order)

    def apply(self, outcome: Outcome) -> int:
        """Parse and filter one answer; returns how many tasks were kept."""
        response = outcome.entry["response"]
        choices = response.get("choices") or [{}]
        message = choices[0].get("message") or {}
        parsed = parse_answer(message.get("content") or "", choices[0].get("finish_reason"))
        counts = self.counts
        counts["requests"] += 1
        counts["prompt_shrinks"] += outcome.shrinks
        counts["candidates"] += len(parsed.tasks) + parsed.truncated
        counts["dropped_truncated"] += parsed.truncated
        if not parsed.tasks:
            counts["answers_without_tasks"] += 1
        usage = response.get("usage") or {}
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            counts[key] += int(usage.get(key) or 0)
        kept = 0
        for task in parsed.tasks:
            reason = self.filter.reason(task)
            if reason:
                counts[f"dropped_{reason}"] += 1
            elif len(self.kept) >= self.cfg.n:
                counts["surplus"] += 1
            else:
                self.kept.append(task)
                self.filter.keep(task)
                kept += 1
        self.requests += 1
        self.replayed += not outcome.asked
        self.examples = min(self.examples, outcome.examples)
        self.max_tokens = min(self.max_tokens, outcome.max_tokens)
        return kept

    def done(self) -> bool:
        if len(self.kept) >= self.cfg.n:
            self.stopped = f"{self.cfg.n} records kept"
        elif self.requests >= self.cfg.max_requests:
            self.stopped = f"{self.cfg.max_requests} requests made (max_requests)"
        return bool(self.stopped)

    async def _run(self, progress: Any) -> None:
        try:
            while not self.done():
                first = self.requests
                last = min(first + self.cfg.round_size, self.cfg.max_requests)
                await self._round([self.plan(number) for number in range(first, last)], progress)
        finally:
            if self.teacher is not None:
                await self.teacher.close()

    async def _round(self, plans: list[Plan], progress: Any) -> None:
        """Apply a round's answers in order. Cached ones need no server; at the first one
        missing, the rest of the round goes out together (at most `concurrency` in flight). So
        a replay asks nothing, and a resumed run asks only from where it stopped."""
        asked: dict[int, asyncio.Future] = {}
        try:
            for index, plan in enumerate(plans):
                outcome = None if asked else self.cached(plan)
                if outcome is None:
                    if not asked:
                        asked = {
                            p.number: asyncio.ensure_future(self.answer(p)) for p in plans[index:]
                        }
                    outcome = await asked[plan.number]
                progress.update(self.apply(outcome))
                progress.set_postfix(requests=self.requests, refresh=False)
                if self.done():
                    return
        finally:
            for future in asked.values():
                future.cancel()
            await asyncio.gather(*asked.values(), return_exceptions=True)

    def run(self, show_progress: bool | None = None) -> None:
        """Generate until n records are kept or max_requests are made (a progress bar on a
        terminal). Ctrl-C raises KeyboardInterrupt after the current state is consistent."""
        from tqdm import tqdm

        if self.requests == 0 and self.cached(self.plan(0)) is None:
            self.teacher_for().check(self.cfg.teacher.model)  # a wrong URL or key: fail at once
        disable = None if show_progress is None else not show_progress  # None: on a terminal
        with tqdm(total=self.cfg.n, unit="task", desc="self-instruct", disable=disable) as progress:
            asyncio.run(self._run(progress))

    # ---------------------------------------------------------------- results

    def records(self) -> list[dict[str, str]]:
        return [task.as_record() for task in self.kept]

    def metrics(self) -> dict[str, int]:
        """Flat counts for metrics/generate.json: the same for a fresh run and its replay.
        candidates = kept + surplus + every dropped_* (each task counted once)."""
        metrics = {key: int(self.counts[key]) for key in METRIC_KEYS}
        metrics["kept"] = len(self.kept)
        metrics["examples_per_prompt"] = self.examples
        metrics["max_tokens"] = self.max_tokens
        return dict(sorted(metrics.items()))


METRIC_KEYS = (
    "requests",  # answers applied (a shrunk or retried request still counts once)
    "candidates",  # tasks parsed from the answers
    "kept",
    "surplus",  # passed every filter after n were kept
    *(f"dropped_{reason}" for reason in REASONS),
    "answers_without_tasks",  # answers the parser found no task in
    "prompt_shrinks",  # prompts too long for the teacher, asked again shorter
    "examples_per_prompt",  # k at the end (lower after a shrink)
    "max_tokens",
    "prompt_tokens",  # usage, as the teacher reported it
    "completion_tokens",
    "total_tokens",
)
