"""Runs llama.cpp's ``convert_hf_to_gguf.py`` with the pre-tokenizer forced to byte-level ``gpt-2``.

The converter recognises pre-tokenizers by a hash of how they split a test text and refuses the
demo tokenizer's (a byte-level BPE it has never seen). Run it with the peers' venv from the
sdist's ``vendor/llama.cpp`` directory, with the converter's own arguments::

    cd $CACHE/src/llama_cpp_python-0.3.36/vendor/llama.cpp
    $CACHE/venv/bin/python /path/to/bench/peers/gguf_convert.py MODEL_DIR --outfile X.gguf --outtype f32

``bench.peers.to_gguf`` does exactly that (and caches the result).
"""

import runpy
import sys

sys.path[:0] = ["gguf-py", "."]

import conversion.base as base  # noqa: E402  (the converter's own package, found via sys.path)


def _gpt2(self: object, tokenizer: object) -> str:
    return "gpt-2"


for name in dir(base):
    cls = getattr(base, name)
    if isinstance(cls, type) and hasattr(cls, "get_vocab_base_pre"):
        cls.get_vocab_base_pre = _gpt2

runpy.run_path("convert_hf_to_gguf.py", run_name="__main__")
