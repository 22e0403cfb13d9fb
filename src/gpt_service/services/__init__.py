"""Torch-free services the HTTP layers share (native API, OpenAI ``/v1``, Ollama ``/api``).

``generation`` (one prepared request for every dialect: model and adapter, prompt, checks;
then stream or complete), ``embeddings``, ``structured`` + ``tool_calls`` (response formats,
tool plans and the parsers of the models' call formats), ``local_catalog`` (this server's
models under Ollama names, for ``api/ollama/``), ``model_files`` (what a model directory
holds, read without loading it), ``datasets`` (dataset files listed for the console),
``metrics`` (Prometheus).
"""
