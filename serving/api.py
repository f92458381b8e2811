"""Request parsing and error answers of the HTTP ingress, as plain functions (unit-tested without Ray).

    body = await read_limited(request.stream(), request.headers.get("content-length"), limit)  # 413 past it
    req = parse_request(body)                        # RecommendationRequest, or RequestError naming the field
    return error_response(err)                       # JSONResponse with ErrorBody and the right status
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from pydantic import ValidationError as PydanticValidationError

from oneloc.serving.schemas import ErrorBody, RecommendationRequest


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx), the ``field`` at fault and the ``reason``."""

    def __init__(self, status: int, field: str, reason: str, error: str = "invalid request"):
        super().__init__(f"{status} {field}: {reason}")
        self.status, self.field, self.reason, self.error = status, field, reason, error

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.error, field=self.field, reason=self.reason, status=self.status)


async def read_limited(chunks: AsyncIterator[bytes], content_length: str | None, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``limit`` bytes (from the header, or
    while reading a body sent without one)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise RequestError(413, "body", f"{content_length} bytes, the limit is {limit}", "payload too large")
    out, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body", f"more than {limit} bytes", "payload too large")
        out.append(chunk)
    return b"".join(out)


def parse_request(body: bytes) -> RecommendationRequest:
    """JSON bytes -> a valid request. Raises RequestError: 400 (not a JSON object), 422 (naming the first
    invalid field: missing, wrong type, out of range, unknown)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(400, "body", f"not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "body", "must be a JSON object")
    try:
        return RecommendationRequest.model_validate(data)
    except PydanticValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "body"
        raise RequestError(422, field, first["msg"]) from None


def error_response(err: RequestError):
    from fastapi.responses import JSONResponse

    return JSONResponse(err.body().model_dump(), status_code=err.status)
