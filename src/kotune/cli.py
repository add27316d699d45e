"""The `kotune` command: the pipeline's steps on single files, scoring, chat and serving."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kotune.errors import KotuneError, run_cli


def cmd_ingest(args: argparse.Namespace) -> int:
    from kotune.files import write_jsonl
    from kotune.ingest import ingest

    options = json.loads(args.options) if args.options else {}
    flags = {
        "me": args.me,
        "gap_minutes": args.gap_minutes,
        "media": args.media,
        "instruction": args.instruction,
    }
    options.update({key: value for key, value in flags.items() if value is not None})
    records, stats = ingest(args.format, args.inputs, options)
    write_jsonl(args.output, records)
    print(json.dumps(stats, sort_keys=True), file=sys.stderr)
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from kotune.cleaning import clean_dataset
    from kotune.config import CleanConfig, PiiConfig, load_config
    from kotune.files import read_jsonl, read_names, write_jsonl
    from kotune.records import check_record

    if Path(args.params).is_file():
        cfg = load_config(args.params)
        clean, pii = cfg.clean, cfg.persona.pii
    else:
        clean, pii = CleanConfig(), PiiConfig()
    names = read_names(pii.names_file) if pii.names_file else []
    names += [n.strip() for n in (args.names or "").split(",") if n.strip()]
    records = []
    for lineno, record in read_jsonl(args.input):
        check_record(record, f"{args.input}:{lineno}")
        records.append(record)
    kiwi = None
    if pii.kiwi_names:
        from kiwipiepy import Kiwi

        kiwi = Kiwi()
    kept, stats, _ = clean_dataset(records, clean, pii, names, kiwi)
    write_jsonl(args.output, kept)
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
    from kotune.pii import KINDS, Pseudonyms, find_pii, mask_text, name_forms

    forms = name_forms(n for n in (args.names or "").split(",") if n.strip())
    pseudonyms = Pseudonyms()  # one per run: the same person is the same <PERSONn> on every line
    for line in sys.stdin:
        text = line.rstrip("\n")
        if args.json:
            spans = [
                {"start": s.start, "end": s.end, "kind": s.kind, "confidence": s.confidence}
                for s in find_pii(text, forms)
            ]
            print(json.dumps(spans), flush=True)
        else:
            print(mask_text(text, forms, pseudonyms, frozenset(KINDS))[0], flush=True)
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
    import logging
    import os
    import socket

    from kotune.inference.adapter import load_exported, read_settings

    api_key = args.api_key or os.environ.get("KOTUNE_API_KEY") or None
    read_settings(args.adapter)  # a wrong folder fails before the port check and the imports
    with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((args.host, args.port))
        except OSError as error:
            raise KotuneError(f"--host {args.host} --port {args.port}: {error.strerror}") from None

    import uvicorn

    from kotune.inference.engine import Engine
    from kotune.inference.slots import fitting_slots
    from kotune.serving.app import create_app
    from kotune.serving.backend import EngineBackend

    loaded = load_exported(args.adapter, args.quantization, args.device)
    context = loaded.model.config.max_position_embeddings
    if args.context:
        context = min(context, args.context)
    slots = args.slots or fitting_slots(
        loaded.model, context, cap=8 if loaded.device == "cpu" else 32
    )
    engine = Engine(
        loaded.model,
        loaded.tokenizer,
        loaded.settings,
        slots=slots,
        context=context,
        compile=args.compile,
        buckets=[1, 2, 4, 8, 16, 32] if args.compile else None,
    )
    model_id = args.model_name or loaded.settings.persona
    created = int(Path(args.adapter, "kotune.json").stat().st_mtime)
    app = create_app(EngineBackend(engine, model_id, created), api_key=api_key)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(
        f"kotune serve: '{model_id}' ({loaded.settings.base.name}, {loaded.quantization}, "
        f"{loaded.device}, {slots} answers at once, context {engine.context}) on "
        f"http://{args.host}:{args.port}/v1" + (" (API key required)" if api_key else ""),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from kotune.files import atomic_path
    from kotune.inference.adapter import read_settings
    from kotune.inference.vllm import merge_adapter

    read_settings(args.adapter)  # a wrong folder fails before the heavy imports
    if args.output.exists():
        raise KotuneError(f"-o {args.output}: already exists (kotune merge writes a new folder)")
    with atomic_path(args.output) as tmp:  # no half-written folder if it fails
        settings = merge_adapter(args.adapter, tmp, args.dtype)
    print(
        f"merged {args.adapter} into {settings.base.name} → {args.output}; serve it with: "
        f"vllm serve {args.output} --served-model-name {settings.persona}",
        file=sys.stderr,
    )
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from kotune.config import compose, parse_config
    from kotune.modeling.memory import estimate_for, suggestions

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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kotune", description="Korean persona chatbots: data steps, scoring, chat, serving."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "ingest", help="parse input files into conversation JSONL (the ingest stage)"
    )
    p.add_argument(
        "--format", required=True, help="mencius, summarization, alpaca, chat or kakaotalk"
    )
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
    p.add_argument("--quantization", choices=["none", "nf4", "int8"], help="override the profile's")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--max-new-tokens", type=positive_int, help="the answer's token limit")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("serve", help="serve an exported adapter: OpenAI-compatible HTTP API")
    p.add_argument("--adapter", type=Path, default=Path("models/adapter"))
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1: this machine only")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key",
        help="require `Authorization: Bearer KEY` (default: $KOTUNE_API_KEY, else none)",
    )
    p.add_argument("--model-name", help="the model id clients ask for (default: the persona)")
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
