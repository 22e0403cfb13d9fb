"""Parsing Server-Sent Events bodies in tests."""

from __future__ import annotations

import json


def parse_sse(body: str) -> list[tuple[str, dict]]:
    """``[(event name, data as JSON)]`` of a whole SSE body."""
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
        if data is not None:
            events.append((name, data))
    return events
