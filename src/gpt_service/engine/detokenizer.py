"""Incremental detokenization and stop strings (no torch).

Byte-level BPE splits one Chinese character across several tokens; decoding a partial
character gives U+FFFD. Text is released only once it decodes cleanly, so a stream never
carries a broken character, and the concatenated stream equals the one-shot decode (less
any byte sequence that is not UTF-8 at all, which is dropped).
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"
# Prompt tokens kept as left context: tokenizers such as SentencePiece decode a leading
# space differently at the start of a sequence than in the middle of one.
_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = list(prompt_ids[-_CONTEXT_TOKENS:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token_id: int) -> str:
        """Add one token; return the newly completed text (possibly empty)."""
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) <= len(prefix_text) or new_text.endswith(REPLACEMENT):
            return ""  # wait: the last character is not complete yet
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        # A replacement character left inside complete text marks bytes that can never form a
        # character (an undertrained model emitting stray byte tokens): drop them.
        return new_text[len(prefix_text) :].replace(REPLACEMENT, "")


class StopStringMatcher:
    """Accumulates text, finds stop strings, and holds back what could still start one."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = tuple(s for s in stop if s)
        self.holdback = max((len(s) for s in self.stop), default=1) - 1
        self.text = ""
        self.num_emitted = 0
        self.is_stopped = False

    def push(self, delta: str) -> str:
        """Add decoded text; return what may be sent now."""
        if self.is_stopped or not delta:
            return ""
        start = max(0, len(self.text) - self.holdback)
        self.text += delta
        for stop in self.stop:
            index = self.text.find(stop, start)
            if index != -1:
                self.text = self.text[:index]
                self.is_stopped = True
        limit = len(self.text) if self.is_stopped else len(self.text) - self.holdback
        return self._release(limit)

    def flush(self) -> str:
        return self._release(len(self.text))

    def _release(self, limit: int) -> str:
        if limit <= self.num_emitted:
            return ""
        out = self.text[self.num_emitted : limit]
        self.num_emitted = limit
        return out
