"""Recipe files: every committed recipe validates; bad keys and values fail clearly."""

from __future__ import annotations

import pytest

from gan_brevitas.errors import ConfigError
from gan_brevitas.ptq.brecq import SteBrecqOptions
from gan_brevitas.qat.options import QATOptions
from gan_brevitas.reproduce import PROFILES, load_recipe, load_recipes
from gan_brevitas.harness.cache import run_key
from tests.reproduce.conftest import RECIPES


@pytest.fixture(scope="module")
def recipes():
    return load_recipes([RECIPES])


def test_every_recipe_parses_and_validates_in_every_profile(recipes):
    assert len(recipes) == 49  # Table 3: 11, Table 4: 33 + 2 (Appendix B), Figure 1: 3
    tables = {r.experiment.table for r in recipes}
    assert tables == {"table3", "table4", "figure1"}
    for recipe in recipes:
        assert recipe.path.parent.name == recipe.experiment.table
        for profile in PROFILES:
            rows = recipe.rows(profile)
            assert rows and all(row.profile == profile for row in rows)
        if recipe.experiment.table == "figure1":
            assert recipe.sweep is not None and len(recipe.sweep.values) == 4
        else:
            assert recipe.paper.qfid is not None, recipe.path


def test_recipes_hold_the_papers_numbers_and_setup(recipes):
    by_id = {r.id: r for r in recipes}
    ste = by_id["table3/stylegan_ste_brecq_w8_per_tensor"]
    assert (ste.paper.fid, ste.paper.qfid) == (51.7, 35.9)
    (row,) = ste.rows("paper")
    assert isinstance(row.options, SteBrecqOptions) and row.options.steps == 2000
    assert row.quant.weight_bits == 8 and not row.quant.per_channel
    (cpu,) = ste.rows("cpu")
    assert cpu.options.steps < 2000 and cpu.eval.n < row.eval.n
    lsq = by_id["table4/cyclegan_lsq_qat_w4_per_tensor"].rows("paper")[0]
    assert isinstance(lsq.options, QATOptions)
    assert (lsq.options.epochs, lsq.options.ma_epochs, lsq.options.schedule) == (100, 50, "ma-lsq")
    sagan = by_id["table4/sagan_ma_qat_w8_per_tensor"].rows("paper")[0]
    assert (sagan.options.batch_size, sagan.options.lr_quant, sagan.options.loss) == (64, 1e-7, "perceptual")
    assert by_id["table4/sagan_ma_qat_w8_per_channel_mse"].paper.qfid == 33.2


def test_unknown_key_names_the_key_and_the_file(edited):
    path = edited("table3/stylegan_ste_brecq_w8_per_tensor.toml", "steps = 2000", "stepz = 2000")
    with pytest.raises(ConfigError, match=r"ste_brecq_w8_per_tensor\.toml: \[options\] unknown key 'stepz'"):
        load_recipe(path)


@pytest.mark.parametrize("old, new, expected", [
    ("weight_bits = 8", "weight_bitz = 8", r"\[quant\] unknown key 'weight_bitz'.*fields of QuantConfig"),
    ('model = "stylegan"', 'model = "stylegan"\nmodle = 1', r"\[experiment\] unknown key 'modle'"),
    ("[cpu.eval]\nn = 1000", "[cpu.eval]\nnn = 1000", r"\[eval\] with \[cpu.eval\] unknown key 'nn'"),
    ("[paper]", "[papers]\n[paper]", r"unknown section \[papers\]"),
])
def test_other_unknown_keys_and_sections(edited, old, new, expected):
    path = edited("table3/stylegan_ste_brecq_w8_per_tensor.toml", old, new)
    with pytest.raises(ConfigError, match=expected):
        load_recipe(path)


@pytest.mark.parametrize("old, new, expected", [
    ("weight_bits = 8", "weight_bits = 9", r"\[quant\] weight_bits=9 is outside the supported range 2..8"),
    ("steps = 500", "steps = -1", r"\[options\] with \[cpu.options\] steps must be a positive integer"),
    ('method = "ste-brecq"', 'method = "magic"', r"\[experiment\] method='magic' is not one of"),
    ("[cpu.eval]\nn = 1000", "[cpu.eval]\nn = 1", r"n must be an integer >= 2"),
    ("steps = 2000", "steps = 2000\nout_dir = \"x\"", r"'out_dir' is set by `gan-brevitas reproduce` itself"),
    ("[cpu.eval]", "[cpu.quant]\nweight_bits = 4\n\n[cpu.eval]", r"\[cpu.quant\] is not allowed: a profile scales"),
    ("fid = 51.7", "fid = -3.0", r"\[paper\] fid must be the paper's number"),
    ("[experiment]", "[experiment\n", r"is not valid TOML"),
])
def test_bad_values_say_what_is_wrong(edited, old, new, expected):
    path = edited("table3/stylegan_ste_brecq_w8_per_tensor.toml", old, new)
    with pytest.raises(ConfigError, match=expected) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_full_precision_takes_no_quantization(edited):
    path = edited("table4/sagan_full_precision.toml", "[eval]", "[quant]\nweight_bits = 4\n\n[eval]")
    with pytest.raises(ConfigError, match="full precision is not quantized"):
        load_recipe(path)


def test_a_sweep_varies_one_valid_field(edited):
    path = edited("figure1/sagan_act_quantiles.toml", "[[0.0, 1.0],", "[[0.5, 0.2],")
    with pytest.raises(ConfigError, match=r"\[sweep\] act_quantiles=.*low quantile must be below"):
        load_recipe(path)
    path = edited("figure1/sagan_act_quantiles.toml", "[sweep]", "[sweep]\nweight_bits = [8, 4]")
    with pytest.raises(ConfigError, match="varies one QuantConfig field"):
        load_recipe(path)


def test_the_cache_key_follows_the_config_and_the_profile(edited):
    original = load_recipe(RECIPES / "table4/sagan_vanilla_ptq_w8_per_tensor.toml")
    changed = load_recipe(edited("table4/sagan_vanilla_ptq_w8_per_tensor.toml",
                                 "[tiny.options]\nnum_samples = 4", "[tiny.options]\nnum_samples = 5"))
    relabelled = load_recipe(edited("table4/sagan_vanilla_ptq_w8_per_tensor.toml", "fid = 145.3", "fid = 1.0"))

    def key(recipe, profile):
        return run_key({"row": recipe.rows(profile)[0].config()}, "test")

    assert key(original, "tiny") != key(changed, "tiny")  # an edited recipe runs again
    assert key(original, "cpu") == key(changed, "cpu")  # ... only in the profile that changed
    assert key(original, "tiny") != key(original, "cpu")
    assert key(original, "tiny") == key(relabelled, "tiny")  # the paper's numbers are not the config
