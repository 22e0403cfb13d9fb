"""Models served by a remote OpenAI-compatible engine (vLLM, SGLang, TGI, llama-server, another
gpt-service): the replica pool, the wire mapping and ``RemoteModel``, the registry's second
kind of served model. Torch-free and FastAPI-free (import-linter enforces both)."""
