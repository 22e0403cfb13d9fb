"""``use_ollama``: the generation backend that sends a ``GenerationJob`` to the upstream.

Answers come back as the engine's own types (``Completion``, ``StreamDelta``), so every
native endpoint answers a proxied request in exactly the shapes of a local one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gpt_service.engine.types import Completion, FinishReason, SamplingParams, StreamDelta
from gpt_service.errors import InvalidRequest, ServiceError
from gpt_service.ollama_upstream.client import OllamaClient

if TYPE_CHECKING:
    from gpt_service.services.preparation import GenerationJob


def ollama_options(params: SamplingParams) -> dict[str, Any]:
    """Our sampling fields as Ollama ``options`` (Modelfile parameter names)."""
    options: dict[str, Any] = {
        "num_predict": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        # Always sent: Ollama's own default is 40, ours is 0 (= off, as in llama.cpp).
        "top_k": params.top_k,
        "repeat_penalty": params.repetition_penalty,
    }
    if params.stop:
        options["stop"] = list(params.stop)
    if params.seed is not None:
        options["seed"] = params.seed
    if params.presence_penalty:
        options["presence_penalty"] = params.presence_penalty
    if params.frequency_penalty:
        options["frequency_penalty"] = params.frequency_penalty
    # Not Ollama options: a real Ollama logs and ignores them, a gpt-service upstream honours them.
    if params.min_tokens:
        options["min_tokens"] = params.min_tokens
    if params.ignore_eos:
        options["ignore_eos"] = True
    return options


def build_request(job: GenerationJob) -> tuple[str, dict[str, Any]]:
    """(path, body) of the upstream call; raises ``InvalidRequest`` before anything is sent."""
    if not job.model_name:
        raise InvalidRequest(
            "model_name is required with use_ollama: name an Ollama model (see GET /ollama/models)"
        )
    body: dict[str, Any] = {"model": job.model_name, "options": ollama_options(job.params)}
    if job.messages is not None:
        return "/api/chat", {**body, "messages": job.messages}
    if job.prompt_ids is not None or job.prompt is None:
        raise InvalidRequest("only text prompts and chat messages can be sent to Ollama")
    # raw: /generate is plain completion of the prompt, like the local engine; /chat templates.
    return "/api/generate", {**body, "prompt": job.prompt, "raw": True}


def _text(part: dict[str, Any]) -> str:
    if "message" in part:
        return str((part.get("message") or {}).get("content") or "")
    return str(part.get("response") or "")


def _finish_reason(part: dict[str, Any]) -> FinishReason:
    return "length" if part.get("done_reason") == "length" else "stop"


class OllamaBackend:
    """Implements ``services.generation.GenerationBackend`` over an ``OllamaClient``."""

    def __init__(self, client: OllamaClient) -> None:
        self.client = client

    async def complete(self, job: GenerationJob) -> Completion:
        path, body = build_request(job)
        start = time.perf_counter()
        data = await self.client.post_json(path, body)
        return Completion(
            text=_text(data),
            finish_reason=_finish_reason(data),
            prompt_tokens=int(data.get("prompt_eval_count") or 0),
            completion_tokens=int(data.get("eval_count") or 0),
            total_seconds=time.perf_counter() - start,
        )

    def stream(self, job: GenerationJob) -> AsyncIterator[StreamDelta]:
        """Validates now (a bad job is a 400), connects when iterated.

        A failure before the first delta raises (the caller reads that delta before
        answering, so it becomes a 404/503 status); after it, the stream ends with an error
        delta, which the SSE encoder turns into an ``error`` event, as for a local failure.
        """
        path, body = build_request(job)
        return self._deltas(path, body)

    async def _deltas(self, path: str, body: dict[str, Any]) -> AsyncIterator[StreamDelta]:
        has_started = False
        try:
            async for part in self.client.stream(path, body):
                text = _text(part)
                if part.get("done"):
                    yield StreamDelta(
                        text=text,
                        finish_reason=_finish_reason(part),
                        prompt_tokens=int(part.get("prompt_eval_count") or 0),
                        completion_tokens=int(part.get("eval_count") or 0),
                    )
                    return
                if text:
                    has_started = True
                    yield StreamDelta(text=text)
        except ServiceError as exc:
            if not has_started:
                raise
            yield StreamDelta(finish_reason="error", error=exc.message)
            return
        yield StreamDelta(finish_reason="error", error="Ollama upstream ended the stream early")
