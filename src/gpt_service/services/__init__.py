"""Torch-free services the HTTP layers share (native API, OpenAI ``/v1``, Ollama ``/api``).

``container`` (``Services``: every service of the app, built once by ``app.py``),
``preparation`` (one prepared request for every dialect: model and adapter, checks, prompt
rendering and tokenizing) and ``generation`` (run it to the end or stream it, locally, on a
remote engine or the upstream Ollama), ``embeddings``, ``structured`` + ``tool_calls``
(response formats, tool plans and the parsers of the models' call formats),
``local_catalog`` (this server's models under Ollama names, for ``api/ollama/``),
``model_files`` (what a model directory holds, read without loading it), ``datasets``
(dataset files listed for the console), ``metrics`` (Prometheus).
"""
