"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the HTTP
status the official client maps to its exception classes, and the API key check."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("kotune.serve")

# the `type` OpenAI gives each status; any other status of 500 and over is a server_error
TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or TYPES.get(status, "server_error")
        self.headers = dict(headers or {})
        if status == 401:
            self.headers["WWW-Authenticate"] = "Bearer"

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers or None)


def param_name(loc: tuple[Any, ...]) -> str | None:
    """A pydantic error location as OpenAI names parameters: messages.[0].content."""
    parts = [p for p in loc if p != "body"]
    if not parts:
        return None
    name = str(parts[0])
    for part in parts[1:]:
        if isinstance(part, int):
            name += f".[{part}]"
        elif part in ("str", "list[TextPart]", "list[str]", "function-after", "constrained-int"):
            continue  # pydantic's name of a union member, not a field
        else:
            name += f".{part}"
    return name


def validation_error(error: RequestValidationError) -> ApiError:
    """The first problem of a request body, in OpenAI's words where it has them."""
    problems = list(error.errors()) or [{"type": "", "loc": (), "msg": "invalid request"}]
    # a value that fits no member of a union (content: text or parts) gives one error per
    # member: the most specific one (not "wrong type", the deepest) says what is wrong
    first = min(
        problems,
        key=lambda p: (str(p.get("type", "")).endswith("_type"), -len(tuple(p.get("loc", ())))),
    )
    kind, loc = first.get("type", ""), tuple(first.get("loc", ()))
    if kind == "json_invalid":
        return ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
        )
    param = param_name(loc)
    if kind == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param=param)
    if kind == "missing" and param is None:
        return ApiError(
            400,
            "The request body is empty: send a JSON object with 'model' and 'messages', "
            "with Content-Type: application/json.",
        )
    if kind == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param)
    if param is None:
        return ApiError(
            400,
            "The request body must be a JSON object, sent with Content-Type: application/json.",
        )
    return ApiError(400, f"Invalid value for '{param}': {first.get('msg')}.", param=param)


def key_error(request: Request) -> ApiError | None:
    """The 401 for a request without `Authorization: Bearer KEY` when a key is set, or None.
    The key given is never repeated, in the answer or the log."""
    key = request.app.state.api_key
    if not key:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    if not secrets.compare_digest(given.strip().encode(), key.encode()):
        return ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
    return None


async def check_api_key(request: Request) -> None:
    """401 unless the request carries `Authorization: Bearer KEY` (when a key is set)."""
    error = key_error(request)
    if error is not None:
        raise error


def is_api(request: Request) -> bool:
    """A request to the OpenAI-compatible API (or a URL that is nobody's)."""
    path = request.url.path
    return path.startswith("/v1/") or path == "/v1"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        request.state.error_code = error.code or error.type
        return error.response()

    # /v1 answers in OpenAI's shape; the web chat's pages and /api keep FastAPI's `{"detail"}`
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Any:
        if not is_api(request):
            return await request_validation_exception_handler(request, error)
        # FastAPI reads the body before the key check runs: without the key, 401 comes first
        api = key_error(request) if request.url.path.startswith("/v1/") else None
        api = api or validation_error(error)
        request.state.error_code = api.code or api.type
        return api.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Any:
        if not is_api(request):
            request.state.error_code = f"http_{error.status_code}"
            return await http_exception_handler(request, error)
        allowed = (error.headers or {}).get("Allow") or (error.headers or {}).get("allow")
        message = {
            404: f"Unknown request URL: {request.method} {request.url.path}.",
            405: f"Method {request.method} is not allowed on {request.url.path}"
            + (f" (allowed: {allowed})." if allowed else "."),
        }.get(error.status_code, str(error.detail))
        api = ApiError(error.status_code, message, headers=error.headers)
        request.state.error_code = api.code or api.type
        return api.response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error(
            "internal error on %s %s: %s", request.method, request.url.path, type(error).__name__
        )
        return ApiError(500, f"internal server error ({type(error).__name__})").response()
