"""Per-request state inside the engine (pure Python)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from gpt_service.engine.types import FinishReason, SamplingParams, StreamDelta

_ids = itertools.count()


class SeqStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


@dataclass(eq=False)
class Sequence:
    prompt_ids: list[int]
    params: SamplingParams
    emit: Callable[[StreamDelta], None]  # thread-safe sink towards the requester
    adapter: str | None = None
    max_context: int = 2048
    seq_id: int = field(default_factory=lambda: next(_ids))
    output_ids: list[int] = field(default_factory=list)
    status: SeqStatus = SeqStatus.WAITING
    finish_reason: FinishReason | None = None
    is_cancelled: bool = False  # set from the requester's thread; read by the engine loop
    arrival_time: float = field(default_factory=time.perf_counter)
    first_token_time: float | None = None
    grammar: Any = None  # engine.grammar.GrammarState of a constrained row (structured output)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_ids)

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + self.num_output_tokens

    @property
    def remaining_tokens(self) -> int:
        """New tokens this sequence may still produce (``max_tokens`` and the context)."""
        return min(
            self.params.max_tokens - self.num_output_tokens, self.max_context - self.num_tokens
        )

    @property
    def last_token(self) -> int:
        return self.output_ids[-1] if self.output_ids else self.prompt_ids[-1]

    @property
    def is_finished(self) -> bool:
        return self.status is SeqStatus.FINISHED
