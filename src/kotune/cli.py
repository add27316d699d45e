"""The `kotune` command: the pipeline's steps on single files, scoring, chat and serving."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kotune.errors import KotuneError, run_cli

# The ingest flags: each sets the format option of the same name (errors name the flag).
INGEST_FLAGS = {
    "me": "--me",
    "gap_minutes": "--gap-minutes",
    "media": "--media",
    "instruction": "--instruction",
}


def cmd_ingest(args: argparse.Namespace) -> int:
    from kotune.files import check_output_file
    from kotune.ingest import describe, ingest_file

    check_output_file(args.output)
    options = json.loads(args.options) if args.options else {}
    if not isinstance(options, dict):
        raise KotuneError('--options must be a JSON object, e.g. \'{"me": "준호"}\'')
    for key in INGEST_FLAGS:
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    names = {"format": "--format", "options": "--options", **INGEST_FLAGS}
    stats = ingest_file(args.format, args.inputs, options, args.output, names)
    skipped = describe(stats)
    print(
        f"ingest: {stats['conversations']} conversations, {stats['examples']} examples"
        + (f" ({skipped})" if skipped else ""),
        file=sys.stderr,
    )
    print(json.dumps(stats, sort_keys=True), file=sys.stderr)
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    import tempfile

    from kotune.cleaning import clean_file, describe
    from kotune.config import CleanConfig, PiiConfig, load_config
    from kotune.files import check_output_file, read_names

    check_output_file(args.output)
    if Path(args.params).is_file():
        cfg = load_config(args.params)
        clean, pii = cfg.clean, cfg.persona.pii
    else:
        clean, pii = CleanConfig(), PiiConfig()
    names = read_names(pii.names_file) if pii.names_file else []
    names += [n.strip() for n in (args.names or "").split(",") if n.strip()]
    with tempfile.TemporaryDirectory() as tmp:  # the audit is the stage's, not the command's
        cleaned = clean_file(args.input, args.output, Path(tmp) / "audit.jsonl", clean, pii, names)
    stats = cleaned.stats
    masked = sum(v for k, v in stats.items() if k.startswith("masked_"))
    print(
        f"clean: kept {stats['conversations_out']} of {stats['conversations_in']} conversations "
        f"({describe(stats, clean)}), masked {masked} PII spans",
        file=sys.stderr,
    )
    print(json.dumps(stats, sort_keys=True), file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from kotune.errors import DataError
    from kotune.files import read_jsonl
    from kotune.scoring import score

    predictions, references = [], []
    for lineno, row in read_jsonl(args.input):
        for key in ("prediction", "reference"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{args.input}:{lineno}: missing field '{key}' (a string)")
        predictions.append(row["prediction"])
        references.append(row["reference"])
    if not predictions:
        raise DataError(f"{args.input}: no lines to score")
    print(json.dumps(score(predictions, references), indent=2, sort_keys=True))
    return 0


def cmd_mask(args: argparse.Namespace) -> int:
    import unicodedata

    from kotune.masking import Pseudonyms, mask_text
    from kotune.pii import find_pii, name_forms

    # NFC first, as the clean stage does: decomposed Hangul (NFD, as macOS writes file names and
    # some exports) would hide every cue word and name from the detectors
    names = unicodedata.normalize("NFC", args.names or "")
    forms = name_forms(n for n in names.split(",") if n.strip())
    pseudonyms = Pseudonyms()  # one per run: the same person is the same <PERSONn> on every line
    for line in sys.stdin:
        text = unicodedata.normalize("NFC", line.rstrip("\n"))
        if args.json:
            spans = [
                {"start": s.start, "end": s.end, "kind": s.kind, "confidence": s.confidence}
                for s in find_pii(text, forms)
            ]
            print(json.dumps(spans), flush=True)
        else:
            print(mask_text(text, forms, pseudonyms)[0], flush=True)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from kotune.chat import ChatSession, run_chat
    from kotune.inference.adapter import load_exported
    from kotune.inference.engine import Engine

    loaded = load_exported(args.adapter, args.quantization, args.device)
    engine = Engine(loaded.model, loaded.tokenizer, loaded.settings, slots=1)
    changes = {}
    if args.max_new_tokens:
        changes["max_new_tokens"] = args.max_new_tokens
    if args.sample:
        changes["do_sample"] = True
    try:
        return run_chat(ChatSession(engine, engine.params(**changes)))
    finally:
        engine.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from kotune.serving.serve import serve

    return serve(args)


def cmd_merge(args: argparse.Namespace) -> int:
    from kotune.files import atomic_dir
    from kotune.inference.adapter import read_settings
    from kotune.inference.vllm import merge_adapter

    read_settings(args.adapter)  # a wrong folder fails before the heavy imports
    if args.output.exists():
        raise KotuneError(f"-o {args.output}: already exists (kotune merge writes a new folder)")
    with atomic_dir(args.output) as tmp:  # no half-written folder if it fails
        settings = merge_adapter(args.adapter, tmp, args.dtype)
    print(
        f"merged {args.adapter} into {settings.base.name} → {args.output}; serve it with: "
        f"vllm serve {args.output} --served-model-name {settings.persona}",
        file=sys.stderr,
    )
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from kotune.config import parse_config
    from kotune.modeling.memory import estimate_for, suggestions
    from kotune.overrides import compose_overrides as compose

    conf = Path(args.conf)
    if args.all:
        models = sorted(p.stem for p in (conf / "model").glob("*.yaml"))
        gpus = sorted(p.stem for p in (conf / "gpu").glob("*.yaml") if p.stem != "cpu")
        print("| model | " + " | ".join(gpus) + " |")
        print("|---|" + "---|" * len(gpus))
        for model in models:
            cells = []
            for gpu in gpus:
                cfg = parse_config(compose([f"model={model}", f"gpu={gpu}", *args.overrides], conf))
                estimate = estimate_for(cfg)
                cells.append(f"{estimate.card:.1f} {'✓' if estimate.fits else '✗'}")
            print(f"| {model} | " + " | ".join(cells) + " |")
        return 0
    cfg = parse_config(compose(args.overrides, conf))
    estimate = estimate_for(cfg)
    gpu = cfg.gpu
    print(
        f"{cfg.model.name} on {gpu.name}: micro-batch {gpu.micro_batch_size} × {cfg.max_seq_len} "
        f"tokens, {gpu.quantization}, {gpu.compute_dtype}, gradient checkpointing "
        f"{'on' if gpu.gradient_checkpointing else 'off'}, "
        f"{'packed rows' if gpu.packing else 'padded batches'}, {gpu.optimizer}"
        + (
            f", FSDP over {cfg.world_size} processes (per card)"
            if gpu.distributed == "fsdp"
            else ""
        )
    )
    for part, gib in estimate.as_dict().items():
        print(f"  {part:<20} {gib:8.2f} GiB")
    if gpu.memory_gib == 0:
        print("no fixed budget on this profile (the CPU)")
        return 0
    if estimate.fits:
        print(f"fits: {estimate.card:.1f} of {estimate.budget:.1f} GiB")
        return 0
    print(
        f"does not fit: {estimate.card:.1f} of {estimate.budget:.1f} GiB; try {suggestions(cfg, estimate)}"
    )
    return 1


# flag → its key in GenerateConfig (persona.generate in params), for `kotune selfinstruct`
SELFINSTRUCT_FLAGS = {
    "seeds": "seeds",
    "n": "n",
    "max_requests": "max_requests",
    "concurrency": "concurrency",
    "seed": "seed",
    "examples": "examples",
    "seed_examples": "seed_examples",
    "new_tasks": "new_tasks",
    "round_size": "round_size",
    "base_url": "teacher.base_url",
    "model": "teacher.model",
    "api_key_env": "teacher.api_key_env",
    "timeout": "teacher.timeout_s",
    "max_retries": "teacher.max_retries",
    "backoff": "teacher.backoff_s",
    "temperature": "sampling.temperature",
    "top_p": "sampling.top_p",
    "presence_penalty": "sampling.presence_penalty",
    "frequency_penalty": "sampling.frequency_penalty",
    "max_tokens": "sampling.max_tokens",
    "rouge_l": "filters.rouge_l",
}


def cmd_selfinstruct(args: argparse.Namespace) -> int:
    from kotune.config import GenerateConfig, build_section, check_generate
    from kotune.errors import ConfigError
    from kotune.selfinstruct.client import resolve_api_key
    from kotune.selfinstruct.run import generate_files

    data: dict = {"enabled": True}
    for flag, dotted in SELFINSTRUCT_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = str(value) if isinstance(value, Path) else value
    flags = {dotted: f"--{flag.replace('_', '-')}" for flag, dotted in SELFINSTRUCT_FLAGS.items()}
    try:
        cfg = build_section(GenerateConfig, data, "")
        check_generate(cfg, lambda key: flags.get(key, key))
    except ConfigError as error:  # a bound broken: name the flag, not the params key
        key, _, rest = str(error).partition(" ")
        raise KotuneError(f"{flags.get(key, key)} {rest}") from None
    api_key = resolve_api_key(cfg.teacher.api_key_env, required=args.api_key_env is not None)
    cache = args.cache or args.output.with_suffix(".cache")
    try:
        run = generate_files(cfg, args.output, cache, args.metrics, api_key)
    except KeyboardInterrupt:
        print(
            f"kotune: stopped; the records so far are in {args.output} and every answer in "
            f"{cache}: run the same command again to continue",
            file=sys.stderr,
        )
        raise
    teacher = run.teacher
    asked = f"{teacher.calls} HTTP calls, {teacher.retries} retries" if teacher else "no server"
    print(
        f"selfinstruct: {len(run.kept)} records from {run.requests} requests "
        f"({run.replayed} answers from {cache}, {asked}); stopped at {run.stopped}",
        file=sys.stderr,
    )
    print(json.dumps(run.metrics(), sort_keys=True), file=sys.stderr)
    return 0


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from kotune.config import CHAT_QUANTIZATIONS, FORMAT_NAMES

    parser = argparse.ArgumentParser(
        prog="kotune", description="Korean persona chatbots: data steps, scoring, chat, serving."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "ingest", help="parse input files into conversation JSONL (the ingest stage)"
    )
    p.add_argument("--format", required=True, choices=FORMAT_NAMES, help="the input's format")
    p.add_argument(
        "--me", help="kakaotalk: the speaker the bot learns to be (회원님, You, a nickname)"
    )
    p.add_argument(
        "--gap-minutes", type=int, help="kakaotalk: a longer silence starts a new conversation"
    )
    p.add_argument(
        "--media", choices=["drop", "tag"], help="kakaotalk: placeholders dropped or tagged"
    )
    p.add_argument("--instruction", help="summarization: the instruction put before each text")
    p.add_argument("--options", help='format options as JSON, e.g. \'{"me": "준호"}\'')
    p.add_argument("inputs", nargs="+", type=Path, help="input files or folders")
    p.add_argument("-o", "--output", required=True, type=Path)
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("clean", help="normalise, filter and dedupe conversations (the clean stage)")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument(
        "--params", default="params.yaml", help="clean and persona.pii settings, if the file exists"
    )
    p.add_argument("--names", help="more people to mask, comma-separated (speakers always are)")
    p.set_defaults(run=cmd_clean)

    p = sub.add_parser("mask", help="mask personal data in stdin, one output line per input line")
    p.add_argument("--names", help="comma-separated names to mask as people, e.g. 민지,준호")
    p.add_argument("--json", action="store_true", help="print the spans found (JSON) instead")
    p.set_defaults(run=cmd_mask)

    p = sub.add_parser("score", help="ROUGE/BLEU/chrF of {prediction, reference} JSONL lines")
    p.add_argument("input", type=Path)
    p.set_defaults(run=cmd_score)

    p = sub.add_parser("chat", help="chat with an exported adapter in the terminal")
    p.add_argument("--adapter", type=Path, default=Path("models/adapter"))
    p.add_argument("--quantization", choices=CHAT_QUANTIZATIONS, help="override the profile's")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--max-new-tokens", type=positive_int, help="the answer's token limit")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser(
        "serve", help="serve an exported adapter: the web chat and an OpenAI-compatible API"
    )
    p.add_argument("--adapter", type=Path, default=Path("models/adapter"))
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1: this machine only")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key",
        help="require `Authorization: Bearer KEY` (default: $KOTUNE_API_KEY, else none)",
    )
    p.add_argument("--model-name", help="the model id clients ask for (default: the persona)")
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="let pages of this site (e.g. https://app.example.com) call /v1 from the browser; "
        "repeat for more (default: none)",
    )
    p.add_argument(
        "--slots",
        type=positive_int,
        help="answers generated at once (default: 8 on the CPU, "
        "on a GPU as many as half its free memory holds, at most 32)",
    )
    p.add_argument(
        "--context",
        type=positive_int,
        help="tokens per answer, prompt included (default: the model's maximum)",
    )
    p.add_argument("--quantization", choices=["none", "nf4", "int8"], help="override the profile's")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the decode step (CUDA graphs on a GPU): faster tokens, a minute to start",
    )
    # the web chat on the same port (/, /login, /signup, /api)
    p.add_argument(
        "--db",
        help="the chat store: a SQLAlchemy URL, e.g. sqlite:///chat.db "
        "(default: sqlite under $XDG_DATA_HOME/kotune/, outside any git tree)",
    )
    p.add_argument(
        "--allow-signup",
        action="store_true",
        help="open sign-up on a non-loopback --host (on 127.0.0.1 it is open anyway)",
    )
    p.add_argument(
        "--trust-forwarded-proto",
        action="store_true",
        help="behind a TLS proxy: its X-Forwarded-Proto: https makes the cookies Secure",
    )
    p.add_argument(
        "--backend-url",
        help="serve the web chat in front of this OpenAI-compatible server (…/v1: vLLM, "
        "another kotune serve) instead of loading --adapter; its persona is read from "
        "--adapter's kotune.json when there is one",
    )
    p.add_argument("--backend-key", help="its API key (default: $KOTUNE_BACKEND_KEY)")
    p.add_argument("--backend-model", help="its model id to use (default: the first it lists)")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser(
        "merge", help="the adapter merged into its base: a model folder vLLM serves without LoRA"
    )
    p.add_argument("--adapter", type=Path, default=Path("models/adapter"))
    p.add_argument("-o", "--output", type=Path, required=True, help="a new folder")
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="default: float32 (the CPU's)"
    )
    p.set_defaults(run=cmd_merge)

    p = sub.add_parser("fit", help="estimate training memory for a model × GPU profile choice")
    p.add_argument(
        "overrides", nargs="*", help="as for dvc exp run -S: model=… gpu=… train.lora.r=…"
    )
    p.add_argument("--all", action="store_true", help="a table of every model × GPU profile")
    p.add_argument("--conf", default="conf")
    p.set_defaults(run=cmd_fit)

    # the web chat's accounts (issue 13): kotune users add|list|remove|passwd [--db URL]
    from kotune.serving.admin import add_users_parser

    add_users_parser(sub)

    from kotune.config import GenerateConfig  # light: the defaults shown come from the schema

    d = GenerateConfig()
    p = sub.add_parser(
        "selfinstruct",
        help="generate Alpaca records from seed tasks with a teacher at an OpenAI-compatible URL",
    )
    p.add_argument("--seeds", required=True, type=Path, help="seed tasks (JSON array or JSONL)")
    p.add_argument("--n", type=int, help=f"stop at N kept records (default {d.n})")
    p.add_argument(
        "--base-url", required=True, help="the teacher's /v1 URL (kotune serve, vLLM, …)"
    )
    p.add_argument("--model", required=True, help="the teacher's model name on that server")
    p.add_argument(
        "--api-key-env", help=f"variable holding the API key (default {d.teacher.api_key_env})"
    )
    p.add_argument("--cache", type=Path, help="answers cache (default: OUT with .cache)")
    p.add_argument(
        "--max-requests", type=int, help=f"... or stop after M requests (default {d.max_requests})"
    )
    p.add_argument("--concurrency", type=int, help=f"requests in flight (default {d.concurrency})")
    p.add_argument("--metrics", type=Path, help="write counts as JSON here")
    p.add_argument("--seed", type=int, help=f"example sampling, request seeds (default {d.seed})")
    p.add_argument("--examples", type=int, help=f"k tasks shown per request (default {d.examples})")
    p.add_argument("--seed-examples", type=int, help=f"of them seeds (default {d.seed_examples})")
    p.add_argument("--new-tasks", type=int, help=f"asked per request (default {d.new_tasks})")
    p.add_argument(
        "--round-size",
        type=int,
        help=f"requests planned together, the most in flight (default {d.round_size})",
    )
    sampling, teacher = d.sampling, d.teacher
    p.add_argument(
        "--temperature", type=float, help=f"default {sampling.temperature} (Self-Instruct)"
    )
    p.add_argument("--top-p", type=float, help=f"default {sampling.top_p} (Self-Instruct)")
    p.add_argument(
        "--presence-penalty",
        type=float,
        help=f"default {sampling.presence_penalty} (Alpaca)",
    )
    p.add_argument(
        "--frequency-penalty",
        type=float,
        help=f"default {sampling.frequency_penalty} (Alpaca)",
    )
    p.add_argument(
        "--max-tokens", type=int, help=f"per answer, default {sampling.max_tokens} (Alpaca)"
    )
    p.add_argument(
        "--rouge-l", type=float, help=f"drop at this similarity (default {d.filters.rouge_l})"
    )
    p.add_argument(
        "--timeout", type=float, help=f"seconds per request (default {teacher.timeout_s:g})"
    )
    p.add_argument(
        "--max-retries", type=int, help=f"on 429/5xx/time-outs (default {teacher.max_retries})"
    )
    p.add_argument(
        "--backoff", type=float, help=f"first retry wait in seconds (default {teacher.backoff_s:g})"
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="Alpaca records (JSONL)")
    p.set_defaults(run=cmd_selfinstruct)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    def run() -> int:
        try:
            return args.run(args)
        except json.JSONDecodeError as error:
            raise KotuneError(f"--options is not valid JSON: {error.msg}") from None

    run_cli(run)


if __name__ == "__main__":
    main()
