"""Constrained decoding with llguidance: compiled grammars (cached) and per-row matchers.

A constrained row carries a ``GrammarState``; each step the sampler masks its logits to the
tokens the grammar allows (``apply_grammars``), and the engine advances the state with the
chosen token. Free rows in the same batch are untouched, so both share one forward pass.

Budget: a random or weak model can wander inside a string until ``max_tokens`` runs out,
leaving broken JSON. Each compiled grammar measures how many tokens a greedy "close
everything" walk needs from the start; when a row's remaining budget gets that low (plus the
nesting it has opened), the row switches to closing mode: among the allowed tokens, those
made of closing characters (``}`` ``]`` ``"``) win, so the output ends valid.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import llguidance
import llguidance.hf
import torch

from gpt_service.engine.types import Constraint
from gpt_service.errors import InvalidRequest

logger = logging.getLogger(__name__)

CACHE_SIZE = 128  # compiled grammars kept per model (LRU)
MAX_CLOSING_WALK = 1024  # tokens the closing estimate may take before giving up
CLOSING_MARGIN = 6  # spare tokens on top of the estimate (e.g. a key's colon and value)
# Compact JSON: no free whitespace (a weak model could emit it forever), OpenAI's separators.
JSON_OPTIONS = {"whitespace_flexible": False}


def _closing_score(data: bytes, in_string: bool) -> float:
    """How well a token closes JSON. Inside a string a leading quote closes, and bytes that
    only continue a UTF-8 character finish one a weak model left half-written; outside,
    ``}``/``]`` are best, then quotes, separators and digits (a number closes itself)."""
    if not data:
        return 0.0
    bonus = 0.01 * len(data)
    text = data.decode("utf-8", "replace")
    if in_string:
        if data[:1] == b'"' and all(c in '"}],:' for c in text):
            return 4.0 + bonus
        return 2.0 + bonus if all(0x80 <= b < 0xC0 for b in data) else 0.0
    if all(c in "}]" for c in text):
        return 4.0 + bonus
    if all(c in '"}]' for c in text):
        return 3.0 + bonus
    if all(c in '"}],:' for c in text):
        return 2.0 + bonus
    if text.isascii() and text.isdigit():
        return 1.0
    return 0.0


def grammar_text(constraint: Constraint) -> str:
    if constraint.kind == "json_schema":
        try:
            return llguidance.LLMatcher.grammar_from_json_schema(
                constraint.spec, defaults=JSON_OPTIONS
            )
        except ValueError as exc:
            raise InvalidRequest(f"invalid JSON schema: {exc}") from exc
    return llguidance.LLMatcher.grammar_from_lark(constraint.spec)


@dataclass
class CompiledGrammar:
    matcher: llguidance.LLMatcher  # the start state, copied for each sequence
    closing_tokens: int  # tokens a closing walk needs from the start


class JsonDepth:
    """Open brackets and strings of the JSON emitted so far (bytes, incrementally)."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, data: bytes) -> None:
        for byte in data:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif byte == 0x5C:  # backslash
                    self.escaped = True
                elif byte == 0x22:
                    self.in_string = False
            elif byte == 0x22:
                self.in_string = True
            elif byte in (0x7B, 0x5B):
                self.depth += 1
            elif byte in (0x7D, 0x5D):
                self.depth = max(self.depth - 1, 0)

    @property
    def to_close(self) -> int:
        return self.depth + int(self.in_string)


class GrammarState:
    """One sequence's position in its grammar."""

    def __init__(self, compiler: GrammarCompiler, compiled: CompiledGrammar) -> None:
        self.compiler = compiler
        self.matcher = compiled.matcher.deep_copy()
        self.closing_tokens = compiled.closing_tokens
        self.json = JsonDepth()
        self.closing = False

    def should_close(self, remaining: int) -> bool:
        """True once the budget left is what closing needs (then for the rest of the row)."""
        if not self.closing:
            # The walk measured the branch closing prefers; the model may have taken a longer
            # one (another anyOf member, an optional object): half as much again in reserve.
            need = self.closing_tokens * 3 // 2 + self.json.to_close + CLOSING_MARGIN
            self.closing = remaining <= need
        return self.closing

    def advance(self, token: int) -> bool:
        """Consume the chosen token; True when the grammar is complete (the row may end)."""
        if not self.matcher.consume_token(token):
            logger.warning("grammar rejected token %d: %s", token, self.matcher.get_error())
            return True
        self.json.feed(self.compiler.tokenizer.decode_bytes([token]))
        return self.matcher.is_stopped()


