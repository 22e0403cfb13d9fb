"""One prepared request for every API dialect: the native API, OpenAI ``/v1`` and Ollama
``/api`` build a ``GenerationJob`` from their wire format; this module checks it and turns it
into what the model's backend takes, so the dialects differ only in how they encode the
answer.

A local model (the batching engine) is given token ids: this service renders the chat
template and tokenizes, off the event loop. A remote engine is given text or messages and
templates and tokenizes itself. ``ServedModel.is_remote`` tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from gpt_service.engine.types import SamplingParams
from gpt_service.errors import InvalidRequest
from gpt_service.services.structured import ToolPlan, prepare_messages

if TYPE_CHECKING:
    from gpt_service.engine.loaded import LoadedModel
    from gpt_service.engine.registry import ServedModel


@dataclass
class GenerationJob:
    params: SamplingParams
    model_name: str | None = None  # "name", "name:adapter", or None for the current model
    prompt: str | None = None  # raw text, completed as it is
    messages: list[dict[str, Any]] | None = None  # a chat, rendered by the chat template
    tool_plan: ToolPlan | None = None  # chat with tools: rendered, parsed (or forced)
    prompt_ids: list[int] | None = None  # token ids given by the client (OpenAI)
    # Ollama's /api/generate: ``prompt`` (and ``system``) as one chat turn (a model without
    # a chat template gets "system\n\nprompt"), after the ``context`` ids of an earlier turn.
    templated: bool = False
    system: str | None = None
    context_ids: list[int] | None = None
    use_ollama: bool = False  # the native API's: send it to the upstream Ollama


@dataclass
class Prepared:
    model: ServedModel
    adapter: str | None
    model_name: str  # as answered: "name" or "name:adapter"
    request: Any  # what the model's backend takes: token ids (local) or a RemoteRequest

    @property
    def prompt_ids(self) -> list[int] | None:
        """The ids the local engine is given (None for a remote engine)."""
        return self.request if isinstance(self.request, list) else None


def served_name(model: ServedModel, adapter: str | None) -> str:
    """The name an answer carries: the model's, or ``model:adapter`` for another adapter."""
    if adapter and adapter != model.default_adapter:
        return f"{model.name}:{adapter}"
    return model.name


def tokenizes_here(model: ServedModel) -> TypeGuard[LoadedModel]:
    """True for the local engine, whose prompts this service templates and tokenizes."""
    return not model.is_remote


def check_inputs(job: GenerationJob, model: ServedModel) -> None:
    """What can be refused before any tokenizing: empty prompts, client token ids."""
    if job.context_ids and not tokenizes_here(model):
        raise InvalidRequest(
            "context (token ids) cannot be sent to a remote model; continue through /api/chat"
        )
    if tokenizes_here(model):
        check_token_ids([*(job.context_ids or ()), *(job.prompt_ids or ())], model)
    is_text = job.messages is None and job.prompt_ids is None and not job.templated
    if is_text and not (job.prompt or "").strip():  # a templated prompt is a chat turn
        raise InvalidRequest("prompt must not be empty")  # for every backend


def vocabulary_size(model: LoadedModel) -> int:
    """Ids the model can embed: the tokenizer's and the embedding matrix's sizes, the smaller."""
    size = len(model.tokenizer)
    embedded = getattr(getattr(model.model, "config", None), "vocab_size", None)
    return min(size, embedded) if isinstance(embedded, int) and embedded > 0 else size


def check_token_ids(ids: list[int], model: LoadedModel) -> list[int]:
    """Token ids given by a client (OpenAI prompt ids, Ollama context): an id outside the
    vocabulary would fail the engine step shared with other requests, so it is a 400."""
    if not ids:
        return ids
    size = vocabulary_size(model)
    bad = next((t for t in ids if not 0 <= t < size), None)
    if bad is not None:
        raise InvalidRequest(
            f"token id {bad} is outside the vocabulary of model '{model.name}' (0..{size - 1})"
        )
    return ids


def render(job: GenerationJob, model: ServedModel) -> Any:
    """The request the model's backend takes (for a local model this tokenizes: blocking)."""
    prompt, messages = _prompt_or_chat(job, model)
    tools = None
    if messages is not None:
        # A local model renders tools with its own template (and we parse its format); a
        # remote engine gets the OpenAI definitions as they are.
        if tokenizes_here(model):
            template = getattr(model.tokenizer, "chat_template", None)
            messages, tools = prepare_messages(messages, job.tool_plan, template)
        elif job.tool_plan is not None:
            tools = job.tool_plan.template_tools()
            # The upstream answers structured tool_calls; remote/wire.py writes them as
            # Hermes <tool_call> text, which the plan's parser turns back into calls.
            job.tool_plan.fmt = "hermes"
    request = model.prepare(prompt, messages, job.prompt_ids, tools)
    if job.context_ids and tokenizes_here(model):
        return [*job.context_ids, *request]
    return request


def _prompt_or_chat(
    job: GenerationJob, model: ServedModel
) -> tuple[str | None, list[dict[str, Any]] | None]:
    if not job.templated:
        return job.prompt, job.messages
    prompt = job.prompt or ""
    if tokenizes_here(model) and not getattr(model.tokenizer, "chat_template", None):
        # Ollama's template for a model without a chat format is the bare prompt.
        return (f"{job.system}\n\n{prompt}" if job.system else prompt), None
    system = [{"role": "system", "content": job.system}] if job.system else []
    return None, [*system, {"role": "user", "content": prompt}]
