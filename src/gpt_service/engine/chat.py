"""Prompt rendering: the model's own chat template, or ChatML when it has none."""

from __future__ import annotations

from typing import Any

from gpt_service.errors import InvalidRequest

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ROLES = ("system", "user", "assistant", "tool")


def render_chat(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> str:
    """The prompt of a conversation; ``tools`` (OpenAI function definitions) and assistant
    ``tool_calls`` / ``tool`` messages go to the template, which renders them its own way."""
    if not messages:
        raise InvalidRequest("messages must not be empty")
    for message in messages:
        if message.get("role") not in ROLES:
            raise InvalidRequest(
                f"unknown message role '{message.get('role')}'; use one of {ROLES}"
            )
    template = getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
    try:
        return tokenizer.apply_chat_template(
            messages,
            tools=tools or None,
            chat_template=template,
            add_generation_prompt=True,
            tokenize=False,
        )
    except Exception as exc:  # jinja raises for templates that reject a conversation shape
        raise InvalidRequest(f"chat template rejected the messages: {exc}") from exc


def encode_prompt(tokenizer: Any, text: str, *, is_templated: bool = False) -> list[int]:
    """Token ids of a prompt; a chat-templated prompt already carries its special tokens."""
    return tokenizer.encode(text, add_special_tokens=not is_templated)
