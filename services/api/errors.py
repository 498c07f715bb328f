"""Errors as the contract's body ``{"error": {"code", "message"}}``; bad input never a 5xx."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client caused (or may retry); rendered with its status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


# Declared on every /v1 operation, so clients (and the schema fuzzing) know the 4xx shape.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (400, "Bad request (not JSON, a bad cursor)"),
        (401, "No token, or an unknown, expired or revoked one"),
        (403, "The token's role may not do this"),
        (404, "Not found (or not this token's to see)"),
        (409, "Conflict"),
        (413, "Body or batch too large"),
        (422, "Invalid request"),
        (429, "Rate limited; see Retry-After"),
    )
}


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(error.code, error.message),
            status_code=error.status,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("invalid_request", _validation_message(error)), status_code=422
        )

    @app.exception_handler(asyncpg.DataError)
    async def _data(_: Request, error: asyncpg.DataError) -> JSONResponse:
        # Input the validators let through but PostgreSQL cannot store: still the client's.
        return JSONResponse(
            error_body("invalid_request", f"a value cannot be stored: {error}"), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            error.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(error.detail)),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )
