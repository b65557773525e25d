"""STE-BRECQ and AR-BRECQ (gan_brevitas.ptq.brecq) on tiny generators, few steps."""

import json

import pytest
import torch
from brevitas.core.function_wrapper import RoundSte

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.errors import ConfigError, ConversionError
from gan_brevitas.ptq import brecq
from gan_brevitas.quant.convert import fold_for_quantization, quantize_model
from tests.helpers import dcgan_generator, relative_error

torch.set_num_threads(1)

LEARNED = QuantConfig.paper(weight_scaling="learned")
Z = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
FAST = dict(num_samples=32, batch_size=8, calibration_samples=32, progress=False)


def _tiny_stylegan():
    torch.manual_seed(0)
    return recipes.build_generator("stylegan", size=8, channels=16, code_dim=64, n_mlp=2, noise_mode="const").eval()


def _latents(n=32, dim=64, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _assert_every_block_improved(report):
    assert report.blocks
    for block in report.blocks:
        assert block.rejected_loss is None, block
        assert block.loss_after < block.loss_before, block
        assert block.rel_error_after < block.rel_error_before, block


def test_ar_brecq_rounds_every_weight_exactly_onto_its_grid_and_lowers_every_block_loss():
    model = _tiny_stylegan()
    qmodel = recipes.quantize(
        model, "ar-brecq", config=LEARNED.replace(weight_bits=4), inputs=_latents(),
        steps=80, round_lr=1e-2, **FAST,
    )
    report = qmodel.brecq_report
    _assert_every_block_improved(report)
    assert any(block.flipped > 0 for block in report.blocks)  # not just round-to-nearest
    layers = [name for block in report.blocks for name in block.layers]
    # every layer that runs: 2 mapping linears, block 0 (conv2 + 2 AdaIN styles; its input is
    # constant), block 1 (conv1, conv2, 2 AdaIN styles), to_rgb.1
    assert len(layers) == 10
    for name in layers:
        layer = qmodel.get_submodule(name)
        assert isinstance(layer.weight_quant.tensor_quant.int_quant.float_to_int_impl, RoundSte)
        with torch.no_grad():
            quant = layer.quant_weight()
        # The stored float weight IS its quantized value: scale x integer, bit for bit.
        assert torch.equal(quant.value, layer.weight), name
        assert torch.equal(quant.int(float_datatype=True) * quant.scale, layer.weight), name
        ints = quant.int(float_datatype=True)
        assert ints.min() >= -8 and ints.max() <= 7


def test_ste_brecq_lowers_every_block_loss_and_trains_weights_and_quantizers():
    model = _tiny_stylegan()
    vanilla = recipes.quantize(model, "vanilla-ptq", config=LEARNED, inputs=_latents(), num_samples=32, progress=False)
    qmodel = recipes.quantize(model, "ste-brecq", config=LEARNED, inputs=_latents(), steps=40, quant_lr=1e-3, **FAST)
    _assert_every_block_improved(qmodel.brecq_report)
    q_state, v_state = qmodel.state_dict(), vanilla.state_dict()
    assert not torch.equal(q_state["style.1.weight"], v_state["style.1.weight"])
    scale = "style.1.input_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value"
    assert not torch.equal(q_state[scale], v_state[scale])


def test_user_block_list_is_used_and_the_report_is_written(tmp_path):
    blocks = [["0", "1", "2", "3", "4", "5", "6"], ["7", "8"]]
    qmodel = recipes.quantize(
        dcgan_generator(), "ste-brecq", config=LEARNED, inputs=Z, blocks=blocks, steps=30, out_dir=str(tmp_path), **FAST
    )
    report = qmodel.brecq_report
    assert [b.name for b in report.blocks] == ["0+1+2+3+4+5+6", "7+8"]
    assert [b.layers for b in report.blocks] == [["1", "4"], ["7"]]
    assert report.blocks[0].loss_after < report.blocks[0].loss_before
    # The 3-channel output block may overshoot in 30 steps at the default rate; it is then
    # reverted, so no block ends worse than it started.
    assert all(b.loss_after <= b.loss_before for b in report.blocks)
    saved = json.loads((tmp_path / "ste-brecq_report.json").read_text())
    assert saved["method"] == "ste-brecq" and saved["options"]["blocks"] == blocks
    assert [b["name"] for b in saved["blocks"]] == ["0+1+2+3+4+5+6", "7+8"]


@pytest.mark.parametrize(
    "method, config, options, message",
    [
        ("ste-brecq", LEARNED, dict(steps=0), "steps must be a positive integer"),
        ("ar-brecq", LEARNED, dict(steps=-5), "steps must be a positive integer"),
        ("ste-brecq", LEARNED, dict(steps=2.5), "steps must be a positive integer"),
        ("ste-brecq", LEARNED, dict(step=10), "unknown ste-brecq option"),
        ("ar-brecq", LEARNED, dict(warmup=1.0), "warmup"),
        ("ste-brecq", LEARNED, dict(blocks=["0", "7", "9"]), "does not have"),
        ("ste-brecq", LEARNED, dict(blocks=[["0", "1", "2", "3"], "7"]), r"do not cover .* 4"),
        # 4 -> 7 skips the BatchNorm and LeakyReLU between them: not the model's data flow
        ("ste-brecq", LEARNED, dict(blocks=[["0", "1", "2", "3"], ["4", "7", "8"]]), "does not give the output"),
    ],
)
def test_bad_inputs_raise_config_errors(method, config, options, message):
    with pytest.raises(ConfigError, match=message):
        recipes.quantize(dcgan_generator(), method, config=config, inputs=Z, **{**FAST, **options})


def test_a_quantized_block_with_another_output_shape_raises(monkeypatch):
    def wrong_last_layer(model, config):
        qmodel = quantize_model(model, config)
        odd = torch.nn.Sequential(torch.nn.ConvTranspose2d(16, 5, 4, 2, 1))  # 5 channels, not 3
        qmodel[7] = quantize_model(odd, config)[0]
        return qmodel

    monkeypatch.setattr(brecq, "quantize_model", wrong_last_layer)
    with pytest.raises(ConversionError, match=r"block '7\+8' outputs \(8, 5, 16, 16\)"):
        recipes.quantize(dcgan_generator(), "ste-brecq", config=LEARNED, inputs=Z, steps=2, **FAST)


SMALL = {
    "stylegan": dict(size=8, channels=16, code_dim=64, n_mlp=2, noise_mode="const"),
    "sagan": dict(image_size=16, z_dim=32, conv_dim=8),
    "cyclegan": dict(ngf=8, n_blocks=1, image_size=16),
}


def _image(output):
    return output[0] if isinstance(output, tuple) else output


def _small(name):
    torch.manual_seed(0)
    model = recipes.build_generator(name, **SMALL[name]).eval()
    g = torch.Generator().manual_seed(0)
    if model.input_kind == "image":
        return model, torch.rand(32, 3, 16, 16, generator=g) * 2 - 1
    return model, torch.randn(32, model.latent_dim, generator=g)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_recipes_quantize_ste_brecq_end_to_end(name):
    model, x = _small(name)
    qmodel = recipes.quantize(model, "ste-brecq", config=LEARNED, inputs=x, steps=10, **FAST)
    assert qmodel.gan_brevitas.method == "ste-brecq"
    assert len(qmodel.brecq_report.blocks) == {"stylegan": 5, "sagan": 5, "cyclegan": 7}[name]
    assert all(b.loss_after <= b.loss_before for b in qmodel.brecq_report.blocks)
    with torch.no_grad():
        reference = _image(fold_for_quantization(model)(x))
        assert relative_error(_image(qmodel(x)), reference) < 0.5


def test_a_brecq_model_saves_and_loads(tmp_path):
    model, x = _small("sagan")
    qmodel = recipes.quantize(model, "ste-brecq", config=LEARNED, inputs=x, steps=5, **FAST)
    recipes.save(qmodel, tmp_path / "q.safetensors")
    ar = recipes.quantize(model, "ar-brecq", config=LEARNED, inputs=x, steps=5, **FAST)
    recipes.save(ar, tmp_path / "ar.safetensors")
    with torch.no_grad():
        assert torch.equal(_image(recipes.load(tmp_path / "ar.safetensors")(x)), _image(ar(x)))
    loaded = recipes.load(tmp_path / "q.safetensors")
    with torch.no_grad():
        assert torch.equal(_image(loaded(x)), _image(qmodel(x)))


def test_runs_repeat_exactly_with_the_block_data_on_disk():
    run = lambda **kw: recipes.quantize(  # noqa: E731
        dcgan_generator(), "ar-brecq", config=LEARNED.replace(weight_bits=4), inputs=Z, steps=20, **FAST, **kw
    ).state_dict()
    in_memory, on_disk = run(), run(max_memory_mb=0)
    assert in_memory.keys() == on_disk.keys()
    assert all(torch.equal(in_memory[k], on_disk[k]) for k in in_memory)


@pytest.mark.parametrize("options", [dict(block_input="quant"), dict(fisher=True)])
def test_quantized_block_inputs_and_fisher_weighting(options):
    """Both lower their training objective on every block: the plain error from the quantized
    model's own block inputs, or the Fisher-weighted error."""
    qmodel = recipes.quantize(dcgan_generator(), "ste-brecq", config=LEARNED, inputs=Z, steps=30, **FAST, **options)
    for block in qmodel.brecq_report.blocks:
        assert block.rejected_loss is None and block.loss_after < block.loss_before, block
