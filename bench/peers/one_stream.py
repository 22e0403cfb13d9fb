"""llama.cpp one stream (llama-cpp-python), run with the peers' venv; prints one JSON line.

Usage: one_stream.py GGUF NEW_TOKENS THREADS [repack|no-repack] < prompts.json   (a JSON list
of strings); ``no-repack``: llama.cpp keeps the weights as stored (``--no-repack``).
Each prompt: greedy, exactly NEW_TOKENS tokens (EOS ignored: ``generate`` has no stop), the
KV cache reset between prompts; one warm-up first. Per prompt: tokens, TTFT and latency.
"""

import json
import sys
import time

from llama_cpp import Llama


def _no_repack() -> None:
    """Models load with ``use_extra_bufts = False`` (llama-server's ``--no-repack``)."""
    import llama_cpp.llama

    default = llama_cpp.llama_cpp.llama_model_default_params

    def params():  # noqa: ANN202 - a ctypes structure
        p = default()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama.llama_cpp.llama_model_default_params = params


def main() -> None:
    gguf, new_tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if sys.argv[4:] == ["no-repack"]:
        _no_repack()
    prompts = json.load(sys.stdin)
    llm = Llama(model_path=gguf, n_ctx=1024, n_threads=threads, n_batch=512, verbose=False)
    llm("warm", max_tokens=8)
    requests = []
    for prompt in prompts:
        tokens = llm.tokenize(prompt.encode())
        start = time.perf_counter()
        first = None
        count = 0
        for _ in llm.generate(tokens, temp=0.0, reset=True):
            count += 1
            if first is None:
                first = time.perf_counter() - start
            if count >= new_tokens:
                break
        requests.append({"tokens": count, "ttft": first, "latency": time.perf_counter() - start})
    print(json.dumps({"requests": requests}))


if __name__ == "__main__":
    main()
