"""Checkpoint reading and strict loading: round trips, reference file forms, clear errors."""

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.models import (
    ResnetGenerator,
    SAGANGenerator,
    StyledGenerator,
    build_generator,
    load_generator,
    load_state_dict_file,
)
from gan_brevitas.models.load import infer_build_kwargs

SMALL = {
    "stylegan": dict(code_dim=16, n_mlp=2, size=16, channels=[8, 8, 8, 8, 8, 8, 4, 4, 4]),
    "sagan": dict(image_size=32, z_dim=16, conv_dim=8),
    "cyclegan": dict(ngf=8, n_blocks=3, image_size=32),
}


def build_small(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator(name, **{**SMALL[name], **overrides})


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("name", sorted(SMALL))
def test_round_trip_infers_arguments(name, tmp_path):
    model = build_small(name)
    path = tmp_path / "g.pth"
    torch.save(model.state_dict(), path)
    loaded = load_generator(name, path, **({"size": 16} if name == "stylegan" else {}))
    assert type(loaded) is type(model) and not loaded.training
    assert_same_state(model, loaded)
    rebuilt = build_generator(name, **loaded.generator_spec["kwargs"])  # the spec rebuilds it
    assert rebuilt.state_dict().keys() == loaded.state_dict().keys()


def test_round_trip_sagan_upsample_conv_and_cyclegan_batch(tmp_path):
    for name, extra in [("sagan", {"upsample": "upsample_conv"}), ("cyclegan", {"norm": "batch"})]:
        model = build_small(name, **extra)
        torch.save(model.state_dict(), tmp_path / f"{name}.pth")
        assert_same_state(model, load_generator(name, tmp_path / f"{name}.pth"))


def test_inferred_arguments():
    state = build_small("stylegan", fused=False).state_dict()
    assert infer_build_kwargs("stylegan", state) == {
        "channels": [8, 8, 8, 8, 8, 8, 4, 4, 4], "n_mlp": 2, "code_dim": 16, "fused": False
    }
    state = build_small("sagan", upsample="upsample_conv").state_dict()
    assert infer_build_kwargs("sagan", state) == {
        "z_dim": 16, "image_size": 32, "upsample": "upsample_conv", "conv_dim": 8
    }
    state = build_small("cyclegan").state_dict()
    assert infer_build_kwargs("cyclegan", state) == {
        "ngf": 8, "input_nc": 3, "n_blocks": 3, "norm": "instance", "use_dropout": False, "output_nc": 3
    }


def test_train_step_dict_uses_g_running(tmp_path):
    g_running = build_small("stylegan")
    other = build_small("stylegan")
    with torch.no_grad():
        for param in other.parameters():
            param.add_(1.0)
    checkpoint = {
        "generator": other.state_dict(),
        "discriminator": {"x": torch.zeros(1)},
        "g_optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]},
        "g_running": g_running.state_dict(),
    }
    path = tmp_path / "train_step-5.model"
    torch.save(checkpoint, path)
    assert_same_state(g_running, load_generator("stylegan", path, size=16))


def test_data_parallel_prefix_is_stripped(tmp_path):
    model = build_small("sagan")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "10_G.pth")
    assert set(load_state_dict_file(tmp_path / "10_G.pth")) == set(model.state_dict())
    assert_same_state(model, load_generator("sagan", tmp_path / "10_G.pth"))


def test_stale_instance_norm_keys_are_dropped(tmp_path):
    model = build_small("cyclegan")
    state = dict(model.state_dict())
    for index in (2, 5, 8):
        state[f"model.{index}.running_mean"] = torch.zeros(model.model[index].num_features)
        state[f"model.{index}.running_var"] = torch.ones(model.model[index].num_features)
        state[f"model.{index}.num_batches_tracked"] = torch.tensor(0)
    state["model.10.conv_block.2.running_mean"] = torch.zeros(32)
    torch.save(state, tmp_path / "latest_net_G.pth")
    assert_same_state(model, load_generator("cyclegan", tmp_path / "latest_net_G.pth"))


