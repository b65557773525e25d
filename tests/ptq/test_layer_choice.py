"""weight_range="auto": each layer gets the estimator of least layer-output error, recorded in
the config so that save/load rebuilds the same quantizers."""

import torch
from torch import nn

from gan_brevitas import recipes
from gan_brevitas.ptq.layer_choice import AUTO_CANDIDATES, choose_weight_ranges
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers, quantize_model


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    with torch.no_grad():
        # heavy tails: min-max wastes the 4-bit grid on a few weights
        model[0].weight.copy_(torch.distributions.StudentT(1.5).sample((64, 8)) * 0.1)
        # every row already on its min-max grid (values k/7 * row max): min-max is exact
        model[2].weight.copy_(torch.randint(-7, 8, (64, 64)).float() / 7 * 0.2)
        model[2].weight[:, 0] = 0.2
    return model


def _layer_errors(model, x, config):
    """Per layer: squared layer-output error of its quantized weight on the float input."""
    quantized = dict(quant_layers(quantize_model(model, config)))
    errors, inputs = {}, {}
    handles = [model[int(n)].register_forward_hook(lambda m, a, o, n=n: inputs.__setitem__(n, a[0])) for n in quantized]
    with torch.no_grad():
        model(x)
        for name, layer in quantized.items():
            float_layer = model[int(name)]
            out = nn.functional.linear(inputs[name], layer.quant_weight().value, float_layer.bias)
            errors[name] = float((out - float_layer(inputs[name])).square().sum())
    for handle in handles:
        handle.remove()
    return errors


def test_auto_picks_the_estimator_of_least_layer_output_error():
    model = _model()
    x = torch.randn(16, 8)
    base = QuantConfig(weight_bits=4, per_channel=True, weight_range="auto")
    resolved = choose_weight_ranges(model, base, x, num_samples=16)
    choice = {name: resolved.for_layer(name).weight_range for name in ("0", "2", "4")}
    per_kind = {kind: _layer_errors(model, x, base.replace(weight_range=kind)) for kind in AUTO_CANDIDATES}
    for name, kind in choice.items():
        assert per_kind[kind][name] == min(per_kind[k][name] for k in AUTO_CANDIDATES)
    assert choice["0"] != "minmax"
    assert choice["2"] == "minmax"  # exact on the grid; ties keep min-max


def test_auto_choice_is_recorded_and_survives_save_and_load(tmp_path):
    model = _model()
    x = torch.randn(32, 8)
    qmodel = recipes.quantize(model, "vanilla-ptq", config=QuantConfig(weight_bits=4, weight_range="auto"),
                              inputs=x, num_samples=32, progress=False)
    config = qmodel.gan_brevitas.config
    assert config.weight_range == "auto"
    assert {pattern for pattern, _ in config.layers} == {"0", "2", "4"}
    recipes.save(qmodel, tmp_path / "auto.safetensors")
    loaded = recipes.load(tmp_path / "auto.safetensors", model=_model())
    assert loaded.gan_brevitas.config == config
    with torch.no_grad():
        assert torch.equal(loaded(x), qmodel(x))
