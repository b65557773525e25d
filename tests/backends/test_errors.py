"""Bad input: ModelOpt missing, an unknown preset, QuantConfig fields that do not apply, a
layer neither ModelOpt nor the plugin can quantize."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.errors import ConfigError, ConversionError, MissingDependencyError
from gan_brevitas.backends import modelopt as mo
from gan_brevitas.backends.modelopt_report import describe_rows


class HandMadeConv(nn.Module):
    """A custom layer with a trained weight in its own forward: nobody knows how to quantize it."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(4, 4, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=1)


def test_missing_modelopt_names_the_extra(monkeypatch, float_generators):
    for name in [n for n in sys.modules if n == "modelopt" or n.startswith("modelopt.")]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in ("modelopt", "modelopt_modules", "modelopt_report"):
        monkeypatch.delitem(sys.modules, f"gan_brevitas.backends.{name}", raising=False)
    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[modelopt\]"'):
        importlib.import_module("gan_brevitas.backends.modelopt")
    model, x = float_generators["dcgan"]
    with pytest.raises(MissingDependencyError, match="modelopt"):
        recipes.quantize(model, "modelopt-int8", inputs=x, num_samples=4, progress=False)


def test_unknown_preset(float_generators):
    model, x = float_generators["dcgan"]
    with pytest.raises(ConfigError, match="modelopt-int8"):
        recipes.quantize(model, "modelopt-int9", inputs=x, progress=False)
    with pytest.raises(ConfigError, match=r"unknown ModelOpt preset 'fp8'.*int8-percentile"):
        mo.modelopt_ptq(model, None, x, preset="fp8")


def test_quant_config_fields_that_do_not_apply(float_generators):
    model, x = float_generators["dcgan"]
    with pytest.raises(ConfigError, match=r"weight_bits=4 do not apply.*modelopt-w4a8"):
        recipes.quantize(model, "modelopt-int8", config=QuantConfig(weight_bits=4), inputs=x, progress=False)


def test_layer_nobody_can_quantize_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), HandMadeConv(), nn.Tanh()).eval()
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(ConversionError, match=r"1 \(HandMadeConv\).*skip"):
        recipes.quantize(model, "modelopt-int8", inputs=x, num_samples=4, progress=False)
    qmodel = recipes.quantize(model, "modelopt-int8", config=QuantConfig(skip=("HandMadeConv",)), inputs=x,
                              num_samples=4, progress=False)
    rows = {row.name: row for row in describe_rows(qmodel)}
    assert rows["0"].weight_bits == "8"
    assert rows["1"].kind == "float" and "HandMadeConv" in rows["1"].note and "skip" in rows["1"].note
