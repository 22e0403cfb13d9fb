"""The OpenAI-compatible API this service serves under ``/v1`` (the official ``openai`` SDK
works against it), plus vLLM's runtime LoRA endpoints.

``routes`` (the endpoints), ``schemas`` / ``chat_schemas`` / ``structured`` (request bodies:
sampling, completions and embeddings; chat; response_format and tools), ``format`` (response
shapes and their builders), ``stream`` (the n choices' engine streams merged into SSE chunks),
``tools`` (tool calls in answers), ``errors`` (OpenAI's error object), ``lora``
(``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``, as vLLM serves them).
"""
