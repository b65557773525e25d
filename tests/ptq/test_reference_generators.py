"""Conversion + vanilla PTQ on the three paper generators at small widths."""

import pytest
import torch

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.quant.convert import fold_for_quantization, quant_layers
from tests.helpers import relative_error

SMALL = {
    # Latent sizes near the reference ones: the paper's per-sample quantiles of a tiny latent
    # vector clip much more than those of a 128- or 512-dim one.
    "stylegan": dict(size=16, channels=32, code_dim=256, n_mlp=2, noise_mode="const"),
    "sagan": dict(image_size=32, z_dim=128, conv_dim=8),
    "cyclegan": dict(ngf=16, n_blocks=2, image_size=32),
}


def _inputs(model, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    if model.input_kind == "image":
        return torch.rand(n, model.in_channels, model.image_size, model.image_size, generator=g) * 2 - 1
    return torch.randn(n, model.latent_dim, generator=g)


def _image(output):
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("name", sorted(SMALL))
def test_vanilla_ptq_on_reference_generators(name):
    model = recipes.build_generator(name, **SMALL[name]).eval()
    x = _inputs(model)
    with torch.no_grad():
        # The folded copy is the reference: SAGAN's spectral norm moves u, v on every call.
        ref = _image(fold_for_quantization(model)(x))
        q8 = recipes.quantize(model, "vanilla-ptq", config=QuantConfig.paper(weight_bits=8), inputs=x, num_samples=16, progress=False)
        q4 = recipes.quantize(model, "vanilla-ptq", config=QuantConfig.paper(weight_bits=4), inputs=x, num_samples=16, progress=False)
        err8 = relative_error(_image(q8(x)), ref)
        err4 = relative_error(_image(q4(x)), ref)
    # Random-init AdaIN / InstanceNorm amplify every error, so the bound is relative.
    assert err8 < 0.6 * err4, (err8, err4)
    assert len(list(quant_layers(q8))) >= 3
    table = recipes.describe(q8)
    expected_float = {"stylegan": "AdaIN", "sagan": "self-attention", "cyclegan": "InstanceNorm"}[name]
    assert expected_float in table
    assert "no quantized mapping" not in table  # every conv-like layer was folded and mapped
