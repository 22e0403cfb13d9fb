"""One command, side by side in one run: ``python -m bench.run`` (see ``--help``).

For each model: (1) sequential ``model.generate``, (2) a static padded batch, (3) transformers'
``generate_batch``, (4) the service over HTTP with 1/4/16/64 streaming clients arriving over
time, and the llama.cpp peers on the same weights (GGUF f32, see ``bench/peers``): (5)
llama.cpp one stream, (6) llama-server with the same clients. Writes
``bench/results/<model>.md`` and ``.png`` and prints the ratios and the targets.
``--quantization int8`` serves int8 weights against the peers on GGUF Q8_0
(``bench/results/<model>-int8.md``).

The service's compiled decode graphs are built (or loaded from the inductor cache under the
work directory) during a warm-up before anything is measured.

The baselines are plain transformers with torch's default threads and OpenMP policy (what
``model.generate`` gets); the server runs with the CLI's settings (see ``gpt_service.cli.main``).
Each client count runs at least 8 requests per client, so the rows measure steady load rather
than the ramp-up of arrivals and the tail of the last answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from bench import baselines, peers
from bench.load import LLAMA_SERVER, RssSampler, run_clients, soak
from bench.prompts import build_random_100m, make_prompts
from bench.report import write_report
from bench.stats import Result
from gpt_service.config import DEMO_MODEL_DIR
from tests.server import start_server

logger = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results"


def _service_row(
    server_url: str, pid: int, prompts: list[str], clients: int, args: argparse.Namespace
) -> Result:
    per_client = max(args.min_per_client, args.requests // clients)
    # One short untimed request per client first, as llama.cpp's one stream gets its warm-up
    # (``peers/one_stream.py``): the server sits idle through the in-process baselines, and a
    # first request after an idle spell runs on cold caches (a demo prompt after 1.3 s idle:
    # 40-66 ms in-process against 5-10 back to back).
    asyncio.run(run_clients(server_url, prompts, clients, 1, 8))
    with RssSampler(pid) as rss:
        result = asyncio.run(run_clients(server_url, prompts, clients, per_client, args.new_tokens))
    result.peak_rss_mb = rss.peak / 2**20
    if server_url.startswith(LLAMA_SERVER):
        result.name = f"6. llama-server, {clients} clients"
        result.peak_rss_mb = float("nan")  # ``pid`` is the service's, not llama-server's
    logger.info("%s -> %.1f tok/s", result.name, result.throughput)
    return result


# The server's log lines when it gives up compiling (the decode graphs, the prefill graphs).
GAVE_UP = ("serving eagerly", "compiled prefill disabled")


def _warm_compiled(
    server: Any, prompts: list[str], clients: list[int], new_tokens: int = 64
) -> None:
    """Warm-up waves until no graph (decode or prefill) is being compiled and a wave starts
    no new one. A wave's requests are as long as the measured ones, two per client (the
    shapes a round meets follow the sequences' lengths and how they overlap)."""
    for _ in range(20):
        before = server.log().count("compiling the ")
        for c in sorted({1, *clients}):
            asyncio.run(run_clients(server.url, prompts, c, 2, new_tokens))
        for _ in range(600):  # each graph takes ~20-60 s on 2 busy cores
            log = server.log()
            started = log.count("compiling the ")
            failed = sum(log.count(text) for text in GAVE_UP)
            if started == log.count(" ready in ") + failed:
                break
            time.sleep(1)
        if started == before:
            logger.info("compiled decode graphs ready: %d", started)
            for line in log.splitlines():  # the figures that follow are not the compiled ones
                if any(text in line for text in GAVE_UP):
                    logger.error("the server gave up compiling: %s", line)
            return


