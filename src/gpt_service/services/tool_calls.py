"""Tool calls in model output: the formats models are trained on, parsed whole or as a stream.

``auto`` lets the model write freely in its own format, picked from its chat template (as
vLLM's and Ollama's parsers do): Hermes/Qwen ``<tool_call>{...}</tool_call>``, Llama 3 JSON
``{"name": ..., "parameters": {...}}`` and Mistral ``[TOOL_CALLS][{...}]`` (before v11) or
``[TOOL_CALLS]name[ARGS]{...}`` (v11+). ``required`` and
a named function are generated under a grammar (see ``services/structured.py``), so their
output is plain JSON: the arguments object, or an array of ``{"name", "arguments"}``.

A parser turns text increments into events: content, the start of a call (id, name), and
argument text; the events of a whole text equal those of the same text split anywhere.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

ToolFormat = Literal["hermes", "llama3_json", "mistral"]
HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
MISTRAL_TAG, MISTRAL_ARGS = "[TOOL_CALLS]", "[ARGS]"
PYTHON_TAG = "<|python_tag|>"


def detect_format(chat_template: str | None) -> ToolFormat:
    """The tool-call format a chat template teaches (Hermes when it shows none)."""
    template = chat_template or ""
    if MISTRAL_TAG in template:
        return "mistral"
    if HERMES_OPEN in template:
        return "hermes"
    if PYTHON_TAG in template or ("ipython" in template and '"parameters"' in template):
        return "llama3_json"
    return "hermes"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class Content:
    text: str


@dataclass
class CallStart:
    index: int
    id: str
    name: str


@dataclass
class CallArgs:
    index: int
    text: str


Event = Content | CallStart | CallArgs


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass
class Parsed:
    content: str = ""
    calls: list[ToolCall] = field(default_factory=list)


def fold(events: list[Event]) -> Parsed:
    parsed = Parsed()
    for event in events:
        if isinstance(event, Content):
            parsed.content += event.text
        elif isinstance(event, CallStart):
            parsed.calls.append(ToolCall(event.id, event.name, ""))
        else:
            parsed.calls[event.index].arguments += event.text
    return parsed


def _call(obj: Any, names: set[str] | None) -> tuple[str, str] | None:
    """``(name, arguments JSON)`` of one call object, or None if it is not one."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models double-encode
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict) or (names is not None and obj["name"] not in names):
        return None
    return obj["name"], json.dumps(args, ensure_ascii=False)


