"""Batched sampling with per-row parameters.

Rows share one logits tensor ``(B, V)``; per-row loops only run for the features a row uses
(penalties, seeds, logprobs), so an all-greedy batch is a single argmax. ``Sampler`` is what the
runner applies to a forward pass's logits: the sampled ids and logprobs as plain Python values.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence as Seq
from typing import NamedTuple

import torch

from gpt_service.engine.grammar import apply_grammars
from gpt_service.engine.logprobs import RawLogprob, top_logprobs
from gpt_service.engine.sequence import Sequence

# Below these, float32 arithmetic overflows to inf/nan; clamping keeps one odd request from
# failing the whole batch's step.
MIN_TOP_P = 1e-5
MIN_PENALTY = 1e-2


def _apply_penalties(logits: torch.Tensor, seqs: Seq[Sequence]) -> None:
    for row, seq in enumerate(seqs):
        p = seq.params
        if p.repetition_penalty != 1.0:
            penalty = max(p.repetition_penalty, MIN_PENALTY)
            seen = torch.tensor(sorted({*seq.prompt_ids, *seq.output_ids}), device=logits.device)
            values = logits[row, seen]
            penalised = torch.where(values > 0, values / penalty, values * penalty)
            logits[row, seen] = penalised
        if (p.presence_penalty or p.frequency_penalty) and seq.output_ids:
            ids, counts = torch.tensor(seq.output_ids, device=logits.device).unique(
                return_counts=True
            )
            logits[row, ids] -= p.presence_penalty + p.frequency_penalty * counts.to(logits.dtype)


def _eos_blocked(seq: Sequence) -> bool:
    """Whether the row may not end on EOS now (a grammar decides itself when the end may come)."""
    p = seq.params
    return seq.grammar is None and (p.ignore_eos or seq.num_output_tokens < p.min_tokens)


def _block_eos(logits: torch.Tensor, seqs: Seq[Sequence], eos_ids: list[int]) -> None:
    if not eos_ids:
        return
    rows = [row for row, seq in enumerate(seqs) if _eos_blocked(seq)]
    if rows:  # one indexed write for the whole batch
        index = torch.tensor(rows, device=logits.device).unsqueeze(1)
        logits[index, torch.tensor(eos_ids, device=logits.device)] = float("-inf")


def _top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask logits ``(B, V)`` outside each row's top-k / nucleus (k=0 and p=1 disable)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
    k = torch.where(top_k > 0, top_k, logits.shape[-1]).unsqueeze(1)
    drop = ranks >= k
    probs = sorted_logits.masked_fill(drop, float("-inf")).softmax(dim=-1)
    # Drop a token when the mass before it already reaches top_p (the first token always stays).
    drop |= (probs.cumsum(dim=-1) - probs) >= top_p.unsqueeze(1)
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def sample(
    logits: torch.Tensor,
    seqs: Seq[Sequence],
    eos_ids: list[int],
    generators: dict[int, torch.Generator],
) -> torch.Tensor:
    """Pick the next token of every row; ``logits`` is ``(B, V)`` float32. Returns ``(B,)``."""
    _apply_penalties(logits, seqs)
    constrained = [row for row, seq in enumerate(seqs) if seq.grammar is not None]
    if constrained:  # structured output: mask those rows to what their grammar allows
        states = [seqs[row].grammar for row in constrained]
        apply_grammars(logits, constrained, states, [seqs[r].remaining_tokens for r in constrained])
    _block_eos(logits, seqs, eos_ids)
    greedy = [s.params.is_greedy for s in seqs]
    if all(greedy):
        return logits.argmax(dim=-1)
    device = logits.device
    temps = torch.tensor(
        [1.0 if g else s.params.temperature for s, g in zip(seqs, greedy, strict=True)],
        device=device,
    )
    vocab = logits.shape[-1]  # a top_k past the vocabulary is no limit (and may overflow int64)
    top_k = torch.tensor([min(s.params.top_k, vocab) for s in seqs], device=device)
    top_p = torch.tensor([max(s.params.top_p, MIN_TOP_P) for s in seqs], device=device)
    scaled = logits / temps.unsqueeze(1)
    if bool((top_k > 0).any()) or bool((top_p < 1).any()):
        scaled = _top_k_top_p(scaled, top_k, top_p)
    # A row whose logits are all -inf (everything masked) would give nan: fall back to argmax.
    probs = torch.nan_to_num(scaled.softmax(dim=-1), nan=0.0)
    probs[probs.sum(dim=-1) <= 0] = 1.0
    tokens = torch.multinomial(probs, 1).squeeze(1)
    for row, seq in enumerate(seqs):
        gen = generators.get(seq.seq_id)
        if gen is not None:
            tokens[row] = torch.multinomial(probs[row], 1, generator=gen)[0]
    return torch.where(torch.tensor(greedy, device=device), logits.argmax(dim=-1), tokens)


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed % 2**63)  # any integer seed; torch takes at most 64 bits
    return gen


def _plain_greedy(seq: Sequence) -> bool:
    """A row whose token is the argmax of its logits (EOS aside): no penalty, grammar or
    logprobs."""
    p = seq.params
    return (
        p.is_greedy
        and seq.grammar is None
        and p.logprobs is None
        and p.repetition_penalty == 1.0
        and not (p.presence_penalty or p.frequency_penalty)
    )


class RunOutput(NamedTuple):
    """One forward pass's result: the sampled token of every row, in the rows' order, and
    the logprobs of the rows that asked for them (``None`` when no row did)."""

    token_ids: list[int]
    logprobs: list[RawLogprob | None] | None


class Sampler:
    """Samples the next token of every row; owns the per-sequence seeded generators."""

    def __init__(self, eos_ids: list[int], device: torch.device) -> None:
        self.eos_ids = eos_ids
        self._eos_set = frozenset(eos_ids)
        self.device = device
        self.generators: dict[int, torch.Generator] = {}

    def start(self, seqs: Iterable[Sequence]) -> None:
        """Joiners with a seed get their own generator (reproducible whatever the batch)."""
        for seq in seqs:
            if seq.params.seed is not None and not seq.params.is_greedy:
                self.generators[seq.seq_id] = make_generator(seq.params.seed, self.device)

    def release(self, seq_ids: Iterable[int]) -> None:
        for sid in seq_ids:
            self.generators.pop(sid, None)

    def __call__(self, logits: torch.Tensor, seqs: Seq[Sequence]) -> RunOutput:
        if all(_plain_greedy(s) for s in seqs):
            return RunOutput(self._greedy(logits, seqs), None)
        tokens = sample(logits, seqs, self.eos_ids, self.generators).tolist()
        if all(s.params.logprobs is None for s in seqs):
            return RunOutput(tokens, None)
        logprobs = [
            None
            if s.params.logprobs is None
            else top_logprobs(logits[row], token, s.params.logprobs)
            for row, (s, token) in enumerate(zip(seqs, tokens, strict=True))
        ]
        return RunOutput(tokens, logprobs)

    def _greedy(self, logits: torch.Tensor, seqs: Seq[Sequence]) -> list[int]:
        """``sample``'s tokens for plain greedy rows, with one argmax and no masking: blocking
        EOS (``ignore_eos``, ``min_tokens``) changes a row's argmax only when that argmax is an
        EOS id (the first maximum), so only such rows are masked and taken again (a decode step
        of the demo model spent about 50 us a step masking every row, in a 1.3 ms step)."""
        tokens = logits.argmax(dim=-1).tolist()
        if self._eos_set.isdisjoint(tokens):
            return tokens
        for row, (seq, token) in enumerate(zip(seqs, tokens, strict=True)):
            if token in self._eos_set and _eos_blocked(seq):
                logits[row, self.eos_ids] = float("-inf")
                tokens[row] = int(logits[row].argmax())
        return tokens
