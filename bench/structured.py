"""Structured output under load, side by side in one run: ``python -m bench.structured``.

16 streaming clients on ``/generate/stream`` with every request constrained by a JSON schema
(nested object, Chinese enum, bounded array, numbers, boolean) against 16 clients generating
freely, in interleaved rounds (median ratio reported). Greedy; the free side ignores EOS and
runs to ``--new-tokens``, the constrained side ends when its JSON is complete (or closes it
within the same budget), so both rows count the tokens actually generated. Every constrained
answer is parsed and validated with ``jsonschema``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from pathlib import Path

import aiohttp
import jsonschema

from bench.prompts import make_prompts
from bench.run import _warm_compiled
from tests.server import start_server

logger = logging.getLogger("bench.structured")
RESULTS = Path(__file__).parent / "results"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "city": {"type": "string", "enum": ["北京", "上海", "深圳"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "home": {
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
            "required": ["x", "y"],
        },
    },
    "required": ["name", "city", "tags", "score", "ok", "home"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "bench", "schema": SCHEMA}}


async def _request(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, str]:
    text, tokens = [], 0
    async with session.post(f"{url}/generate/stream", json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if line.startswith(b"data:"):
                data = json.loads(line[5:])
                text.append(data.get("text", ""))
                tokens = data.get("tokens_generated", tokens)
    return tokens, "".join(text)


async def run_clients(
    url: str, prompts: list[str], clients: int, per_client: int, new_tokens: int, constrained: bool
) -> tuple[float, float, int]:
    """(tokens/s, mean tokens per request, invalid answers) of ``clients`` looping streams."""
    tokens: list[int] = []
    invalid = 0
    connector = aiohttp.TCPConnector(limit=clients + 4)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(index: int) -> None:
            nonlocal invalid
            for j in range(per_client):
                body = {
                    "prompt": prompts[(index * per_client + j) % len(prompts)],
                    "max_tokens": new_tokens,
                    "temperature": 0,
                    "ignore_eos": True,
                }
                if constrained:
                    body["response_format"] = FORMAT
                count, text = await _request(session, url, body)
                tokens.append(count)
                if constrained:
                    try:
                        jsonschema.validate(json.loads(text), SCHEMA)
                    except (ValueError, jsonschema.ValidationError):
                        invalid += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - start
    return sum(tokens) / wall, statistics.mean(tokens), invalid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=4, help="requests per client")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work-dir", default="/tmp/gpt-service-bench-structured")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prompts = make_prompts(16)
    rows: list[tuple[float, float, float, float, int]] = []
    with start_server(Path(args.work_dir)) as server:
        # Warm-up: compiles the schema and the decode graphs (not charged to any round).
        _warm_compiled(server, prompts, [args.clients], args.new_tokens)
        asyncio.run(run_clients(server.url, prompts, 2, 1, args.new_tokens, True))
        for i in range(args.rounds):
            free = asyncio.run(
                run_clients(
                    server.url, prompts, args.clients, args.per_client, args.new_tokens, False
                )
            )
            json_ = asyncio.run(
                run_clients(
                    server.url, prompts, args.clients, args.per_client, args.new_tokens, True
                )
            )
            logger.info(
                "round %d: free %.1f tok/s, constrained %.1f tok/s", i + 1, free[0], json_[0]
            )
            rows.append((free[0], free[1], json_[0], json_[1], json_[2]))
    _report(args, rows)


def _report(args: argparse.Namespace, rows: list[tuple[float, float, float, float, int]]) -> None:
    ratios = [r[2] / r[0] for r in rows]
    median = sorted(range(len(rows)), key=lambda i: ratios[i])[(len(rows) - 1) // 2]
    free_tps, free_len, json_tps, json_len, _ = rows[median]
    invalid = sum(r[4] for r in rows)
    lines = [
        f"# demo: {args.clients} clients, structured output vs free ({args.new_tokens} max new "
        "tokens, greedy)",
        "",
        "| config | clients | tok/s | tokens/request | invalid JSON |",
        "|---|---|---|---|---|",
        f"| free | {args.clients} | {free_tps:.1f} | {free_len:.1f} | - |",
        f"| all constrained (JSON schema) | {args.clients} | {json_tps:.1f} | {json_len:.1f} "
        f"| {invalid} of {args.clients * args.per_client * len(rows)} |",
        "",
        f"- constrained vs free tokens/s: {ratios[median]:.3f}x (target >= 0.8x: "
        f"{'met' if ratios[median] >= 0.8 else 'NOT met'}; rounds: "
        + ", ".join(f"{r:.3f}" for r in ratios)
        + ")",
    ]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "structured.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
