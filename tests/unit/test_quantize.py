"""Weight-only int8 linear layers (engine/quantize.py) on real model code paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gpt_service.engine import loader, onednn
from gpt_service.engine.quantize import Int8Linear, is_quantized, quantize_int8
from gpt_service.errors import InvalidRequest
from tests.unit.test_runner import _compiled_run, _model, _prompts, _run, check_compiled_tokens


def test_an_int8_layer_is_close_to_its_float_layer() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 40)
    quantized = Int8Linear(layer)
    assert quantized.qweight.dtype == torch.int8 and quantized.qweight.shape == (40, 96)
    assert quantized.qweight.abs().max() == 127  # each row's largest weight uses the full range
    x = torch.randn(5, 96)
    with torch.no_grad():
        expected = layer(x)
        got = quantized(x)
    # per-channel int8: the error of each weight is at most half a step of its row's scale
    assert (got - expected).abs().max() < 0.02 * expected.abs().max()
    dequantized = quantized.qweight.float() * quantized.scale[:, None]
    torch.testing.assert_close(got, F.linear(x, dequantized, layer.bias))


@pytest.mark.skipif(not onednn.available(), reason="torch built without oneDNN")
@pytest.mark.parametrize("bf16", [False, True])
def test_each_product_takes_its_weight(bf16: bool) -> None:
    """One row: the int8 weight; rows of one token each (a batched decode step): the packed
    dequantized weight; a prompt's tokens: the int8 values as bfloat16 when ``bf16``."""
    torch.manual_seed(0)
    layer = Int8Linear(torch.nn.Linear(96, 40))
    layer.pack(bf16=bf16)
    assert layer._packed is not None and (layer._packed_bf16 is not None) == bf16
    dequantized = layer.dequantized()
    with torch.inference_mode():
        for shape in [(1, 96), (1, 1, 96), (5, 96), (6, 1, 96), (2, 7, 96)]:
            x = torch.randn(shape)
            expected = F.linear(x, dequantized, layer.bias)
            if bf16 and shape == (2, 7, 96):  # inputs and sums rounded to bfloat16
                rounded = F.linear(x.bfloat16().float(), layer.qweight.float()).bfloat16()
                torch.testing.assert_close(layer(x), rounded.float() * layer.scale + layer.bias)
                torch.testing.assert_close(layer(x), expected, rtol=0.02, atol=0.02)
            else:
                torch.testing.assert_close(layer(x), expected)
        zero = onednn.pack_weight(torch.zeros(40, 96))
        layer._packed = zero
        if bf16:
            layer._packed_bf16 = onednn.pack_weight(torch.zeros(40, 96, dtype=torch.bfloat16))
        for shape, reads_int8 in [((1, 96), True), ((3, 1, 96), False), ((1, 4, 96), False)]:
            out = layer(torch.randn(shape)) - layer.bias
            assert (out.abs().max() > 0) == reads_int8, shape


def test_a_model_keeps_its_answers_with_int8_layers(tiny_dir: Path) -> None:
    model = _model(tiny_dir, "tiny-llama")
    reference = _model(tiny_dir, "tiny-llama")
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert quantize_int8(model) == linears and is_quantized(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    ids = torch.tensor([_prompts(model.config.vocab_size)["b"]])
    with torch.inference_mode():
        got, expected = model(ids).logits, reference(ids).logits
    cosine = F.cosine_similarity(got.flatten(), expected.flatten(), dim=0)
    assert cosine > 0.999, float(cosine)


def test_int8_decode_gives_the_same_tokens_compiled_eager_alone_and_by_generate(
    tiny_dir: Path,
) -> None:
    """As for float models (test_runner): greedy tokens of the int8 model are the same in any
    batch, compiled or eager, and the same as transformers' ``generate`` on that model."""
    model = _model(tiny_dir, "tiny-llama")
    quantize_int8(model)
    check_compiled_tokens(model, model)


def test_lora_adapters_are_refused_on_an_int8_model(tiny_dir: Path, tmp_path: Path) -> None:
    model = _model(tiny_dir, "tiny-llama")
    quantize_int8(model)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(InvalidRequest, match="without quantization"):
        loader.attach_adapter(model, tmp_path, "a")


def test_float_and_int8_models_of_one_architecture_each_get_their_graphs(tiny_dir: Path) -> None:
    """dynamo keys its graphs on the step's code, and the model's modules are not guarded
    (``compiled.py``): a graph traced for float layers must not be taken for int8 ones, which
    have no ``weight`` (it failed there with KeyError: 'weight' and served eagerly)."""
    schedule = {0: [("a", 5, 6), ("c", 3, 4)]}
    float_model = _model(tiny_dir, "tiny-llama")
    int8_model = _model(tiny_dir, "tiny-llama")
    quantize_int8(int8_model)
    prompts = _prompts(float_model.config.vocab_size)
    for model in (float_model, int8_model, float_model):
        tokens, runner, _ = _compiled_run(model, schedule, prompts)
        assert runner.compiled is not None and runner.compiled.failed is None
        assert runner.compiled._direct  # its decode steps ran compiled
        eager, _, _ = _run(model, schedule, prompts)
        assert tokens == eager
