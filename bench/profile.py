"""Where a token's time goes: ``python -m bench.profile`` (see ``--help``).

Three views of the same decode work, on the demo model (or ``--model-dir``):

- ``inproc``: one stream through the engine in this process (no HTTP), tok/s;
- ``http``: the service in a child process with 1 and with N streaming clients, tok/s, what
  each busy server thread did (on a CPU, runnable but waiting for one, context switches), and
  with ``--pyspy`` (``pip install py-spy``) sampling the server: the top functions by own time
  and the share of each thread (engine, event loop, compile) in ``<out>/*.txt``;
- ``--variant NAME:K=V,...`` (repeated): an A/B run instead, one server per variant (its
  environment: ``PYTHONPATH=/other/checkout/src`` runs another version of the code) side by
  side, one client (``--clients``), ``--rounds`` interleaved rounds, medians and ratios to the
  first variant (and to llama.cpp one stream on the same weights with ``--peer``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.load import run_clients
from bench.prompts import make_prompts
from bench.stats import percentile
from gpt_service.config import DEMO_MODEL_DIR

logger = logging.getLogger("bench.profile")


async def _inproc(
    model_dir: Path, data_dir: Path, prompts: list[str], new_tokens: int, compile_: bool
) -> float:
    """One stream through ``LoadedModel`` in this process (the engine thread + this loop)."""
    from gpt_service.config import Settings
    from gpt_service.engine import loader
    from gpt_service.engine.loaded import load_local
    from gpt_service.engine.types import SamplingParams

    settings = Settings(data_dir=data_dir)
    settings.engine.compile = compile_
    threads = loader.set_num_threads(settings.engine.num_threads)
    model = await asyncio.to_thread(load_local, settings, "m", str(model_dir), None, threads)
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    try:
        deadline = time.monotonic() + 600
        while compile_ and time.monotonic() < deadline:  # warm: until the 1-slot graph is ready
            await model.generate(model.encode(prompts[0]), params)
            compiled = model.engine.runner.compiled
            if compiled is None or compiled.failed or compiled._ready:
                break
            await asyncio.sleep(1)
        start = time.perf_counter()
        tokens = 0
        for prompt in prompts:
            out = await model.generate(model.encode(prompt), params)
            tokens += out.completion_tokens
        return tokens / (time.perf_counter() - start)
    finally:
        model.engine.stop()


def _pyspy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [exe, "record", "-p", str(pid), "-r", "250", "-d", str(int(seconds)), "--threads"]
    cmd += ["-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, top: int = 25) -> str:
    """Own-time and inclusive-time tables from py-spy's collapsed stacks, per thread."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n
        own[frames[-1]] += n
        for f in set(frames[1:]):
            incl[f] += n
    lines = [f"samples {total}", "threads:"]
    lines += [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common(8)]
    lines.append("own time:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in incl.most_common(top * 2)]
    return "\n".join(lines)


def _threads(pid: int) -> dict[int, tuple[int, int, int, int]]:
    """Per thread of ``pid`` (Linux): nanoseconds on a CPU and waiting runnable for one
    (``schedstat``), voluntary and involuntary context switches."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            run, wait, _ = map(int, Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split())
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
        except OSError:  # the thread ended
            continue
        fields = dict(line.split(":\t", 1) for line in status if ":\t" in line)
        switches = int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"])
        out[int(tid)] = (run, wait, *switches)
    return out


def cpu_split(pid: int, before: dict[int, Any], after: dict[int, Any], wall: float) -> str:
    """What each busy server thread did over ``wall`` seconds: on a CPU, runnable but waiting
    for one (the cores were taken), and context switches per second."""
    lines = []
    deltas = {
        tid: [a - b for a, b in zip(now, before.get(tid, (0, 0, 0, 0)), strict=True)]
        for tid, now in after.items()
    }
    for tid, (run, wait, vol, invol) in sorted(deltas.items(), key=lambda kv: -kv[1][0]):
        if run < 0.02 * wall * 1e9:
            continue
        lines.append(
            f"  thread {tid}{' (main)' if tid == pid else ''}: on a CPU {run / wall / 1e9:.0%}, "
            f"runnable-waiting {wait / wall / 1e9:.0%}, switches/s {vol / wall:.0f} voluntary "
            f"{invol / wall:.0f} involuntary"
        )
    return "\n".join(lines)


def _server_env(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """The served model's environment (compile switch, ``--env``) and ``serve`` arguments."""
    env = {"GPT_SERVICE_ENGINE__COMPILE": "false" if args.no_compile else "true"}
    env.update(kv.split("=", 1) for kv in args.env)  # type: ignore[misc]
    extra: list[str] = []
    if args.model_dir != DEMO_MODEL_DIR:
        env["GPT_SERVICE_MODEL_DIRS"] = json.dumps([str(args.model_dir.parent)])
        extra = ["--model", args.model_dir.name, "--model-path", str(args.model_dir)]
    return env, extra


def _http(args: argparse.Namespace, prompts: list[str]) -> dict[str, Any]:
    from bench.run import _warm_compiled
    from tests.server import start_server

    env, extra = _server_env(args)
    figures: dict[str, Any] = {}
    with start_server(Path(args.work_dir) / "data", *extra, env=env) as server:
        _warm_compiled(server, prompts, args.clients, args.new_tokens)
        for clients in args.clients:
            per_client = args.per_client or max(2, 32 // clients)
            probe = asyncio.run(run_clients(server.url, prompts, clients, 1, args.new_tokens))
            seconds = probe.wall * per_client + 2
            raw = args.out / f"http-{clients}.raw"
            spy = _pyspy(server.process.pid, seconds, raw) if args.pyspy else None
            time.sleep(0.5 if spy else 0)
            before, start = _threads(server.process.pid), time.perf_counter()
            result = asyncio.run(
                run_clients(server.url, prompts, clients, per_client, args.new_tokens)
            )
            split = cpu_split(
                server.process.pid,
                before,
                _threads(server.process.pid),
                time.perf_counter() - start,
            )
            logger.info("%d clients, server threads:\n%s", clients, split)
            figures[f"http {clients} clients tok/s"] = round(result.throughput, 1)
            figures[f"http {clients} clients ITL p50 ms"] = round(
                percentile(result.itls, 50) * 1000, 2
            )
            if spy is not None:
                spy.wait()
                text = summarize(raw)
                (args.out / f"http-{clients}.txt").write_text(text)
                logger.info("%d clients, py-spy:\n%s", clients, text[:3000])
    return figures


def _variant(spec: str) -> tuple[str, dict[str, str]]:
    """``name:K=V,K=V`` (or ``name`` alone: the defaults)."""
    name, _, rest = spec.partition(":")
    return name, dict(kv.split("=", 1) for kv in rest.split(",") if kv)  # type: ignore[misc]


def _ab(args: argparse.Namespace, prompts: list[str]) -> dict[str, Any]:
    """Servers of each ``--variant`` side by side, one client at a time, interleaved rounds
    (the order rotates each round); medians, and each variant's ratio to the first (and to
    llama.cpp one stream on the same weights with ``--peer``)."""
    from bench import peers
    from bench.run import _warm_compiled
    from tests.server import start_servers

    variants = [_variant(v) for v in args.variant]
    base, extra = _server_env(args)
    ggufs = {f"llama.cpp {t}": peers.to_gguf(args.model_dir, t) for t in args.peer}
    clients = args.clients[0]
    per_client = args.per_client or max(2, 32 // clients)
    runs: dict[str, list[Any]] = {name: [] for name in [n for n, _ in variants] + list(ggufs)}
    data_dir = Path(args.work_dir) / "data"
    with start_servers(data_dir, *extra, envs=[{**base, **env} for _, env in variants]) as servers:
        for server in servers:
            _warm_compiled(server, prompts, [clients], args.new_tokens)
        for r in range(args.rounds):
            order = list(range(len(variants)))
            order = order[r % len(order) :] + order[: r % len(order)]
            for i in order:
                result = asyncio.run(
                    run_clients(servers[i].url, prompts, clients, per_client, args.new_tokens)
                )
                runs[variants[i][0]].append(result)
            for peer, gguf in ggufs.items():
                runs[peer].append(peers.one_stream_result(gguf, prompts, args.new_tokens))
            logger.info(
                "round %d: %s", r + 1, {k: round(v[-1].throughput, 1) for k, v in runs.items() if v}
            )
    figures: dict[str, Any] = {}
    first = variants[0][0]
    for name, results in runs.items():
        if not results:
            continue
        tps = [x.throughput for x in results]
        figures[f"{name} tok/s"] = round(statistics.median(tps), 1)
        figures[f"{name} ITL p50 ms"] = round(
            statistics.median(percentile(x.itls, 50) for x in results) * 1000, 3
        )
        figures[f"{name} TTFT p50 ms"] = round(
            statistics.median(percentile(x.ttfts, 50) for x in results) * 1000, 2
        )
        for other in (first, *ggufs):
            if other != name and runs[other]:
                ratios = [
                    a.throughput / b.throughput for a, b in zip(results, runs[other], strict=True)
                ]
                figures[f"{name} / {other}"] = round(statistics.median(ratios), 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEMO_MODEL_DIR)
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--no-inproc", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="name:K=V,... server env of one side of an A/B run (repeat; runs only the A/B)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds")
    parser.add_argument(
        "--per-client", type=int, default=0, help="requests per client (and A/B round)"
    )
    parser.add_argument(
        "--peer",
        nargs="?",
        const=["f32"],
        default=[],
        type=lambda s: s.split(",") if s else [],
        help="A/B: llama.cpp one stream too, on GGUF f32 (or the types given: f32,q8_0)",
    )
    parser.add_argument("--pyspy", action="store_true", help="sample the server with py-spy")
    parser.add_argument("--work-dir", default="/tmp/gpt-service-profile")
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpt-service-profile/out"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "OMP_WAIT_POLICY" not in os.environ:  # as ``gpt-service serve`` (before torch loads)
        os.environ.setdefault("GOMP_SPINCOUNT", "100000")
    os.environ.update(kv.split("=", 1) for kv in args.env)  # in-process too
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = make_prompts(16)
    figures: dict[str, Any] = {}
    if args.variant:
        print(json.dumps(_ab(args, prompts), indent=1))
        return
    if not args.no_http:
        figures.update(_http(args, prompts))
    if not args.no_inproc:
        data_dir = Path(args.work_dir) / "data"  # the server's: its inductor cache
        inproc = _inproc(args.model_dir, data_dir, prompts, args.new_tokens, not args.no_compile)
        tps = asyncio.run(inproc)
        figures["in-process 1 stream tok/s"] = round(tps, 1)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
