"""Block lists, their validation, and the recorded block data (gan_brevitas.ptq.blocks)."""

import pytest
import torch
from torch import nn

from gan_brevitas import recipes
from gan_brevitas.errors import ConfigError
from gan_brevitas.ptq.blocks import (
    Block,
    BlockDataCache,
    block_key,
    blocks_from_spec,
    capture_block_data,
    check_coverage,
    default_blocks,
    run_block,
)
from gan_brevitas.quant.convert import fold_for_quantization
from tests.helpers import dcgan_generator

torch.set_num_threads(1)

TINY = {
    "stylegan": dict(size=8, channels=16, code_dim=64, n_mlp=3, noise_mode="random"),
    "sagan": dict(image_size=16, z_dim=32, conv_dim=8),
    "cyclegan": dict(ngf=8, n_blocks=2, image_size=16),
}


def _folded(name):
    torch.manual_seed(0)
    return fold_for_quantization(recipes.build_generator(name, **TINY[name]))


def _inputs(model, n=12):
    g = torch.Generator().manual_seed(0)
    if model.input_kind == "image":
        return torch.rand(n, 3, model.image_size, model.image_size, generator=g) * 2 - 1
    return torch.randn(n, model.latent_dim, generator=g)


def _modules(blocks):
    return [b.modules for b in blocks]


def test_stylegan_blocks_are_mapping_pairs_progression_up_to_step_and_to_rgb():
    model = _folded("stylegan")  # size 8 -> step 1
    assert _modules(default_blocks(model)) == [
        ("style.0", "style.1", "style.2"),  # PixelNorm joins the first linear + LeakyReLU
        ("style.3", "style.4"),
        ("style.5", "style.6"),
        ("generator.progression.0",),
        ("generator.progression.1",),
        ("generator.to_rgb.1",),
    ]


def test_sagan_blocks_put_attention_after_l3_and_l4():
    assert _modules(default_blocks(_folded("sagan"))) == [
        ("l1",), ("l2",), ("l3", "attn1"), ("l4", "attn2"), ("last",)
    ]


def test_cyclegan_blocks_are_stem_downsamplings_residual_blocks_upsamplings_head():
    blocks = _modules(default_blocks(_folded("cyclegan")))  # 2 residual blocks: model.10, model.11
    assert blocks == [
        ("model.0", "model.1", "model.2", "model.3"),  # stem: pad, conv, norm, ReLU
        ("model.4", "model.5", "model.6"),  # downsampling
        ("model.7", "model.8", "model.9"),
        ("model.10",),  # residual blocks
        ("model.11",),
        ("model.12", "model.13", "model.14"),  # upsampling
        ("model.15", "model.16", "model.17"),
        ("model.18", "model.19", "model.20"),  # head: pad, conv, Tanh
    ]


def test_user_sequential_and_user_module_blocks():
    assert _modules(default_blocks(dcgan_generator())) == [("0", "1", "2", "3"), ("4", "5", "6"), ("7", "8")]

    class TwoStage(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 16)
            self.act = nn.ReLU()
            self.tail = nn.Sequential(nn.Linear(16, 4), nn.Tanh())

        def forward(self, z):
            return self.tail(self.act(self.head(z)))

    assert _modules(default_blocks(TwoStage())) == [("head",), ("tail",)]


def test_user_block_spec_accepts_names_and_chains():
    blocks = blocks_from_spec(_folded("sagan"), ["l1", ["l2", "l3", "attn1"], ["l4", "attn2", "last"]])
    assert [b.name for b in blocks] == ["l1", "l2+l3+attn1", "l4+attn2+last"]


@pytest.mark.parametrize(
    "spec, message",
    [
        (["l1", "l5"], "does not have"),  # missing module
        (["l1", ["l2", "attn"]], "did you mean"),  # suggests attn1 / attn2
        (["l1", "l1.0"], "overlaps"),  # nested in another block
        (["l1", ["l2", "l2"]], "overlaps"),
        ([], "non-empty"),
        ("l1", "non-empty"),
        (["l1", 3], "module name"),
    ],
)
def test_bad_block_specs_raise_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        blocks_from_spec(_folded("sagan"), spec)


def test_coverage_check_names_the_uncovered_layers():
    blocks = [Block.of("l1"), Block.of("l2")]
    check_coverage(blocks, ["l1.0", "l2.0"])
    with pytest.raises(ConfigError, match="last.0"):
        check_coverage(blocks, ["l1.0", "l2.0", "last.0"])


@pytest.mark.parametrize("name", sorted(TINY))
def test_recorded_block_data_reproduces_every_block(name):
    """X_i, Y_i come from the model's own forward; the block chain maps X_i to Y_i. StyleGAN
    runs with RANDOM noise: the per-batch seed makes the recorded noise that of the forward."""
    model = _folded(name)
    blocks = default_blocks(model)
    x = _inputs(model)
    with BlockDataCache(max_bytes=1e12) as cache:
        info = capture_block_data(model, blocks, x.split(4), cache, 3, seed=5, progress=False)
        assert sorted(info.block_order) == list(range(len(blocks)))
        assert cache.num_batches == 3
        for index, block in enumerate(blocks):
            for b in range(3):
                args, kwargs = cache.get(block_key(index, "args"), b)
                with torch.no_grad():
                    out = run_block(model, block, args, kwargs)
                torch.testing.assert_close(out, cache.get(block_key(index, "output"), b))
        # Model outputs equal the last block's recorded outputs (the whole chain is covered).
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(5)
            final = model(x[:4])
        final = final[0] if isinstance(final, tuple) else final
        torch.testing.assert_close(final, cache.get(block_key(len(blocks) - 1, "output"), 0))


def test_disk_cache_matches_memory_and_is_removed():
    model = _folded("cyclegan")  # in-place ReLUs: records must be copies
    blocks = default_blocks(model)
    x = _inputs(model)
    with BlockDataCache(max_bytes=1e12) as memory, BlockDataCache(max_bytes=0) as disk:
        capture_block_data(model, blocks, x.split(4), memory, 3, seed=0, progress=False)
        capture_block_data(model, blocks, x.split(4), disk, 3, seed=0, progress=False)
        assert not memory.on_disk and disk.on_disk
        path = disk.path
        assert len(list(path.glob("*.pt"))) == 3 * (1 + 2 * len(blocks))
        for index in range(len(blocks)):
            for what in ("args", "output"):
                for b in range(3):
                    a, d = memory.get(block_key(index, what), b), disk.get(block_key(index, what), b)
                    torch.testing.assert_close(a, d, rtol=0, atol=0)
    assert not path.exists()


def test_a_block_that_runs_twice_or_never_is_rejected():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, z):
            return self.fc(self.fc(z))

    with BlockDataCache(1e12) as cache, pytest.raises(ConfigError, match="runs 2 times"):
        capture_block_data(Twice(), [Block.of("fc")], [torch.randn(2, 4)], cache, 1, 0, progress=False)

    model = _folded("stylegan")  # step 1: to_rgb.0 never runs
    with BlockDataCache(1e12) as cache, pytest.raises(ConfigError, match="never ran"):
        capture_block_data(model, [Block.of("generator.to_rgb.0")], [torch.randn(2, 64)], cache, 1, 0, progress=False)
