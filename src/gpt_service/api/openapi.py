"""OpenAPI as the service really behaves: API-key schemes (Swagger's Authorize button) and
``{"detail": "..."}`` error responses with API.md's status codes instead of FastAPI's 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <key>",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
ERROR_STATUSES = {
    "400": "Bad request (validation errors included)",
    "401": "Missing or invalid API key",
    "404": "Resource not found",
    "409": "Conflict with the current state",
    "413": "Request body too large",
    "500": "Internal error",
    "502": "Upstream error",
    "503": "Overloaded or unavailable (see Retry-After)",
}
# API families that answer errors in their own shape document them themselves.
OWN_ERROR_SHAPES = ("/v1", "/api/")


def _document_errors(schema: dict[str, Any]) -> None:
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorDetail"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/ErrorDetail"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # validation errors are 400 here, as API.md says
            if path.startswith(OWN_ERROR_SHAPES):
                continue
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )


def install_openapi(app: FastAPI, is_key_required: bool) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = SCHEMES
        if is_key_required:
            schema["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
        _document_errors(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
