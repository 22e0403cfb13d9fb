"""Readable text for an httpx failure: a timeout's own message is often empty, so say which
phase of the call timed out and after how long."""

from __future__ import annotations

import httpx

_PHASES: dict[type[httpx.TimeoutException], tuple[str, str]] = {
    httpx.ConnectTimeout: ("connecting", "connect"),
    httpx.ReadTimeout: ("waiting for the answer", "read"),
    httpx.WriteTimeout: ("sending the request", "write"),
    httpx.PoolTimeout: ("waiting for a free connection", "pool"),
}


def describe(exc: BaseException) -> str:
    """``str(exc)``, or for a timeout 'timed out connecting (5 s, ConnectTimeout)'."""
    text = str(exc)
    if not isinstance(exc, httpx.TimeoutException):
        return text or type(exc).__name__
    phase, key = _PHASES.get(type(exc), ("waiting", ""))
    try:
        seconds = exc.request.extensions.get("timeout", {}).get(key)
    except RuntimeError:  # an exception raised without its request
        seconds = None
    limit = f"{seconds:g} s, " if isinstance(seconds, int | float) else ""
    detail = f": {text}" if text else ""
    return f"timed out {phase} ({limit}{type(exc).__name__}){detail}"
