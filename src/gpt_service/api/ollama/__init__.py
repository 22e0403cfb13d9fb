"""The Ollama API this service *serves* under ``/api``: tools written for Ollama (the
``ollama`` package, Open WebUI...) talk to this server as if it were an Ollama, and get this
server's own models (local catalog: ``services/local_catalog.py``).

Not to be confused with the two places where this service *calls* a real Ollama:
``gpt_service.ollama_upstream`` (the HTTP client of the upstream Ollama server) and
``api/ollama_proxy.py`` (the ``/ollama/*`` routes that show the upstream's models, pulls and
statistics).

``routes`` (the endpoints), ``schemas`` (request bodies and ``options`` -> sampling),
``format`` (``/api/tags``, ``/api/ps``, ``/api/show`` entries), ``stream`` (one turn's engine
deltas -> Ollama's NDJSON objects).
"""