def _startup_seconds(data_dir: Path, extra: list[str], env: dict[str, str]) -> float:
    """From ``gpt-service serve`` on a fresh data directory to the first answer (64 tokens)."""
    fresh = data_dir.parent / f"{data_dir.name}-fresh-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    start = time.perf_counter()
    with start_server(fresh, *extra, env=env) as server:
        asyncio.run(run_clients(server.url, ["你好，请介绍一下人工智能。"], 1, 1, 64))
        seconds = time.perf_counter() - start
    shutil.rmtree(fresh, ignore_errors=True)
    logger.info("start-up to the first answer on a fresh data directory: %.1f s", seconds)
    return seconds


def _peer_gguf(args: argparse.Namespace, model_dir: Path) -> Path | None:
    if args.no_peers:
        return None
    if not peers.is_built() and not args.build_peers:
        logger.warning("llama.cpp peers not built (bench/peers/build.sh or --build-peers): skipped")
        return None
    peers.build()
    # The service's int8 layers against llama.cpp's 8-bit type (Q8_0), float32 against f32.
    return peers.to_gguf(model_dir, "q8_0" if args.quantization == "int8" else "f32")


def _one_stream(gguf: Path, prompts: list[str], new_tokens: int) -> Result:
    result = peers.one_stream_result(gguf, prompts, new_tokens)
    logger.info("%s -> %.1f tok/s", result.name, result.throughput)
    return result


def _baseline(fn, model: Any, tokenizer: Any, prompts: list[str], new_tokens: int) -> Result:
    with RssSampler(os.getpid(), interval=0.05, children=False) as rss:  # not the server
        result = fn(model, tokenizer, prompts, new_tokens)
    result.peak_rss_mb = rss.peak / 2**20
    logger.info("%s -> %.1f tok/s", result.name, result.throughput)
    return result


