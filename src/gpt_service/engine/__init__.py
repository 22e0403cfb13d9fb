"""Inference engine: model registry, continuous batching, sampling, detokenization.

Torch-free modules (``types``, ``scheduler``, ``sequence``) can be imported by the API layer;
the torch-heavy ones (``runner``, ``sampling``, ``loader``, ``registry``) are only built by the app.
"""
