"""Request-body bases that treat unknown fields the way each API family needs.

The native API (API.md's endpoints) refuses an unknown top-level field with a message naming
it and the closest known field (``"max_token"`` -> did you mean ``max_tokens``?), since a
silently ignored typo changes what the request does. The OpenAI (``/v1``) and Ollama
(``/api``) bodies keep ignoring unknown fields, as their clients send extras, but log each
one once so a typo there can still be found. Pydantic only: usable from every layer.
"""

from __future__ import annotations

import difflib
import logging
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

logger = logging.getLogger(__name__)

# Field names come from clients: the most recent ones are remembered (least recently seen
# forgotten first), so a client sending ever new names cannot grow this without end.
MAX_LOGGED_FIELDS = 256
_logged: OrderedDict[tuple[str, str], None] = OrderedDict()


def known_fields(model: type[BaseModel]) -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        names.append(name)
        if isinstance(info.alias, str):
            names.append(info.alias)
    return names


def unknown_field_message(field: str, known: list[str]) -> str:
    close = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
    if close:
        return f"unknown field '{field}' (did you mean '{close[0]}'?)"
    return f"unknown field '{field}' (known fields: {', '.join(sorted(known))})"


class StrictBody(BaseModel):
    """A native API body: an unknown top-level field is a 400 naming it."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = known_fields(cls)
            unknown = [key for key in data if key not in known]
            if unknown:
                message = "; ".join(unknown_field_message(str(key), known) for key in unknown)
                raise PydanticCustomError("unknown_field", message)
        return data


class LogsUnknownFields(BaseModel):
    """A ``/v1`` or ``/api`` body: unknown fields are ignored, and each is logged once."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _log_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = known_fields(cls)
            for key in data:
                entry = (cls.__name__, str(key)[:100])
                if key in known:
                    continue
                if entry in _logged:
                    _logged.move_to_end(entry)
                    continue
                _logged[entry] = None
                if len(_logged) > MAX_LOGGED_FIELDS:
                    _logged.popitem(last=False)
                logger.warning("%s: ignoring unknown field '%s' (logged once)", *entry)
        return data