def test_running_keys_of_other_modules_are_not_dropped(tmp_path):
    model = build_small("cyclegan")
    state = dict(model.state_dict())
    state["model.1.running_mean"] = torch.zeros(8)  # model.1 is a conv, not an InstanceNorm
    torch.save(state, tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected keys .*model\.1\.running_mean"):
        load_generator("cyclegan", tmp_path / "g.pth")


def test_renamed_key_is_listed(tmp_path):
    state = dict(build_small("sagan").state_dict())
    state["attn1.query.weight"] = state.pop("attn1.query_conv.weight")
    torch.save(state, tmp_path / "g.pth")
    with pytest.raises(CheckpointError) as info:
        load_generator("sagan", tmp_path / "g.pth")
    message = str(info.value)
    assert "1 missing keys" in message and "attn1.query_conv.weight" in message
    assert "1 unexpected keys" in message and "attn1.query.weight" in message
    assert "How to fix" in message and "g.pth" in message


def test_wrong_width_reports_shapes(tmp_path):
    torch.save(build_small("sagan").state_dict(), tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match=r"(?s)shape mismatches.*passed conv_dim=16 but .* conv_dim=8"):
        load_generator("sagan", tmp_path / "g.pth", conv_dim=16)


def test_wrong_model_name_suggests_the_right_one(tmp_path):
    torch.save(build_small("cyclegan").state_dict(), tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match=r"look like a 'cyclegan' checkpoint"):
        load_generator("sagan", tmp_path / "g.pth")


@pytest.mark.parametrize("kind", ["random_bytes", "text", "pickled_class", "empty"])
def test_non_checkpoint_files_are_refused(kind, tmp_path):
    path = tmp_path / f"{kind}.pth"
    if kind == "random_bytes":
        path.write_bytes(os.urandom(2048))
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "pickled_class":
        torch.save({"weight": torch.zeros(1), "callable": Path("x")}, path)
    else:
        path.write_bytes(b"")
    problem = {"random_bytes": "not a PyTorch checkpoint", "text": "not a PyTorch checkpoint",
               "pickled_class": r"pickled Python object \(pathlib\.\w*Path\) that would run code",
               }.get(kind, r"is empty \(0 bytes\)")
    with pytest.raises(CheckpointError, match=problem) as info:  # what is wrong with the FILE
        load_state_dict_file(path)
    assert str(path) in str(info.value)


def test_a_truncated_checkpoint_says_so(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.zeros(1000)}, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="ends early"):
        load_state_dict_file(cut)


def test_plain_pickle_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": Path("/")}, protocol=2))
    with pytest.raises(CheckpointError, match="would run code to load, which we refuse"):
        load_generator("sagan", path)


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_file(tmp_path / "nope.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_state_dict_file(tmp_path / "list.pth")
    torch.save({"epoch": 3, "w": torch.zeros(1)}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match="'epoch'"):
        load_state_dict_file(tmp_path / "mixed.pth")


def test_safetensors(tmp_path):
    model = build_small("cyclegan")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "g.safetensors"))
    assert_same_state(model, load_generator("cyclegan", tmp_path / "g.safetensors"))
    (tmp_path / "bad.safetensors").write_bytes(os.urandom(64))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_state_dict_file(tmp_path / "bad.safetensors")


def test_build_generator_errors():
    with pytest.raises(ConfigError, match="choose one of"):
        build_generator("biggan")
    with pytest.raises(ConfigError, match="accepts"):
        build_generator("sagan", widht=3)
    assert isinstance(build_generator("sagan", **SMALL["sagan"]), SAGANGenerator)
    assert isinstance(build_generator("cyclegan", **SMALL["cyclegan"]), ResnetGenerator)
    assert isinstance(build_generator("stylegan", **SMALL["stylegan"]), StyledGenerator)