class GrammarCompiler:
    """Per model: the llguidance tokenizer, the closing scores and an LRU of compiled grammars.

    ``compile`` may run on any thread (the service calls it off the event loop); the engine
    thread only copies cached start states.
    """

    def __init__(self, hf_tokenizer: Any, vocab_size: int) -> None:
        self.hf_tokenizer = hf_tokenizer
        self.vocab_size = vocab_size
        self._lock = threading.Lock()
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._scores: torch.Tensor | None = None  # (2, V): outside / inside a string
        self._cache: OrderedDict[Constraint, CompiledGrammar] = OrderedDict()

    @property
    def tokenizer(self) -> llguidance.LLTokenizer:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = self._build_tokenizer()
        return self._tokenizer

    def _build_tokenizer(self) -> llguidance.LLTokenizer:
        try:
            return llguidance.hf.from_tokenizer(self.hf_tokenizer, n_vocab=self.vocab_size)
        except Exception as exc:  # e.g. a slow (Python) tokenizer
            raise InvalidRequest(
                f"structured output is not available for this model's tokenizer: {exc}"
            ) from exc

    def closing_scores(self, in_string: bool) -> torch.Tensor:
        """``(V,)`` closing preference of every token (see ``_closing_score``)."""
        if self._scores is None:
            tok = self.tokenizer
            data = [tok.decode_bytes([i]) for i in range(self.vocab_size)]
            scores = [[_closing_score(d, inside) for d in data] for inside in (False, True)]
            for eos in tok.eos_tokens:  # ending is the best close of all once it is allowed
                if eos < self.vocab_size:
                    scores[0][eos] = scores[1][eos] = 5.0
            self._scores = torch.tensor(scores, dtype=torch.float32)
        return self._scores[int(in_string)]

    def compile(self, constraint: Constraint) -> CompiledGrammar:
        """The cached start state; a grammar llguidance cannot handle is an InvalidRequest."""
        with self._lock:
            cached = self._cache.get(constraint)
            if cached is not None:
                self._cache.move_to_end(constraint)
                return cached
        compiled = self._compile(constraint)
        with self._lock:
            self._cache[constraint] = compiled
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return compiled

    def _compile(self, constraint: Constraint) -> CompiledGrammar:
        grammar = grammar_text(constraint)
        tokenizer = self.tokenizer
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
        if is_error:
            raise InvalidRequest(f"unsupported {_what(constraint)}: {messages[0]}")
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequest(f"unsupported {_what(constraint)}: {matcher.get_error()}")
        closing = self._closing_walk(matcher.deep_copy())
        if closing is None:
            raise InvalidRequest(
                f"unsupported {_what(constraint)}: no output of at most {MAX_CLOSING_WALK} "
                "tokens satisfies it"
            )
        return CompiledGrammar(matcher, closing)

    def _closing_walk(self, matcher: llguidance.LLMatcher) -> int | None:
        """Tokens the closing preference needs to complete the grammar from ``matcher``."""
        bitmask = allocate_bitmask(1, self.vocab_size)
        depth = JsonDepth()
        for step in range(MAX_CLOSING_WALK):
            if matcher.is_stopped() or matcher.is_accepting():
                return step
            fill_bitmask(matcher, bitmask, 0)
            allowed = unpack_bitmask(bitmask, self.vocab_size)[0]
            scores = self.closing_scores(depth.in_string and not depth.escaped)
            token = int(torch.where(allowed, scores, -1.0).argmax())
            if not allowed[token] or not matcher.consume_token(token):
                return None
            depth.feed(self.tokenizer.decode_bytes([token]))
        return None

    def start(self, constraint: Constraint) -> GrammarState:
        return GrammarState(self, self.compile(constraint))


def _what(constraint: Constraint) -> str:
    return "JSON schema" if constraint.kind == "json_schema" else "grammar"


# ---- bitmasks -------------------------------------------------------------------------------
_SHIFTS = torch.arange(32, dtype=torch.int32)


def allocate_bitmask(rows: int, vocab_size: int) -> torch.Tensor:
    return torch.full((rows, (vocab_size + 31) // 32), -1, dtype=torch.int32)


def fill_bitmask(matcher: llguidance.LLMatcher, bitmask: torch.Tensor, row: int) -> None:
    view = bitmask[row]
    matcher.unsafe_compute_mask_ptr(view.data_ptr(), view.numel() * view.element_size())


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``(R, W)`` int32 words -> ``(R, vocab_size)`` bool, True where a token is allowed."""
    bits = (bitmask.unsqueeze(-1) >> _SHIFTS) & 1
    return bits.view(bitmask.shape[0], -1)[:, :vocab_size].bool()


def apply_grammars(
    logits: torch.Tensor, rows: list[int], states: list[GrammarState], remaining: list[int]
) -> None:
    """Mask the constrained ``rows`` of ``logits`` ``(B, V)`` in place; rows short of budget
    prefer closing tokens (see the module docstring)."""
    vocab = logits.shape[-1]
    bitmask = allocate_bitmask(len(rows), vocab)
    for i, state in enumerate(states):
        fill_bitmask(state.matcher, bitmask, i)
    allowed = unpack_bitmask(bitmask, vocab).to(logits.device)
    index = torch.tensor(rows, device=logits.device)
    masked = logits[index].masked_fill(~allowed, float("-inf"))
    for i, (state, left) in enumerate(zip(states, remaining, strict=True)):
        if state.should_close(left):
            in_string = state.json.in_string and not state.json.escaped
            scores = state.compiler.closing_scores(in_string).to(logits.device)[:vocab]
            masked[i] = torch.where(
                allowed[i], scores * 1e4 + masked[i].clamp(-1e3, 1e3), float("-inf")
            )
    logits[index] = masked
