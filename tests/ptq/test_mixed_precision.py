"""Sensitivity and mixed precision: the table, the budget, and a model that saves, loads and
describes its per-layer bits."""

import pytest
import torch

from gan_brevitas import recipes
from gan_brevitas.errors import ConfigError
from gan_brevitas.methods import MixedPrecision
from gan_brevitas.ptq.mixed_precision import assign_bits, effective_bits, weight_bytes
from gan_brevitas.ptq.sensitivity import SensitivityRow, SensitivityTable, plot_sensitivity
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import quant_layers
from tests.helpers import dcgan_generator

Z = torch.randn(24, 16, generator=torch.Generator().manual_seed(0))
FAST = QuantConfig(act_range="minmax", weight_range="minmax", per_channel=True)


def test_sensitivity_table_has_every_layer_and_fewer_bits_hurt_more(tmp_path):
    table = recipes.sensitivity(dcgan_generator(), inputs=Z, bits=(2, 8), config=FAST, num_samples=8)
    assert table.layers == ["1", "4", "7"]
    for layer in table.layers:
        assert table.mse(layer, 2) > table.mse(layer, 8) > 0
    params = table.params()
    assert params == {"1": 16 * 32 * 16, "4": 32 * 16 * 16, "7": 16 * 3 * 16}
    assert "| 1 | LatentProjection | 8192 |" in table.to_markdown()  # the 1x1-latent ConvTranspose, as a Linear
    assert plot_sensitivity(table, tmp_path / "s.png").stat().st_size > 1000


def _table(mse4: dict, params: dict) -> SensitivityTable:
    rows = [SensitivityRow(n, "Conv2d", params[n], b, (mse4[n] if b == 4 else 0.0), 0.0) for n in params for b in (4, 8)]
    return SensitivityTable(tuple(rows), 2.0)


def test_greedy_lowers_the_cheapest_error_per_byte_first_and_meets_the_budget():
    params = {"a": 1000, "b": 1000, "c": 2000}
    table = _table({"a": 1.0, "b": 0.1, "c": 0.5}, params)  # per byte: b < c (0.5/1000) < a
    assert assign_bits(table, (4, 8), effective=7.0) == {"a": 8, "b": 4, "c": 8}
    # lowering c after b leaves 500 bytes spare: b goes back up to 8 bits
    chosen = assign_bits(table, (4, 8), effective=6.0)
    assert chosen == {"a": 8, "b": 8, "c": 4}
    assert effective_bits(chosen, params) == 6.0
    assert weight_bytes(chosen, params) == (1000 * 8 + 1000 * 8 + 2000 * 4) / 8
    assert assign_bits(table, (4, 8), max_bytes=3000) == {"a": 8, "b": 8, "c": 4}
    assert assign_bits(table, (4, 8), max_bytes=2999) == {"a": 8, "b": 4, "c": 4}
    assert assign_bits(table, (4, 8), max_bytes=4000) == {"a": 8, "b": 8, "c": 8}
    with pytest.raises(ConfigError, match="cannot be met"):
        assign_bits(table, (4, 8), effective=3.5)


def test_the_room_a_large_layer_leaves_goes_to_the_layers_that_gain_most_per_byte():
    # one large layer (as a DCGAN's first) must drop to 4 bits; that undershoots the 5-bit budget
    params = {"big": 8000, "s1": 500, "s2": 500, "s3": 1000}
    rows = [SensitivityRow(n, "Conv2d", params[n], b, mse, 0.0) for n, by_bits in {
        "big": {4: 0.1, 6: 0.01, 8: 0.0}, "s1": {4: 1.0, 6: 0.5, 8: 0.0},
        "s2": {4: 0.2, 6: 0.1, 8: 0.0}, "s3": {4: 3.0, 6: 1.0, 8: 0.0}}.items() for b, mse in by_bits.items()]
    table = SensitivityTable(tuple(rows), 2.0)
    chosen = assign_bits(table, (4, 6, 8), effective=5.0)
    assert chosen["big"] == 4
    assert effective_bits(chosen, params) <= 5.0
    # the 2500 spare bytes: s3 up to 8 (2 x 250 bytes, most error per byte), then s1, then s2
    assert chosen == {"big": 4, "s1": 8, "s2": 8, "s3": 8}
    assert weight_bytes(chosen, params) == (8000 * 4 + 2000 * 8) / 8


def test_uniform_assignment_is_the_highest_bits_that_fit():
    from gan_brevitas.ptq.mixed_precision import uniform_bits

    params = {"a": 1000, "b": 3000}
    assert uniform_bits(params, (4, 5, 6, 8), 5.0 * 4000 / 8) == {"a": 5, "b": 5}
    assert uniform_bits(params, (4, 8), 5.0 * 4000 / 8) == {"a": 4, "b": 4}
    assert uniform_bits(params, (4, 8), 3.0 * 4000 / 8) is None


