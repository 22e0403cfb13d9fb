"""HTTP layer (no torch here): one router per domain, each module with its own schemas.

The native API (API.md): ``system`` (``/``, ``/health``, ``/ready``), ``models``
(``/models``), ``generation`` (``/generate``, ``/chat``, ``/batch``), ``training``
(``/train``), ``evaluation`` (``/evaluate``), ``datasets``, ``metrics``; ``ui`` mounts the
web console. Two other API dialects, each a package: ``openai/`` (``/v1``, the OpenAI API
served here) and ``ollama/`` (``/api``, the Ollama API served here). ``ollama_proxy``
(``/ollama/*``) is the proxy to an *upstream* Ollama server (client: ``ollama_upstream/``).

Plumbing: ``routers`` (every router, included one way, with its dialect's error shape),
``deps`` (every ``Depends`` alias, from the one ``Services`` container), ``errors``
(exceptions -> status codes, in each dialect's error shape), ``middleware`` (request ids,
body limit, API keys), ``openapi`` (the documented schema and the offline ``/docs``).
"""
