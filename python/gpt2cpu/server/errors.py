"""OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, for every
failure the server answers, and the handlers that turn FastAPI's and Starlette's own
errors (validation, unknown route, wrong method) into it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    501: "not_implemented_error",
    503: "service_unavailable_error",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status)


_SCALARS = {"str", "int", "float", "bool"}


def _location(loc: tuple[Any, ...], members: bool = True) -> str | None:
    # FastAPI prefixes "body"; pydantic appends the union member it tried ("str", "list[int]"),
    # which the message keeps (it says which form failed how) and `param` drops.
    parts = [str(p) for p in loc if p != "body" and (members or not _is_member(p))]
    return ".".join(parts) or None


def _is_member(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or part in _SCALARS)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return error_response(400, f"the body is not valid JSON: {first.get('msg')}",
                                  code="invalid_json")
        param = _location(tuple(first.get("loc", ())), members=False)
        message = "; ".join(
            f"{_location(tuple(e.get('loc', ()))) or 'body'}: {e.get('msg')}" for e in errors[:4]
        )
        return error_response(400, message, param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.status_code != 404 else (
            f"no such endpoint: {request.method} {request.url.path}"
        )
        return error_response(exc.status_code, message)
