"""Load test: N concurrent streaming clients on 127.0.0.1, a share of them hanging up mid-stream.

``python -m bench.loadtest --url http://127.0.0.1:8000 --clients 200``. Bounded in count and time.
Checks that the server keeps answering, that every request either completes or gets an error
response, that running sequences return to 0 (no slot leak), and reports RSS before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadReport:
    clients: int
    outcomes: Counter[str] = field(default_factory=Counter)
    running_after: int = -1
    waiting_after: int = -1
    health_during: list[int] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        """Requests that neither completed, nor got an error, nor were dropped by us."""
        return self.clients - sum(
            self.outcomes[k] for k in ("completed", "error_response", "disconnected")
        )


async def _client(http: httpx.AsyncClient, index: int, hang_up: bool, max_tokens: int) -> str:
    body = {
        "prompt": f"你好 {index}",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0.8,
    }
    try:
        async with http.stream("POST", "/generate/stream", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return "error_response" if "detail" in response.json() else "lost"
            events = 0
            async for line in response.aiter_lines():
                if line.startswith("event: done"):
                    return "completed"
                if line.startswith("event: error"):
                    return "error_response"
                if line.startswith("data:"):
                    events += 1
                    if hang_up and events >= 3:
                        return "disconnected"  # leaving the block closes the connection
    except httpx.HTTPError:
        return "lost"
    return "lost"


async def _rss_mb(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes"):
            return float(line.split()[-1]) / 2**20
    return float("nan")


async def _model_state(http: httpx.AsyncClient, model: str) -> tuple[int, int]:
    detail = (await http.get(f"/models/{model}")).json()
    return detail["num_running"], detail["num_waiting"]


async def run_load(
    url: str, clients: int = 200, hang_up_every: int = 3, max_tokens: int = 32, model: str = "demo"
) -> LoadReport:
    report = LoadReport(clients)
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        report.rss_before_mb = await _rss_mb(http)
        start = time.perf_counter()
        tasks = [
            asyncio.create_task(_client(http, i, i % hang_up_every == 0, max_tokens))
            for i in range(clients)
        ]
        while not all(t.done() for t in tasks):
            report.health_during.append((await http.get("/health", timeout=30)).status_code)
            await asyncio.sleep(0.5)
        report.outcomes.update(t.result() for t in tasks)
        report.seconds = time.perf_counter() - start
        for _ in range(50):  # the engine frees cancelled rows at its next step
            report.running_after, report.waiting_after = await _model_state(http, model)
            if report.running_after == 0 and report.waiting_after == 0:
                break
            await asyncio.sleep(0.1)
        report.rss_after_mb = await _rss_mb(http)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model", default="demo")
    args = parser.parse_args()
    report = asyncio.run(
        run_load(args.url, args.clients, max_tokens=args.max_tokens, model=args.model)
    )
    print(
        json.dumps(
            {**report.__dict__, "outcomes": dict(report.outcomes), "lost": report.lost}, indent=2
        )
    )


if __name__ == "__main__":
    main()
