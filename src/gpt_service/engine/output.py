"""Turning sampled token ids into text deltas and finished sequences (pure Python, no torch).

As vLLM v1 keeps detokenization out of ``EngineCore``, the engine loop hands every step's
sampled ids to the ``OutputProcessor``: it owns each running sequence's incremental
detokenizer and stop-string matcher, decides when a sequence ends (EOS, stop string, grammar,
``max_tokens``, context) and queues the deltas in the ``Outbox``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpt_service.engine.delivery import Outbox
from gpt_service.engine.detokenizer import IncrementalDetokenizer, StopStringMatcher
from gpt_service.engine.sequence import Sequence
from gpt_service.engine.types import FinishReason, StreamDelta, TokenLogprob

if TYPE_CHECKING:
    from gpt_service.engine.sampling import RawLogprob, RunOutput


@dataclass
class _Text:
    """Per-sequence text state owned by the loop thread."""

    detok: IncrementalDetokenizer
    stops: StopStringMatcher


class OutputProcessor:
    def __init__(
        self, tokenizer: Any, eos_ids: list[int], max_context: int, outbox: Outbox
    ) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.max_context = max_context
        self.outbox = outbox
        self._texts: dict[int, _Text] = {}

    def start(self, seq: Sequence) -> None:
        """A sequence joins the running batch (before its prefill)."""
        self._texts[seq.seq_id] = _Text(
            IncrementalDetokenizer(self.tokenizer, seq.prompt_ids),
            StopStringMatcher(seq.params.stop),
        )

    def process(self, seqs: list[Sequence], out: RunOutput) -> list[Sequence]:
        """Append each row's sampled token and queue its delta; returns the finished ones."""
        logprobs = out.logprobs
        done: list[Sequence] = []
        for row, (seq, token) in enumerate(zip(seqs, out.token_ids, strict=True)):
            if seq.first_token_time is None:
                seq.first_token_time = time.perf_counter()
            raw = logprobs[row] if logprobs is not None else None
            lp = self._token_logprob(token, raw) if raw is not None else None
            if self._advance(seq, token, lp):
                done.append(seq)
        return done

    def _token_logprob(self, token: int, raw: RawLogprob) -> TokenLogprob:
        decode = self.tokenizer.decode
        logprob, top = raw
        return TokenLogprob(decode([token]), logprob, [(decode([i]), v) for i, v in top])

    def _advance(self, seq: Sequence, token: int, logprob: TokenLogprob | None) -> bool:
        """Append one token and emit its text (maybe empty); True when the sequence finished."""
        p = seq.params
        is_eos = token in self.eos_ids and not p.ignore_eos
        text = self._texts[seq.seq_id]
        seq.output_ids.append(token)
        delta = "" if is_eos else text.stops.push(text.detok.add(token))
        reason: FinishReason | None = None
        grammar_done = seq.grammar is not None and not is_eos and seq.grammar.advance(token)
        if is_eos or grammar_done or text.stops.is_stopped:
            reason = "stop"
        elif seq.num_output_tokens >= p.max_tokens or seq.num_tokens >= self.max_context:
            reason = "length"
        if reason is not None:
            delta += text.stops.flush()
        self.outbox.put(
            seq, StreamDelta(text=delta, token_ids=[token], logprobs=[logprob] if logprob else [])
        )
        if reason is not None:
            self.close(seq, reason)
        return reason is not None

    def close(self, seq: Sequence, reason: FinishReason, error: str | None = None) -> None:
        """End a sequence: its final delta carries the reason and the token counts."""
        seq.finish_reason = reason
        self._texts.pop(seq.seq_id, None)
        self.outbox.put(
            seq,
            StreamDelta(
                finish_reason=reason,
                prompt_tokens=seq.num_prompt_tokens,
                completion_tokens=seq.num_output_tokens,
                error=error,
            ),
        )