def run_model(
    args: argparse.Namespace, name: str, model_dir: Path, prompts: list[str]
) -> tuple[list[Result], list[dict[str, Result]], list[str]]:
    """Baselines in this process, the service in a child process, measured in turns.

    The rows the targets compare (sequential, static batch, 1 and 16 clients) run in
    ``args.rounds`` interleaved rounds, so a slow spell of the machine hits both sides of a
    ratio; the table shows the median round. The other rows run once.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    data_dir = Path(args.work_dir) / f"data-{name}"
    extra = [] if model_dir == DEMO_MODEL_DIR else ["--model", name, "--model-path", str(model_dir)]
    env = {"GPT_SERVICE_MODEL_DIRS": json.dumps([str(model_dir.parent)])}
    env["GPT_SERVICE_ENGINE__COMPILE"] = "false" if args.no_compile else "true"
    env["GPT_SERVICE_ENGINE__QUANTIZATION"] = args.quantization
    gguf = _peer_gguf(args, model_dir)
    startup = _startup_seconds(data_dir, extra, env)
    rounds: list[dict[str, Result]] = []
    others: dict[int | str, Result] = {}
    with start_server(data_dir, *extra, env=env) as server, contextlib.ExitStack() as stack:
        pid = server.process.pid
        # Warm-up, so one-time costs (graph compilation included) are not charged to any row.
        _warm_compiled(server, prompts, args.clients, args.new_tokens)
        _baseline(baselines.sequential, model, tokenizer, prompts[:2], 8)
        peer_url = ""
        if gguf is not None:
            url = stack.enter_context(peers.llama_server(gguf, parallel=16))
            peer_url = LLAMA_SERVER + url
            asyncio.run(run_clients(peer_url, prompts, 2, 1, 8))
        for i in range(args.rounds):
            logger.info("%s: round %d of %d", name, i + 1, args.rounds)
            row = {
                "seq": _baseline(baselines.sequential, model, tokenizer, prompts, args.new_tokens),
                "static": _baseline(
                    baselines.static_batch, model, tokenizer, prompts, args.new_tokens
                ),
                "1": _service_row(server.url, pid, prompts, 1, args),
                "16": _service_row(server.url, pid, prompts, 16, args),
            }
            if gguf is not None:
                row["cpp1"] = _one_stream(gguf, prompts, args.new_tokens)
                row["srv1"] = _service_row(peer_url, pid, prompts, 1, args)
                row["srv16"] = _service_row(peer_url, pid, prompts, 16, args)
            rounds.append(row)
        stack.close()  # the 16-slot llama-server
        for clients in args.clients:
            if clients not in (1, 16):
                others[clients] = _service_row(server.url, pid, prompts, clients, args)
                if gguf is not None:
                    with peers.llama_server(gguf, parallel=clients) as url:
                        others[f"srv{clients}"] = _service_row(
                            LLAMA_SERVER + url, pid, prompts, clients, args
                        )
        soaked = None
        if args.soak_seconds:
            with RssSampler(pid, interval=1.0) as rss:
                soaked = asyncio.run(
                    soak(server.url, prompts, 16, args.soak_seconds, args.new_tokens)
                )
            soaked.peak_rss_mb = rss.peak / 2**20
            soaked.note = (
                f"RSS start {rss.samples[0] / 2**20:.0f} MB, end {rss.samples[-1] / 2**20:.0f} MB"
            )
    # transformers' generate_batch is slow, reserves ~8 GB and is shown for reference only.
    hf_batch = None
    if not args.no_generate_batch:
        hf_batch = _baseline(baselines.hf_continuous, model, tokenizer, prompts, args.new_tokens)
    del model
    gc.collect()
    median = sorted(rounds, key=lambda r: r["16"].throughput / r["seq"].throughput)[
        (len(rounds) - 1) // 2
    ]
    service = {1: median["1"], 16: median["16"], **others}
    results = [median["seq"], median["static"], *([hf_batch] if hf_batch else [])]
    results += [service[c] for c in sorted(c for c in service if isinstance(c, int))]
    results += [median[k] for k in ("cpp1", "srv1", "srv16") if k in median]
    results += [others[k] for k in others if isinstance(k, str)]
    if soaked is not None:
        results.append(soaked)
    met = "met" if startup <= 15 else "MISSED"
    notes = [f"- `gpt-service serve` to the first answer, fresh data directory: {startup:.1f} s "
             f"(target <= 15 s: {met})"]  # fmt: skip
    return results, rounds, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="demo,random-100m", help="demo and/or random-100m")
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument(
        "--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 64]
    )
    parser.add_argument(
        "--requests", type=int, default=16, help="requests per client count (at least 8 per client)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the target rows"
    )
    parser.add_argument("--soak-seconds", type=float, default=0)
    parser.add_argument("--min-per-client", type=int, default=8, help="requests per client")
    parser.add_argument(
        "--no-generate-batch", action="store_true", help="skip transformers' generate_batch"
    )
    parser.add_argument(
        "--quick", action="store_true", help="iterate: 1 round, 1 and 16 clients, 2 requests each"
    )
    parser.add_argument("--no-compile", action="store_true", help="the service decodes eagerly")
    parser.add_argument(
        "--quantization",
        choices=["none", "int8"],
        default="none",
        help="the service's weights; int8 runs the peers on GGUF Q8_0 (results: <model>-int8)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip llama.cpp / llama-server")
    parser.add_argument(
        "--build-peers", action="store_true", help="build the peers if needed (~15 min, once)"
    )
    parser.add_argument("--work-dir", default="/tmp/gpt-service-bench")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the .md/.png go")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.clients, args.min_per_client, args.requests = 1, [1, 16], 2, 2
        args.no_generate_batch = True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = make_prompts(args.num_prompts)
    for name in args.models.split(","):
        model_dir = (
            DEMO_MODEL_DIR
            if name == "demo"
            else build_random_100m(Path(args.work_dir) / "models" / name, DEMO_MODEL_DIR)
        )
        results, rounds, notes = run_model(args, name, model_dir, prompts)
        if args.quantization != "none":
            notes.append(
                f"- the service with {args.quantization} weights, llama.cpp and llama-server on "
                "GGUF Q8_0; the transformers baselines in float32"
            )
            name = f"{name}-{args.quantization}"
        write_report(args.out, name, results, args, rounds, notes)  # prints the table and targets


if __name__ == "__main__":
    main()
