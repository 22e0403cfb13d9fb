"""oneDNN linear layers (engine/onednn.py): packed weights that follow the layer's weight."""

import copy

import pytest
import torch
import torch.nn.functional as F

from gpt_service.engine import onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason="torch built without oneDNN")


def _switched(inputs: int = 48, outputs: int = 40) -> torch.nn.Linear:
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(inputs, outputs))
    assert onednn.use_onednn_linear(layer) == 1
    return layer[0]


def test_rows_run_on_the_packed_weight_with_linears_result() -> None:
    layer = _switched()
    assert isinstance(layer, onednn.OneDNNLinear) and layer._packed is not None
    with torch.inference_mode():
        for shape in [(1, 48), (5, 48), (2, 7, 48)]:
            x = torch.randn(shape)
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))


def test_a_weight_changed_in_place_is_packed_again() -> None:
    layer = _switched()
    x = torch.randn(6, 48)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2)
        layer.bias.mul_(2)
        torch.testing.assert_close(layer(x), 2 * before)


def test_a_deep_copy_packs_its_own_weight() -> None:
    layer = _switched()
    twin = copy.deepcopy(layer)  # as PEFT's modules_to_save does
    assert type(twin) is onednn.OneDNNLinear
    x = torch.randn(6, 48)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), layer(x))
        twin.weight.zero_()
        twin.bias.zero_()
        assert twin(x).abs().max() == 0
        assert layer(x).abs().max() > 0  # the original keeps its own packed weight


def test_training_takes_the_plain_linear_with_gradients() -> None:
    layer = _switched()
    x = torch.randn(6, 48)
    layer(x).sum().backward()
    assert layer.weight.grad is not None
    torch.testing.assert_close(layer.weight.grad, x.sum(0).expand(40, 48))


def test_prompts_read_the_plain_weight_and_decode_steps_the_packed_copy() -> None:
    """A prompt's tokens skip the packed copy (it may not have been read for a while, see the
    module's docstring); rows of one token each (a batched decode step) use it."""
    layer = _switched()
    layer._packed = onednn.pack_weight(torch.zeros(40, 48))
    layer._packed_from = (layer.weight.data_ptr(), layer.weight._version)  # kept as it is
    with torch.inference_mode():
        prompt = torch.randn(1, 7, 48)
        torch.testing.assert_close(layer(prompt), F.linear(prompt, layer.weight, layer.bias))
        step = torch.randn(5, 1, 48)
        torch.testing.assert_close(layer(step), layer.bias.expand(5, 1, 40))
