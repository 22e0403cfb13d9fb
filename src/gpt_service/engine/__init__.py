"""Inference engine: model registry, continuous batching, sampling, detokenization.

One ``Engine`` thread per loaded model (``engine.py``) runs ``step()`` = schedule -> run ->
postprocess: ``scheduler`` picks who joins and who leaves, ``runner`` (all tensor code) runs
the forward pass over its slotted KV cache and samples (``sampling``), ``output`` turns the
sampled ids into text deltas and finished sequences (``detokenizer``), and ``delivery`` hands
each step's deltas to the requesters' event loops.

Torch-free modules (``types``, ``scheduler``, ``sequence``, ``output``, ``delivery``) can be
imported by the API layer; the torch-heavy ones (``runner``, ``sampling``, ``loader``,
``registry``) are only built by the app.
"""
