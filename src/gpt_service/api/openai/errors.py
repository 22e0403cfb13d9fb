"""OpenAI's error object for everything under ``/v1`` (``{"error": {"message", "type",
"param", "code"}}``): the official SDKs pick their exception class from the status and read
``message`` from it. Installed for the ``/v1`` prefix by ``api/routers.py``."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
# Our validation messages start with the offending field ("temperature: ..."), which is
# what OpenAI reports as ``param``.
_PARAM = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "invalid_request_error (validation errors included)",
        401: "authentication_error: missing or invalid API key",
        404: "not_found_error (code model_not_found for an unknown model)",
        413: "invalid_request_error: request body too large",
        500: "server_error",
        503: "server_error: overloaded or unavailable (see Retry-After)",
    }.items()
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error object; the SDKs pick the exception class from the status code."""
    error_type = _ERROR_TYPES.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    match = _PARAM.match(message)
    code = None
    if status == 404 and "model" in message.lower():
        code = "model_not_found"
    elif status == 503:
        code = "service_unavailable"
    return {
        "error": {
            "message": message,
            "type": error_type,
            "param": match.group(1) if match else None,
            "code": code,
        }
    }
