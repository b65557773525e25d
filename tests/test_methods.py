"""The method registry: typed configs and string names run the same method; unknown names and
options fail with a suggestion; a new method is one decorated handler."""

import dataclasses

import pytest
import torch

from gan_brevitas import cli, recipes
from gan_brevitas.errors import ConfigError
from gan_brevitas.methods import (
    LSQQAT,
    MAQAT,
    SteBRECQ,
    VanillaPTQ,
    method_config,
    method_names,
    registry,
)
from gan_brevitas.quant.config import QuantConfig
from gan_brevitas.quant.convert import fold_for_quantization
from tests.helpers import dcgan_generator

Z = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))


def test_typed_config_and_string_name_give_the_same_model():
    model = dcgan_generator()
    by_name = recipes.quantize(model, "vanilla-ptq", config=QuantConfig.paper(weight_bits=4), inputs=Z,
                               num_samples=8, progress=False)
    typed = recipes.quantize(model, VanillaPTQ(num_samples=8, progress=False), config=QuantConfig.paper(weight_bits=4),
                             inputs=Z)
    assert torch.equal(by_name(Z[:4]), typed(Z[:4]))
    assert typed.gan_brevitas.method == by_name.gan_brevitas.method == "vanilla-ptq"
    # Keywords next to a config replace its fields; QuantConfig fields still override config.
    replaced = recipes.quantize(model, VanillaPTQ(num_samples=2), config="paper", inputs=Z, num_samples=8,
                                progress=False, weight_bits=4)
    assert torch.equal(replaced(Z[:4]), typed(Z[:4]))


def test_unknown_method_and_option_suggest_the_right_name():
    with pytest.raises(ConfigError, match=r"unknown method 'vanila-ptq' \(did you mean 'vanilla-ptq'\?\)"):
        recipes.quantize(dcgan_generator(), "vanila-ptq", inputs=Z)
    with pytest.raises(ConfigError, match=r"unknown lsq-qat option 'epoch' \(did you mean 'epochs'\?\)"):
        recipes.quantize(dcgan_generator(), "lsq-qat", inputs=Z, epoch=2)
    with pytest.raises(ConfigError, match=r"unknown vanilla-ptq option 'num_sample' \(did you mean 'num_samples'"):
        recipes.quantize(dcgan_generator(), VanillaPTQ(), inputs=Z, num_sample=2)
    with pytest.raises(ConfigError, match="method must be a method name or a method config"):
        recipes.quantize(dcgan_generator(), QuantConfig.paper(), inputs=Z)


def test_configs_are_validated_when_built():
    with pytest.raises(ConfigError, match="num_samples must be a positive integer"):
        VanillaPTQ(num_samples=0)
    with pytest.raises(ConfigError, match="loss='l1'"):
        LSQQAT(loss="l1")
    with pytest.raises(ConfigError, match="for 'ma' use method 'ma-qat'"):
        method_config("lsq-qat", schedule="ma")
    with pytest.raises(dataclasses.FrozenInstanceError):
        SteBRECQ().steps = 3


def test_qat_configs_take_the_papers_defaults_of_the_model():
    options = LSQQAT(epochs=4).resolve("cyclegan")
    assert (options.epochs, options.ma_epochs, options.schedule) == (4, 2, "ma-lsq")
    assert MAQAT().resolve("sagan").batch_size == 64
    assert LSQQAT(preset="stylegan").resolve("sagan").preset == "stylegan"  # an explicit preset wins


def test_modelopt_aliases_fix_the_preset_without_importing_modelopt():
    config = method_config("modelopt-w4a8", num_samples=3)
    assert (config.preset, config.num_samples) == ("w4a8", 3)
    assert registry.method_spec(config).name_of(config) == "modelopt-w4a8"
    with pytest.raises(ConfigError, match="unknown ModelOpt preset 'fp8'"):
        method_config("modelopt", preset="fp8")


def test_a_new_method_is_one_decorated_handler(monkeypatch):
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    monkeypatch.setattr(registry, "_BY_TYPE", dict(registry._BY_TYPE))

    @dataclasses.dataclass(frozen=True)
    class HalfWeights:
        factor: float = 0.5

    @registry.register_method("half-weights", HalfWeights, aliases=("halve",))
    def halve(float_model, config, inputs, options):
        with torch.no_grad():
            for p in float_model.parameters():
                p.mul_(options.factor)
        return float_model

    assert {"half-weights", "halve"} <= set(method_names())
    model = dcgan_generator()
    out = recipes.quantize(model, "halve", inputs=Z, factor=0.25)
    assert out.gan_brevitas.method == "half-weights"
    folded = fold_for_quantization(model)  # what quantize hands to a method: a folded copy
    assert torch.equal(out[1].weight, folded[1].weight * 0.25)
    with pytest.raises(ValueError, match="registered already"):
        registry.register_method("halve", VanillaPTQ)(halve)
    with pytest.raises(TypeError, match="frozen dataclass"):
        registry.register_method("plain", dict)(halve)


def test_cli_set_names_are_checked_before_anything_loads(tmp_path, capsys):
    code = cli.main(["quantize", "--model", "sagan", "--checkpoint", str(tmp_path / "missing.pth"),
                     "--method", "ste-brecq", "--set", "stepz=3", "--out", str(tmp_path / "q.safetensors")])
    assert code == 2
    assert "unknown ste-brecq option 'stepz' (did you mean 'steps'?)" in capsys.readouterr().err
