"""The web console: static files (HTML, CSS, ES modules) from the package, mounted at ``/ui``.

No build step: what is in ``gpt_service/ui`` is what the browser runs. The shell itself needs
no API key (the page asks for one and sends it with each API call).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
UI_PATH = "/ui"

# Everything comes from this server: no CDN, no inline script. Inline *style attributes*
# stay blocked too; the scripts set styles through the CSSOM, which CSP allows.
SECURITY_HEADERS = {
    b"content-security-policy": (
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    # Revalidate every time (ETag -> 304): an upgraded server never runs stale modules.
    b"cache-control": b"no-cache",
}


class ConsoleFiles(StaticFiles):
    """``StaticFiles`` with the console's security and caching headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"cache-control"]
                message["headers"] = headers + list(SECURITY_HEADERS.items())
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def mount_ui(app: FastAPI) -> None:
    """Serve the console at ``/ui/`` (``/ui`` redirects there)."""
    if not (UI_DIR / "index.html").is_file():
        # The API matters more than the console: serve without it, but say so loudly.
        logger.error("the web console is missing from the package (%s); /ui is off", UI_DIR)
        return
    app.mount(UI_PATH, ConsoleFiles(directory=UI_DIR, html=True), name="ui")
