"""`kotune serve`: one process, one port, for the OpenAI-compatible /v1 API on the engine and
the web chat (pages, /api, accounts, the store) on the same engine; or, with --backend-url, the
web chat alone in front of another OpenAI-compatible server (vLLM, another `kotune serve`), no
model loaded here. torch is imported only when a model is loaded."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from kotune.errors import KotuneError


def check_port(host: str, port: int) -> None:
    """A port in use is one line now, before minutes of loading."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise KotuneError(f"--host {host} --port {port}: {error.strerror}") from None


def load_engine(args: argparse.Namespace) -> tuple[Any, str]:
    """The adapter loaded into an engine, as an EngineBackend; and the start-up line's words."""
    from kotune.inference.adapter import load_exported
    from kotune.inference.engine import Engine
    from kotune.inference.slots import fitting_slots
    from kotune.serving.engine_backend import EngineBackend

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
    about = (
        f"'{model_id}' ({loaded.settings.base.name}, {loaded.quantization}, {loaded.device}, "
        f"{slots} answers at once, context {engine.context})"
    )
    return EngineBackend(engine, model_id, created), about


def front_backend(args: argparse.Namespace) -> Any:
    """The web chat's backend for --backend-url; the persona from --adapter's kotune.json when
    that folder has one (its weights are not read), else the served model's id as the name."""
    from kotune.inference.adapter import SETTINGS, read_settings
    from kotune.serving.backend import BackendError, OpenAIBackend, Persona

    persona = None
    if (Path(args.adapter) / SETTINGS).is_file():
        persona = Persona.of_adapter(read_settings(args.adapter))
    key = args.backend_key or os.environ.get("KOTUNE_BACKEND_KEY") or None
    try:
        backend = asyncio.run(
            OpenAIBackend.connect(
                args.backend_url, key, persona or Persona("kotune"), args.backend_model
            )
        )
    except BackendError as error:
        raise KotuneError(str(error)) from None
    if persona is None:
        backend.persona = Persona(backend.model_id)
    return backend


def check_origins(origins: list[str]) -> None:
    """--cors-origin as browsers write an Origin header: scheme://host[:port], no path."""
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise KotuneError(
                f"--cors-origin {origin!r}: not an origin (scheme://host[:port], no path, "
                "e.g. https://app.example.com)"
            )


def check_db_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise KotuneError(f"--db {url!r}: not a database URL (e.g. sqlite:///chat.db)") from None


def serve(args: argparse.Namespace) -> int:
    from kotune.serving.accounts import signup_open_by_default
    from kotune.serving.store import default_db_url, display_url, open_store

    api_key = args.api_key or os.environ.get("KOTUNE_API_KEY") or None
    if not args.backend_url:
        from kotune.inference.adapter import read_settings

        read_settings(args.adapter)  # a wrong folder fails before the port check and the imports
    if args.cors_origin and args.backend_url:
        raise KotuneError("--cors-origin: with --backend-url this server has no /v1 API")
    cors = args.cors_origin or []
    check_origins(cors)
    check_port(args.host, args.port)
    db_url = args.db or default_db_url()
    check_db_url(db_url)  # a URL that is none fails before the model loads

    import uvicorn

    from kotune.serving.app import create_app
    from kotune.serving.backend import Persona
    from kotune.serving.web import WebSettings
    from kotune.serving.webapp import install_web

    if args.backend_url:
        engine, chat = None, front_backend(args)
        app = create_app(None, model_id=chat.model_id)
        about = f"the web chat for '{chat.model_id}' at {args.backend_url} (no model loaded here)"
    else:
        from kotune.serving.engine_backend import EngineChat

        engine, about = load_engine(args)
        chat = EngineChat(engine, Persona.of_adapter(engine.settings))
        app = create_app(engine, api_key=api_key, cors_origins=cors)
    store = open_store(db_url)  # once the model is up: a folder that fails leaves no database
    settings = WebSettings(
        allow_signup=args.allow_signup or signup_open_by_default(args.host),
        trust_forwarded_proto=args.trust_forwarded_proto,
    )
    app.state.web = install_web(app, chat, store, settings)
    app.state.closers += [store.close, chat.aclose]
    threading.Thread(target=app.state.web.warm_up, daemon=True).start()
    # kotune's own lines (one a request); libraries only when they warn (the model server
    # client's per-request lines would repeat ours)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kotune").setLevel(logging.INFO)
    url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    notes = [*(["API key required"] if api_key else []), *(f"CORS for {o}" for o in cors)]
    api = f"; API {url}/v1" + (f" ({', '.join(notes)})" if notes else "") if engine else ""
    signup = "open" if settings.allow_signup else "closed (--allow-signup opens it)"
    print(
        f"kotune serve: {about}\n"
        f"kotune serve: web chat {url}/ (sign-up {signup}){api}\n"
        f"kotune: database {display_url(db_url)}",
        file=sys.stderr,
        flush=True,
    )
    # proxy_headers off: uvicorn would otherwise trust X-Forwarded-* from 127.0.0.1; the web
    # chat reads X-Forwarded-Proto itself, and only with --trust-forwarded-proto
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
    return 0
