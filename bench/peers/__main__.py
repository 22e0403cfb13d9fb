"""``python -m bench.peers MODEL_DIR [--clients 1,16,64]``: the llama.cpp peers alone on one model.

Builds them if needed (once per machine), converts the model to GGUF and prints llama.cpp's
one-stream tokens/s and llama-server's aggregate tokens/s per client count.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from bench import peers
from bench.load import LLAMA_SERVER, run_clients
from bench.prompts import make_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--outtype", default="f32", help="GGUF weight type: f32, q8_0, ...")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    peers.build()
    gguf = peers.to_gguf(args.model_dir, args.outtype)
    prompts = make_prompts(16)
    one = peers.one_stream(gguf, prompts, args.new_tokens)["requests"]
    tokens = sum(r["tokens"] for r in one)
    print(f"llama.cpp one stream: {tokens / sum(r['latency'] for r in one):.1f} tok/s")
    for clients in (int(c) for c in args.clients.split(",")):
        with peers.llama_server(gguf, parallel=clients) as url:
            result = asyncio.run(
                run_clients(
                    LLAMA_SERVER + url, prompts, clients, max(2, 16 // clients), args.new_tokens
                )
            )
        print(f"llama-server, {clients} clients: {result.throughput:.1f} tok/s")


if __name__ == "__main__":
    main()
