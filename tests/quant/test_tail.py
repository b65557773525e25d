"""The float tail: the last layer's output quantizer and the points after it are left out."""

import torch
from torch import nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.quant.convert import QUANT_LAYER_TABLE, act_proxies, fold_for_quantization, quant_layers
from gan_brevitas.quant.tail import TAIL_NOTE, float_tail


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.body(x))
        return torch.tanh(self.head(h) + x)


def _sequential() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 3, 3, padding=1), nn.Tanh()).eval()


def test_the_last_conv_before_a_float_tanh_is_the_tail():
    folded = fold_for_quantization(_sequential())
    layers, points = float_tail(folded, tuple(QUANT_LAYER_TABLE), (nn.Tanh,))
    assert layers == {"2"}  # the LeakyReLU point feeds an int8 conv: not in the tail
    assert points == frozenset()


def test_a_residual_add_into_the_output_stays_float_and_the_body_does_not():
    folded = fold_for_quantization(_Residual())
    layers, points = float_tail(folded, tuple(QUANT_LAYER_TABLE))
    assert layers == {"head"}
    assert points == {"quant_add0_in0", "quant_add0_in1", "quant_add0_out"}


def test_default_leaves_the_tail_output_float_and_the_paper_quantizes_it():
    model, x = _sequential(), torch.rand(8, 3, 8, 8)
    ours = recipes.quantize(model, "vanilla-ptq", inputs=x, num_samples=8, progress=False)
    paper = recipes.quantize(model, "vanilla-ptq", config=QuantConfig.paper(), inputs=x, num_samples=8, progress=False)
    assert ("2", "output") not in {(n, s) for n, s, _ in act_proxies(ours)}
    assert ("2", "output") in {(n, s) for n, s, _ in act_proxies(paper)}
    last = dict(quant_layers(ours))["2"]
    assert last.input_quant.is_quant_enabled and not last.output_quant.is_quant_enabled
    assert TAIL_NOTE in recipes.describe(ours)


def test_an_untraceable_forward_keeps_every_quantizer():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) if float(x.mean()) > 0 else -self.conv(x)

    assert float_tail(Branchy(), tuple(QUANT_LAYER_TABLE)) == (frozenset(), frozenset())


def test_a_tail_model_saves_and_loads(tmp_path):
    model, x = _sequential(), torch.rand(8, 3, 8, 8)
    q = recipes.quantize(model, "vanilla-ptq", inputs=x, num_samples=8, progress=False)
    path = tmp_path / "q.safetensors"
    recipes.save(q, path)
    loaded = recipes.load(path, model=model)
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))
