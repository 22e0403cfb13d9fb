"""Admission and batching decisions (pure Python, no torch).

Every step, waiting sequences join the running batch (after a prefill) while the running
cap and the per-step prefill token budget allow (counted as the padded batch the prefill
computes: joiners x the longest prompt); then all running sequences decode one token together.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gpt_service.engine.sequence import SeqStatus, Sequence


@dataclass
class StepPlan:
    """What a step does besides decoding every running sequence: who joins, who leaves."""

    prefill: list[Sequence] = field(default_factory=list)
    cancelled: list[Sequence] = field(default_factory=list)


class Scheduler:
    def __init__(self, max_running: int, max_prefill_tokens: int) -> None:
        self.max_running = max_running
        self.max_prefill_tokens = max_prefill_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def schedule(self) -> StepPlan:
        plan = StepPlan()
        plan.cancelled = [s for s in self.running if s.is_cancelled]
        plan.cancelled += [s for s in self.waiting if s.is_cancelled]
        if plan.cancelled:
            self.running = [s for s in self.running if not s.is_cancelled]
            self.waiting = deque(s for s in self.waiting if not s.is_cancelled)
        width = 0  # the joiners are prefilled as one batch padded to the longest
        while self.waiting and len(self.running) + len(plan.prefill) < self.max_running:
            longest = max(width, self.waiting[0].num_tokens)
            # The first joiner is always admitted, so a prompt over the budget cannot starve.
            if plan.prefill and longest * (len(plan.prefill) + 1) > self.max_prefill_tokens:
                break
            seq = self.waiting.popleft()
            seq.status = SeqStatus.RUNNING
            plan.prefill.append(seq)
            width = longest
        self.running.extend(plan.prefill)
        return plan

    def finish(self, seq: Sequence) -> None:
        seq.status = SeqStatus.FINISHED
        self.running.remove(seq)

    def drain(self) -> list[Sequence]:
        """Remove and return every sequence (used when the engine stops)."""
        seqs = [*self.running, *self.waiting]
        self.running, self.waiting = [], deque()
        return seqs
