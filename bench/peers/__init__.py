"""The llama.cpp peers of the benchmark, on the same weights as the service.

Both come from the llama-cpp-python 0.3.36 sdist on PyPI, built once per machine by
``bench/peers/build.sh`` into a cache outside the checkout (``GS_PEERS_CACHE``, default
``~/.cache/gpt-service-peers``): llama-cpp-python in its own venv (one stream) and
``llama-server`` (continuous batching over parallel slots). Models are converted to GGUF by the
same sdist's ``convert_hf_to_gguf.py`` (see ``gguf_convert.py``) and cached next to the build.

``python -m bench.peers MODEL_DIR`` builds if needed and prints both peers' figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.stats import Result

logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SDIST = "llama_cpp_python-0.3.36"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("GS_PEERS_CACHE") or Path(base) / "gpt-service-peers")


def python() -> Path:
    return cache_dir() / "venv" / "bin" / "python"


def server_binary() -> Path:
    return cache_dir() / "llama-server-build" / "bin" / "llama-server"


def is_built() -> bool:
    if not python().exists():  # a machine that never built them
        return False
    ok = subprocess.run([python(), "-c", "import llama_cpp"], capture_output=True).returncode == 0
    return ok and server_binary().exists() and (cache_dir() / "src" / SDIST).is_dir()


def build() -> Path:
    """Build the peers if needed (~15 min the first time on 2 cores); returns the cache dir."""
    if not is_built():
        logger.info("building the llama.cpp peers into %s (once per machine)", cache_dir())
    out = subprocess.run([HERE / "build.sh"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def to_gguf(model_dir: Path, outtype: str = "f32") -> Path:
    """Convert an HF model directory to GGUF (``f32``, ``q8_0``...), cached per model version."""
    model_dir = Path(model_dir).resolve()
    stamp = hashlib.sha1(str(model_dir).encode())
    for f in sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]:
        stamp.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    out = cache_dir() / f"{model_dir.name}-{stamp.hexdigest()[:10]}.{outtype}.gguf"
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    subprocess.run(
        [python(), HERE / "gguf_convert.py", model_dir, "--outfile", tmp, "--outtype", outtype],
        cwd=cache_dir() / "src" / SDIST / "vendor" / "llama.cpp",
        check=True,
        capture_output=True,
    )
    tmp.rename(out)
    return out


def repacks(gguf: Path) -> bool:
    """Whether llama.cpp may repack ``gguf``'s weights for this CPU. Not Q8_0: on the Xeon
    with AMX it was measured on, the repacked (AMX) Q8_0 path died with SIGSEGV on the first
    prompt of more than one token (llama-cpp-python 0.3.36); without repacking Q8_0 runs
    llama.cpp's AVX-512 VNNI kernels."""
    return ".q8_0." not in gguf.name


def one_stream(gguf: Path, prompts: list[str], new_tokens: int, threads: int = 2) -> dict:
    """llama.cpp one stream over ``prompts`` in turn: ``{"requests": [{tokens, ttft, latency}]}``."""
    repack = "repack" if repacks(gguf) else "no-repack"
    out = subprocess.run(
        [python(), HERE / "one_stream.py", gguf, str(new_tokens), str(threads), repack],
        input=json.dumps(prompts),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(
    gguf: Path, parallel: int = 16, ctx_per_slot: int = 256, threads: int = 2
) -> Iterator[str]:
    """A ``llama-server`` on 127.0.0.1 with ``parallel`` slots; yields its base URL."""
    port = _free_port()
    cmd = [
        server_binary(), "-m", gguf, "--host", "127.0.0.1", "--port", str(port),
        "-np", str(parallel), "-c", str(parallel * ctx_per_slot), "-t", str(threads),
        "--no-webui", *([] if repacks(gguf) else ["--no-repack"]),
    ]  # fmt: skip
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server did not become healthy in 120 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_stream_result(gguf: Path, prompts: list[str], new_tokens: int) -> Result:
    """llama.cpp one stream as a benchmark row (each prompt in turn, like 1 client)."""
    result = Result("5. llama.cpp one stream", clients=1)
    for r in one_stream(gguf, prompts, new_tokens)["requests"]:
        itl = (r["latency"] - r["ttft"]) / max(r["tokens"] - 1, 1)
        result.add_request(r["tokens"], r["ttft"], [itl] * (r["tokens"] - 1), r["latency"])
    result.wall = sum(result.latencies)
    return result
