"""OpenAPI as the service really behaves: API-key schemes (Swagger's Authorize button) and
``{"detail": "..."}`` error responses with API.md's status codes instead of FastAPI's 422.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts from this server, not a CDN: the
files come from the ``fastapi-offline`` package (swagger-ui-dist and redoc's standalone
bundle), so the pages render on a machine with no internet access.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from gpt_service.api.errors import ErrorShapes

DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_ASSETS_PATH = "/docs/assets"  # under /docs: open whenever the docs are
FAVICON = "/ui/favicon.svg"

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


def _document_errors(schema: dict[str, Any], shapes: ErrorShapes) -> None:
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorDetail"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/ErrorDetail"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # validation errors are 400 here, as API.md says
            if shapes.shaper(path) is not None:
                continue  # an API dialect with its own error shape documents it itself
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )


def install_openapi(app: FastAPI, is_key_required: bool, shapes: ErrorShapes) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = SCHEMES
        if is_key_required:
            schema["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
        _document_errors(schema, shapes)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


REDOC_LOGO_URL = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _offline_redoc() -> bytes:
    """ReDoc's bundle with its one external fetch (the sidebar's Redocly logo) made local."""
    script = (DOCS_ASSETS_DIR / "redoc.standalone.js").read_bytes()
    return script.replace(REDOC_LOGO_URL, FAVICON.encode())


def install_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` with every asset served from here (create the app with
    ``docs_url=None, redoc_url=None``)."""
    redoc_js = f"{DOCS_ASSETS_PATH}/redoc-offline.js"

    @app.get(redoc_js, include_in_schema=False)
    async def redoc_script() -> Response:
        return Response(_offline_redoc(), media_type="text/javascript")

    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=FAVICON,
            # No badge from the public validator service (it would call out).
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=redoc_js,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