def test_protected_layers_keep_the_top_bits_and_the_others_pay_for_the_budget():
    params = {"first": 100, "mid": 4000, "last": 100}
    table = _table({"first": 0.0, "mid": 1.0, "last": 0.0}, params)  # the ends look free to lower
    chosen = assign_bits(table, (4, 8), effective=5.0, protected=("first", "last"))
    assert chosen["first"] == chosen["last"] == 8
    assert chosen["mid"] == 4
    assert effective_bits(chosen, params) <= 5.0
    with pytest.raises(ConfigError, match="protect_ends=False"):
        assign_bits(table, (4, 8), effective=4.0, protected=("first", "last"))


@pytest.mark.parametrize("budget", [dict(effective_bits=5.0), dict(max_bytes=13000)])
def test_mixed_precision_model_respects_budget_saves_loads_and_describes(tmp_path, budget):
    model = dcgan_generator()
    qmodel = recipes.quantize(model, "mixed-precision", config=FAST, inputs=Z, num_samples=16,
                              sensitivity_samples=8, progress=False, bits=(4, 8), protect_ends=False, **budget)
    bits = {name: int(layer.quant_weight().bit_width) for name, layer in quant_layers(qmodel)}
    params = {name: layer.weight.numel() for name, layer in quant_layers(qmodel)}
    assert set(bits.values()) <= {4, 8} and 4 in bits.values()
    if "effective_bits" in budget:
        assert effective_bits(bits, params) <= 5.0
    else:
        assert weight_bytes(bits, params) <= 13000
    config = qmodel.gan_brevitas.config
    assert {name: config.for_layer(name).weight_bits for name in bits} == bits
    recipes.save(qmodel, tmp_path / "mp.safetensors")
    loaded = recipes.load(tmp_path / "mp.safetensors", model=dcgan_generator())
    assert {name: int(layer.quant_weight().bit_width) for name, layer in quant_layers(loaded)} == bits
    with torch.no_grad():
        assert torch.equal(loaded(Z[:4]), qmodel(Z[:4]))
    rows = [line.split() for line in recipes.describe(loaded).splitlines()]
    lines = {row[0]: row[2] for row in rows if len(row) > 2 and row[0] in bits}
    assert {name: int(lines[name]) for name in bits} == bits


def test_mixed_precision_options_are_validated():
    with pytest.raises(ConfigError, match="exactly one budget"):
        MixedPrecision()
    with pytest.raises(ConfigError, match="exactly one budget"):
        MixedPrecision(effective_bits=5.0, max_bytes=10)
    with pytest.raises(ConfigError, match="bits must be bit widths"):
        MixedPrecision(effective_bits=5.0, bits=(1, 8))
    with pytest.raises(ConfigError, match="selection_samples"):
        MixedPrecision(effective_bits=5.0, selection_samples=0)
    assert MixedPrecision(effective_bits=5, bits=[8, 4]).bits == (4, 8)


def test_reference_outputs_come_in_batches_and_cover_the_requested_inputs():
    from gan_brevitas.ptq.sensitivity import reference_outputs

    model = dcgan_generator().eval()
    pairs = reference_outputs(model, Z, 20, batch_size=8)
    assert [batch.shape[0] for batch, _ in pairs] == [8, 8, 4]
    assert torch.equal(torch.cat([batch for batch, _ in pairs]), Z[:20])
    with torch.no_grad():
        torch.testing.assert_close(torch.cat([out for _, out in pairs]), model(Z[:20]))


def test_only_small_end_layers_are_protected():
    from gan_brevitas.ptq.mixed_precision import _protected_ends

    small_ends = _table({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 10, "b": 1000, "c": 10})
    assert _protected_ends(small_ends) == ("a", "c")
    big_first = _table({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 5000, "b": 1000, "c": 10})
    assert _protected_ends(big_first) == ("c",)


@pytest.mark.parametrize("refine", [None, "gptq"])
def test_between_two_assignments_the_one_measured_closer_to_float_wins_in_either_order(refine):
    from gan_brevitas.ptq.mixed_precision import MixedPrecisionOptions, _best_model
    from gan_brevitas.quant.convert import fold_for_quantization

    model = fold_for_quantization(dcgan_generator())
    options = MixedPrecisionOptions(effective_bits=6.0, num_samples=16, sensitivity_samples=8, refine=refine,
                                    progress=False)
    coarse, fine = dict.fromkeys(["1", "4", "7"], 2), {"1": 8, "4": 2, "7": 8}
    top = FAST.replace(weight_bits=8, weight_scaling="learned" if refine else "stats")
    for order in ((coarse, fine), (fine, coarse)):
        qmodel, chosen = _best_model(model, top, Z, options, order)
        assert chosen == fine
        assert {name: int(layer.quant_weight().bit_width) for name, layer in quant_layers(qmodel)} == fine
        assert qmodel.biases_corrected  # as the model is kept: FAST corrects biases
