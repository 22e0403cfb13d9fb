"""Linear layers for inference (engine/onednn.py): copies of the weight that follow it."""

import copy

import pytest
import torch
import torch.nn.functional as F

from gpt_service.engine import onednn
from gpt_service.engine.hugepages import move_to_huge_pages

pytestmark = pytest.mark.skipif(not onednn.available(), reason="torch built without oneDNN")


def _switched(inputs: int = 48, outputs: int = 40) -> torch.nn.Linear:
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(inputs, outputs))
    assert onednn.use_onednn_linear(layer) == 1
    return layer[0]


@pytest.fixture(params=["transposed", "packed"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which copy a layer keeps for batched steps: small weights a transposed one (``mm``),
    larger ones oneDNN's packed one (here any weight counts as larger)."""
    if request.param == "packed":
        monkeypatch.setattr(onednn, "SMALL_WEIGHT", 0)
    return request.param


def test_rows_run_on_the_layers_copy_with_linears_result(kind: str) -> None:
    layer = _switched()
    assert isinstance(layer, onednn.OneDNNLinear)
    if kind == "transposed":
        assert layer._packed is None
        torch.testing.assert_close(layer.weight_t, layer.weight.t(), rtol=0, atol=0)
        assert layer.weight_t.is_contiguous()
    else:
        assert layer._packed is not None and layer.weight_t is None
    with torch.inference_mode():
        for shape in [(1, 48), (5, 48), (2, 7, 48), (6, 1, 48)]:
            x = torch.randn(shape)
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))


def test_the_size_rule_gives_small_weights_the_transposed_copy() -> None:
    small = torch.nn.Sequential(torch.nn.Linear(1024, 1024, bias=False))  # 1M weights
    large = torch.nn.Sequential(torch.nn.Linear(1024, 1025, bias=False))
    onednn.use_onednn_linear(small)
    onednn.use_onednn_linear(large)
    assert small[0].weight_t is not None and small[0]._packed is None
    assert large[0].weight_t is None and large[0]._packed is not None


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


@pytest.mark.parametrize("smallest", [True, False])
def test_prompts_read_the_plain_weight_or_the_smallest_copies(
    kind: str, smallest: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt's tokens skip the copy (it may not have been read for a while, see the
    module's docstring) unless it is the transposed copy of one of the smallest weights
    (``PROMPT_MM_WEIGHT``); rows of one token each (a batched decode step) use the copy."""
    if not smallest:
        monkeypatch.setattr(onednn, "PROMPT_MM_WEIGHT", 0)
    layer = _switched()
    if kind == "transposed":
        layer.weight_t = torch.zeros(48, 40)
    else:
        layer._packed = onednn.pack_weight(torch.zeros(40, 48))
    with torch.inference_mode():
        prompt = torch.randn(1, 7, 48)
        if kind == "transposed" and smallest:
            torch.testing.assert_close(layer(prompt), layer.bias.expand(1, 7, 40))
        else:
            torch.testing.assert_close(layer(prompt), F.linear(prompt, layer.weight, layer.bias))
        step = torch.randn(5, 1, 48)
        torch.testing.assert_close(layer(step), layer.bias.expand(5, 1, 40))


def test_weights_moved_onto_huge_pages_keep_their_transposed_copy() -> None:
    """The loader switches the layers first, then moves weights and copies alike onto huge
    pages (``hugepages.py``): a moved weight is the same weight, not copied again."""
    model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(4)])
    assert onednn.use_onednn_linear(model) == 4
    assert move_to_huge_pages(model) > 0
    first = model[0]
    moved = first.weight_t.data_ptr()
    x = torch.randn(3, 1, 512)
    with torch.inference_mode():
        torch.testing.assert_close(first(x), F.linear(x, first.weight, first.bias))
    assert first.weight_t.data_ptr() == moved  # not copied again off the huge pages
    with torch.no_grad():
        first.weight.mul_(2)  # changed in place: copied again
        torch.testing.assert_close(first(x), F.linear(x, first.weight, first.bias))
