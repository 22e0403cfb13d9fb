"""A decode graph builds in the compile thread while the engine thread keeps stepping eagerly,
as in a server that answers during its first minute. With transformers >= 5.25 the attention
layers of Llama, Qwen2 and Mistral are wrapped by the ``kernels`` package, whose wrapper wrote
a variable that the trace in the other thread guarded on: the build failed ("Unexpected type
<class 'dict'>") and the server stayed eager for good (the demo model, on every fresh install).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.tiny_models import save_llama

ROOT = Path(__file__).resolve().parents[2]

# In a process of its own: the race needs dynamo's first, slow trace (a warm one in the test
# process is over before an eager step can interleave).
SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from transformers import AutoModelForCausalLM
    from gpt_service.engine.runner import ModelRunner
    from gpt_service.engine.sequence import Sequence
    from gpt_service.engine.types import SamplingParams

    model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
    runner = ModelRunner(model, torch.device("cpu"), pad_id=0)
    # The trace (and the guards built after it) raced with the eager steps: a backend that
    # returns the traced graph as it is keeps the test short.
    runner.enable_compile(lambda slots: 1, max_slots=4, backend=lambda gm, example: gm.forward)
    compiled = runner.compiled
    seq = Sequence(list(range(3, 33)), SamplingParams(temperature=0.0), emit=lambda d: None)
    steps = 0
    with torch.inference_mode():
        logits = runner.prefill([seq])
        deadline = time.monotonic() + 120
        while (1, 256) not in compiled._ready and compiled.failed is None:
            assert time.monotonic() < deadline
            seq.output_ids.append(int(logits[0].argmax()))
            logits = runner.decode([seq])  # eager until the graph is ready
            steps += 1
    own = [
        "forward" in vars(layer.self_attn) for layer in model.model.layers
    ]  # wrapped attention layers get their own forward back, before the first trace
    print(json.dumps({"failed": compiled.failed, "steps": steps, "own_forward": own}))
    """
)


def test_a_graph_builds_while_eager_steps_run(tmp_path: Path) -> None:
    model_dir = save_llama(tmp_path / "tiny")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["failed"] is None
    assert out["steps"] >= 10  # the build overlapped eager steps
    if importlib.util.find_spec("kernels") is not None:  # transformers' optional dependency
        assert all(out["own_forward"])
