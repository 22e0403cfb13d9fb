"""HTTP load against a running server: streaming clients arriving over time.

The load generator uses aiohttp (as vLLM's serving benchmark does): it shares the 2 cores with
the server, and its C HTTP parser costs the measured service less CPU per event than httpx.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time

import aiohttp
import psutil

from bench.stats import Result

LLAMA_SERVER = "llama-server+"  # URL prefix: the target is a llama-server, not the service


class RssSampler:
    """Peak RSS of a process (and its children), sampled in a background thread."""

    def __init__(self, pid: int, interval: float = 0.2, children: bool = True) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.children = children
        self.peak = 0
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        procs = [self.process]
        if self.children:
            procs += self.process.children(recursive=True)
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.rss()
            self.samples.append(value)
            self.peak = max(self.peak, value)
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _request(url: str, prompt: str, new_tokens: int) -> tuple[str, dict]:
    """The streaming request for the service (``/generate/stream``) or a llama-server
    (``/completion``; URLs marked ``llama-server+http://...``): same prompt, greedy, EOS ignored."""
    if url.startswith(LLAMA_SERVER):
        body = {
            "prompt": prompt,
            "n_predict": new_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "cache_prompt": False,
            "stream": True,
        }
        return f"{url[len(LLAMA_SERVER) :]}/completion", body
    body = {"prompt": prompt, "max_tokens": new_tokens, "temperature": 0, "ignore_eos": True}
    return f"{url}/generate/stream", body


def _tokens_so_far(data: dict, tokens: int) -> tuple[int, bool]:
    """Tokens generated after this SSE event, and whether the event carries new text."""
    if "tokens_generated" in data:  # the service: a running count
        return data["tokens_generated"], "text" in data
    if data.get("stop"):  # llama-server's last event
        return data.get("tokens_predicted", tokens), False
    return tokens + 1, True  # llama-server streams one event per token


async def _one_request(
    session: aiohttp.ClientSession, url: str, prompt: str, new_tokens: int, result: Result
) -> None:
    endpoint, body = _request(url, prompt, new_tokens)
    start = time.perf_counter()
    last = start
    ttft = float("nan")
    itls: list[float] = []
    tokens = 0
    async with session.post(endpoint, json=body) as response:
        response.raise_for_status()
        async for line in response.content:  # one SSE line at a time
            if not line.startswith(b"data:"):
                continue
            data = json.loads(line[5:])
            now = time.perf_counter()
            count, has_text = _tokens_so_far(data, tokens)
            new, tokens = count - tokens, count
            if has_text and new > 0:
                if tokens == new:
                    ttft = now - start
                else:
                    itls += [(now - last) / new] * new
                last = now
    result.add_request(tokens, ttft, itls, time.perf_counter() - start)


def _session(clients: int, url: str = "") -> aiohttp.ClientSession:
    # llama-server closes a connection after a streamed answer: no keep-alive there.
    peer = url.startswith(LLAMA_SERVER)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients + 4, force_close=peer),
        timeout=aiohttp.ClientTimeout(total=600),
    )


async def run_clients(
    url: str,
    prompts: list[str],
    clients: int,
    requests_per_client: int,
    new_tokens: int,
    seed: int = 0,
) -> Result:
    """``clients`` concurrent streams; each starts after a random delay, then loops."""
    result = Result(f"4. service HTTP, {clients} clients", clients=clients)
    rng = random.Random(seed)
    async with _session(clients, url) as session:

        async def worker(index: int) -> None:
            # Arrivals spread over time (one client starts at once: its wall time is all work).
            await asyncio.sleep(rng.uniform(0, 0.5) if clients > 1 else 0.0)
            for j in range(requests_per_client):
                prompt = prompts[(index * requests_per_client + j) % len(prompts)]
                await _one_request(session, url, prompt, new_tokens, result)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        result.wall = time.perf_counter() - start
    return result


async def soak(
    url: str, prompts: list[str], clients: int, seconds: float, new_tokens: int
) -> Result:
    """Keep ``clients`` streams busy for ``seconds`` (memory-boundedness check)."""
    result = Result(f"soak {seconds:.0f}s, {clients} clients", clients=clients)
    deadline = time.perf_counter() + seconds
    async with _session(clients) as session:

        async def worker(index: int) -> None:
            j = 0
            while time.perf_counter() < deadline:
                prompt = prompts[(index + j) % len(prompts)]
                await _one_request(session, url, prompt, new_tokens, result)
                j += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        result.wall = time.perf_counter() - start
    return result
