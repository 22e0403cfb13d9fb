"""Torch-free facades the HTTP layers share (native API, OpenAI ``/v1``, Ollama ``/api``)."""
