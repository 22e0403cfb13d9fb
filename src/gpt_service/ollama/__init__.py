"""Async client for an upstream Ollama server."""
