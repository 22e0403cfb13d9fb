"""What the remote backend costs: one upstream gpt-service called directly and through a
gateway that serves it as a remote model (same prompts, greedy, EOS ignored, streamed).

    python -m bench.remote [--rounds 3] [--clients 1 8] [--new-tokens 64]

Rounds interleave direct and gateway runs (this machine's speed drifts); the figures are the
medians over rounds of gateway/direct per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from bench.load import run_clients
from bench.prompts import make_prompts
from bench.stats import percentile
from tests.server import start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    prompts = make_prompts(32)
    with tempfile.TemporaryDirectory() as tmp, start_server(Path(tmp) / "up") as upstream:
        remote = {"name": "big", "base_url": f"{upstream.url}/v1", "remote_model": "demo"}
        env = {"GPT_SERVICE_REMOTE__MODELS": json.dumps([remote]), "GPT_SERVICE_DEFAULT_MODEL": ""}
        with start_server(Path(tmp) / "gw", env=env) as gateway:
            asyncio.run(run_clients(gateway.url, prompts, 2, 1, 8))  # warm both
            for clients in args.clients:
                ratios: dict[str, list[float]] = {"tok/s": [], "TTFT p50": []}
                for _ in range(args.rounds):
                    runs = {}
                    for name, url in (("direct", upstream.url), ("gateway", gateway.url)):
                        runs[name] = asyncio.run(
                            run_clients(
                                url, prompts, clients, args.requests_per_client, args.new_tokens
                            )
                        )
                    ratios["tok/s"].append(runs["gateway"].throughput / runs["direct"].throughput)
                    ttft = [percentile(runs[n].ttfts, 50) for n in ("gateway", "direct")]
                    ratios["TTFT p50"].append(ttft[0] / ttft[1])
                summary = {k: round(statistics.median(v), 3) for k, v in ratios.items()}
                print(f"{clients} clients, gateway/direct (median of {args.rounds}): {summary}")


if __name__ == "__main__":
    main()