def _calls_in(text: str, names: set[str] | None) -> list[tuple[str, str]] | None:
    """All calls of a JSON object, array of objects, or ``;``-separated objects."""
    decoder = json.JSONDecoder()
    items: list[Any] = []
    rest = text.strip()
    while rest:
        try:
            obj, end = decoder.raw_decode(rest)
        except ValueError:
            return None
        items += obj if isinstance(obj, list) else [obj]
        rest = rest[end:].lstrip().removeprefix(";").lstrip()
    calls = [_call(item, names) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return calls  # type: ignore[return-value]


class ToolParser:
    """Incremental parser of one choice's output."""

    def __init__(self) -> None:
        self.num_calls = 0

    def feed(self, text: str) -> list[Event]:
        raise NotImplementedError

    def finish(self) -> list[Event]:
        return []

    def _emit_calls(self, calls: list[tuple[str, str]]) -> list[Event]:
        events: list[Event] = []
        for name, arguments in calls:
            index = self.num_calls
            self.num_calls += 1
            events += [CallStart(index, new_call_id(), name), CallArgs(index, arguments)]
        return events


def _held_prefix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that could begin ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class HermesParser(ToolParser):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, any number, with content
    around them streamed as it comes (only a possible start of the tag is held back)."""

    def __init__(self, names: set[str] | None = None) -> None:
        super().__init__()
        self.names = names
        self.buffer = ""
        self.inside = False

    def feed(self, text: str) -> list[Event]:
        self.buffer += text
        events: list[Event] = []
        while True:
            marker = HERMES_CLOSE if self.inside else HERMES_OPEN
            at = self.buffer.find(marker)
            if at < 0:
                break
            head, self.buffer = self.buffer[:at], self.buffer[at + len(marker) :]
            events += self._call(head) if self.inside else _content(head)
            self.inside = not self.inside
        if not self.inside:
            keep = _held_prefix(self.buffer, HERMES_OPEN)
            events += _content(self.buffer[: len(self.buffer) - keep])
            self.buffer = self.buffer[len(self.buffer) - keep :]
        return events

    def _call(self, body: str) -> list[Event]:
        calls = _calls_in(body, self.names)
        if calls is None:  # not a valid call: leave it as the model wrote it
            return [Content(f"{HERMES_OPEN}{body}{HERMES_CLOSE}")]
        return self._emit_calls(calls)

    def finish(self) -> list[Event]:
        rest, self.buffer = self.buffer, ""
        if self.inside:  # an unclosed call (e.g. cut by max_tokens)
            calls = _calls_in(rest, self.names)
            return self._emit_calls(calls) if calls else [Content(HERMES_OPEN + rest)]
        return _content(rest)


class WholeOutputParser(ToolParser):
    """Formats where the output is either content or only calls (Llama 3 JSON, ``required``):
    decided by its first characters, parsed once complete."""

    def __init__(self, prefixes: tuple[str, ...], names: set[str] | None = None) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.names = names
        self.buffer = ""
        self.mode: Literal["undecided", "content", "calls"] = "undecided"

    def feed(self, text: str) -> list[Event]:
        if self.mode == "content":
            return _content(text)
        self.buffer += text
        if self.mode == "undecided":
            head = self.buffer.lstrip()
            if any(head.startswith(p) for p in self.prefixes):
                self.mode = "calls"
            elif head and not any(p.startswith(head) for p in self.prefixes):
                self.mode = "content"
                rest, self.buffer = self.buffer, ""
                return _content(rest)
        return []

    def finish(self) -> list[Event]:
        rest, self.buffer = self.buffer, ""
        body = rest.lstrip().removeprefix(PYTHON_TAG)
        calls = _calls_in(body, self.names) if self.mode == "calls" else None
        return self._emit_calls(calls) if calls else _content(rest)


class MistralParser(ToolParser):
    """Content, then calls after ``[TOOL_CALLS]``, read as vLLM's ``mistral`` parser reads
    them: a JSON array of ``{"name", "arguments"}`` (tokenizers before v11) or, per call,
    ``name[ARGS]{...}`` / ``name{...}`` (v11+). The tag is a special token, which the engine's
    detokenizer drops: an output that *starts* like a call (``[{``, or a tool's name then
    ``{`` or ``[ARGS]``) is calls too. Content streams; the calls are parsed once complete."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names
        self.buffer = ""
        self.mode: Literal["start", "content", "calls"] = "start"

    def feed(self, text: str) -> list[Event]:
        self.buffer += text
        if self.mode == "start":
            head = self.buffer.lstrip()
            if _starts_call(head, self.names):
                self.mode = "calls"
            elif head and not _may_start_call(head, self.names):
                self.mode = "content"
        if self.mode != "content":
            return []
        at = self.buffer.find(MISTRAL_TAG)
        if at >= 0:
            self.mode = "calls"
            head, self.buffer = self.buffer[:at], self.buffer[at:]
            return _content(head)
        keep = len(self.buffer) - _held_prefix(self.buffer, MISTRAL_TAG)
        head, self.buffer = self.buffer[:keep], self.buffer[keep:]
        return _content(head)

    def finish(self) -> list[Event]:
        rest, self.buffer = self.buffer, ""
        parsed = _mistral_calls(rest, self.names) if self.mode == "calls" else None
        if parsed is None:  # not valid calls: leave the text as the model wrote it
            return _content(rest)
        calls, tail = parsed
        return self._emit_calls(calls) + _content(tail if tail.strip() else "")


def _call_openings(names: set[str]) -> list[str]:
    return [MISTRAL_TAG, "[{", *(n + "{" for n in names), *(n + MISTRAL_ARGS for n in names)]


def _starts_call(head: str, names: set[str]) -> bool:
    return any(head.startswith(o) for o in _call_openings(names))


def _may_start_call(head: str, names: set[str]) -> bool:
    return any(o.startswith(head) for o in _call_openings(names))


def _mistral_calls(text: str, names: set[str]) -> tuple[list[tuple[str, str]], str] | None:
    """The calls at the start of ``text`` (tags optional) and the text after them."""
    decoder = json.JSONDecoder()
    calls: list[tuple[str, str]] = []
    rest = text.lstrip()
    while _starts_call(rest, names):
        rest = rest.removeprefix(MISTRAL_TAG).lstrip()
        brace = 0 if rest.startswith("[") else rest.find("{")
        if brace < 0:  # a name cut short (max_tokens)
            return None
        try:
            value, end = decoder.raw_decode(rest, brace)
        except ValueError:
            return None
        if rest.startswith("["):  # before v11: one array of {"name", "arguments"}
            found = [_call(item, names) for item in value] if isinstance(value, list) else []
        else:  # v11+: name[ARGS]{arguments}
            name = rest[:brace].replace(MISTRAL_ARGS, "").strip()
            found = [_call({"name": name, "arguments": value}, names)]
        if not found or any(c is None for c in found):
            return None
        calls += found  # type: ignore[arg-type]
        rest = rest[end:].lstrip()
    return (calls, rest) if calls else None


class NamedParser(ToolParser):
    """A forced function: the whole output is its arguments, streamed as they come."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def feed(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.num_calls == 0:
            self.num_calls = 1
            events.append(CallStart(0, new_call_id(), self.name))
        return [*events, CallArgs(0, text)] if text else events

    def finish(self) -> list[Event]:
        return self.feed("")


def _content(text: str) -> list[Event]:
    return [Content(text)] if text else []


def make_parser(mode: str, fmt: ToolFormat, names: set[str], forced: str | None) -> ToolParser:
    """The parser for a tool_choice ``mode`` (auto / required / named)."""
    if mode == "named" and forced is not None:
        return NamedParser(forced)
    if mode == "required":
        return WholeOutputParser(("[",), names)
    if fmt == "hermes":
        return HermesParser(names)
    if fmt == "mistral":
        return MistralParser(names)
    return WholeOutputParser((PYTHON_TAG, "{"), names)


def parse_text(parser: ToolParser, text: str) -> Parsed:
    return fold(parser.feed(text) + parser.finish())
