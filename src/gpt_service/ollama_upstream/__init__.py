"""The client side of the Ollama proxy: this service calling a real, *upstream* Ollama server
(``GPT_SERVICE_OLLAMA_BASE_URL``).

``client`` (``OllamaClient``: one pooled ``httpx`` client, upstream failures mapped to the
service's errors, proxy counters) and ``backend`` (``OllamaBackend``: ``use_ollama: true`` on
the native generation endpoints sends the request upstream). The routes over it are
``api/ollama_proxy.py`` (``/ollama/*``). The Ollama API this service serves itself is a
different thing: ``api/ollama/`` (``/api/*``). Torch-free and FastAPI-free.
"""
