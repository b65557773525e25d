"""MA-QAT / LSQ-QAT end to end on a tiny generator: improvement over PTQ, the MA freeze, LSQ
parameters moving, bitwise resume, and every bad input raising before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gan_brevitas import QuantConfig, recipes
from gan_brevitas.errors import CheckpointError, ConfigError
from gan_brevitas.metrics import psnr
from gan_brevitas.qat.checkpoint import CHECKPOINT_NAME, LOG_NAME, load_checkpoint
from gan_brevitas.qat.state import quantizer_parameters
from gan_brevitas.quant.convert import fold_for_quantization
from gan_brevitas.quant.quantizers import act_grid
from gan_brevitas.qat.ranges import act_proxies
from tests.qat.conftest import small_options

W4 = QuantConfig.paper(weight_bits=4, weight_scaling="learned")


class Recorder:
    """on_epoch_end callback keeping copies of what the tests look at."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.records, self.ranges, self.quant, self.weights = [], [], [], []
        self.stop_after = stop_after

    def __call__(self, record, qmodel) -> None:
        self.records.append(record)
        self.ranges.append([act_grid(p)[:2] for _, p in act_proxies(qmodel)])
        self.quant.append([p.detach().clone() for _, p in quantizer_parameters(qmodel)])
        self.weights.append([m.weight.detach().clone() for m in qmodel.modules() if hasattr(m, "weight_quant")])
        if self.stop_after is not None and record.epoch == self.stop_after:
            raise KeyboardInterrupt("simulated interruption")


def _ptq(generator, latents, config, eval_samples=16, num_samples=32):
    """Quantile PTQ calibrated like the QAT initialisation (on the rows after the held-out ones)."""
    return recipes.quantize(generator, "vanilla-ptq", config=config, inputs=latents[eval_samples:],
                            num_samples=num_samples, progress=False)


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_lsq_qat_lowers_the_loss_and_beats_ptq(generator, latents):
    recorder = Recorder()
    qmodel = recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents,
                              on_epoch_end=recorder, **small_options(epochs=3))
    # Epoch 0 of the log is the quantile PTQ the run starts from, measured on the held-out rows.
    ptq = _ptq(generator, latents, W4)
    held = latents[:16]
    with torch.no_grad():
        reference = fold_for_quantization(generator)(held)
        ptq_psnr = psnr(ptq(held), reference)
        qat_psnr = psnr(qmodel(held), reference)
    history = [r.to_dict() for r in recorder.records]
    distill = [r["losses"]["distill"] for r in history]
    assert distill[-1] < distill[0], distill
    assert qat_psnr > ptq_psnr + 0.5, (ptq_psnr, qat_psnr)
    assert recorder.records[-1].psnr == pytest.approx(qat_psnr, abs=1e-4)
    assert all(r.phase == "lsq" for r in recorder.records)
    # LSQ: activation scales / zero points and weight scales are trained, every epoch.
    initial = [p.detach() for _, p in quantizer_parameters(ptq)]
    ptq_ranges = [act_grid(p)[:2] for _, p in act_proxies(ptq)]
    assert len(initial) == len(recorder.quant[0])
    for before, after in zip([initial, *recorder.quant], recorder.quant):
        assert not _same(before, after)
    assert recorder.ranges[-1] != ptq_ranges
    assert set(history[-1]["lr"]) == {"weights", "quantizers"}
    assert history[-1]["lr"]["weights"] < 1e-3  # cosine annealing


def test_ptq_initialisation_is_quantile_ptq(generator, latents):
    """With zero learning rates nothing moves: the QAT model IS the quantile-PTQ model."""
    qmodel = recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents,
                              **small_options(epochs=1, lr_weights=0.0, lr_quant=0.0, eval_samples=0))
    ptq = _ptq(generator, latents, W4, eval_samples=0)
    ptq(latents[:2])  # learned weight scales initialise on the first call
    for (name, a), b in zip(qmodel.state_dict().items(), ptq.state_dict().values()):
        assert torch.equal(a, b), name


def test_ma_qat_ranges_move_then_freeze(generator, latents):
    recorder = Recorder()
    qmodel = recipes.quantize(generator, "ma-qat", config=QuantConfig.paper(), inputs=latents,
                              on_epoch_end=recorder, **small_options(epochs=3, ma_epochs=1, eval_samples=0))
    ptq_ranges = [act_grid(p)[:2] for _, p in act_proxies(_ptq(generator, latents, QuantConfig.paper(), eval_samples=0))]
    assert [r.phase for r in recorder.records] == ["ma", "frozen", "frozen"]
    assert recorder.ranges[0] != ptq_ranges  # moved during the MA epoch
    assert recorder.ranges[1] == recorder.ranges[0] == recorder.ranges[2]  # frozen after it
    assert _same(recorder.quant[0], recorder.quant[2])
    assert not _same(recorder.weights[1], recorder.weights[2])  # weights keep training (STE)
    assert not any(p.requires_grad for _, p in quantizer_parameters(qmodel))


def _run(generator, latents, out_dir, **changes):
    recorder = Recorder(stop_after=changes.pop("stop_after", None))
    options = small_options(epochs=3, schedule="ma-lsq", ma_epochs=2, out_dir=str(out_dir), **changes)
    qmodel = recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents, on_epoch_end=recorder, **options)
    return qmodel, recorder


def test_interrupted_and_resumed_run_equals_uninterrupted_bitwise(generator, latents, tmp_path):
    full, full_rec = _run(generator, latents, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _run(generator, latents, tmp_path / "cut", stop_after=1)  # dies inside the MA phase
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 1
    resumed, resumed_rec = _run(generator, latents, tmp_path / "cut", resume=True)
    assert [r.epoch for r in resumed_rec.records] == [2, 3]
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    for key in ("discriminator", "ranges"):
        assert str(a[key]) == str(b[key]) if key == "ranges" else _same(a[key].values(), b[key].values())
    assert [r["losses"] for r in a["history"]] == [r["losses"] for r in b["history"]]
    log = [json.loads(line) for line in (tmp_path / "cut" / LOG_NAME).read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2, 3] and [r["phase"] for r in log] == ["ptq-init", "ma", "ma", "lsq"]
    # The finished run resumes to nothing more and returns the same model.
    again, again_rec = _run(generator, latents, tmp_path / "cut", resume=True)
    assert again_rec.records == [] and _same(again.state_dict().values(), full.state_dict().values())


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def finished_run(generator, latents, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("qat") / "run"
    recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents,
                     **small_options(epochs=1, eval_samples=0, out_dir=str(out_dir)))
    return out_dir


def test_resume_from_a_different_config_is_refused(generator, latents, finished_run):
    checkpoint = (finished_run / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(CheckpointError, match=r"different configuration \(options changed\)"):
        recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents,
                         **small_options(epochs=1, eval_samples=0, out_dir=str(finished_run), resume=True, lr_weights=5e-4))
    with pytest.raises(CheckpointError, match=r"quant_config changed"):
        recipes.quantize(generator, "lsq-qat", config=W4.replace(weight_bits=8), inputs=latents,
                         **small_options(epochs=1, eval_samples=0, out_dir=str(finished_run), resume=True))
    with pytest.raises(CheckpointError, match=r"inputs changed"):
        recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents + 1,
                         **small_options(epochs=1, eval_samples=0, out_dir=str(finished_run), resume=True))
    with pytest.raises(CheckpointError, match="already holds a QAT run: pass resume=True"):
        recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents,
                         **small_options(epochs=1, eval_samples=0, out_dir=str(finished_run)))
    assert (finished_run / CHECKPOINT_NAME).read_bytes() == checkpoint  # nothing overwritten


def test_discriminator_for_another_shape_is_refused(generator, latents, tmp_path):
    wrong = nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), nn.Flatten(), nn.Linear(4 * 16 * 16, 1))  # a 32 px critic
    with pytest.raises(ConfigError, match=r"does not accept the generator's output shape \[B, 3, 16, 16\]"):
        recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents, discriminator=wrong,
                         **small_options(out_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("epochs", [0, -1])
def test_non_positive_epochs_are_refused(generator, latents, epochs, tmp_path):
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        recipes.quantize(generator, "ma-qat", inputs=latents, **small_options(epochs=epochs, out_dir=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_perceptual_loss_without_vgg_is_refused(generator, latents, tmp_path, monkeypatch):
    from gan_brevitas.qat import losses

    monkeypatch.delenv(losses.VGG_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match="loss='mse'.*loss='perceptual-disc'"):
        recipes.quantize(generator, "lsq-qat", inputs=latents, **small_options(loss="perceptual", out_dir=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_perceptual_loss_with_local_vgg_weights(generator, latents, vgg_file):
    recorder = Recorder()
    recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents, vgg_weights=str(vgg_file), on_epoch_end=recorder,
                     **small_options(epochs=1, loss="perceptual", eval_samples=0, num_train=32))
    losses = recorder.records[0].losses
    assert {"content", "style", "adversarial"} <= set(losses) and "mse" not in losses
    assert losses["distill"] == pytest.approx(3.0 * losses["content"] + 3e4 * losses["style"], rel=1e-4)


def test_perceptual_disc_and_a_given_discriminator(generator, latents):
    from gan_brevitas.qat.discriminator import fresh_discriminator

    disc = fresh_discriminator(3, 16, width=8, seed=3)
    before = [p.detach().clone() for p in disc.parameters()]
    recorder = Recorder()
    recipes.quantize(generator, "lsq-qat", config=W4, inputs=latents, discriminator=disc, on_epoch_end=recorder,
                     **small_options(epochs=1, loss="perceptual-disc", eval_samples=0))
    assert _same(before, [p.detach() for p in disc.parameters()])  # the caller's copy is untouched
    assert {"content", "style", "adversarial", "discriminator"} <= set(recorder.records[0].losses)


def test_stylegan_layers_that_never_run_stay_fixed(latents, tmp_path):
    """StyleGAN keeps all 9 progression blocks (reference layout) but an 8 px model runs only
    blocks 0-1: the others get no gradient and are frozen (DDP requires it), the rest trains.
    Their learned weight scales are initialised all the same, so the run resumes and saves."""
    model = recipes.build_generator("stylegan", size=8, channels=8, code_dim=16, n_mlp=1, noise_mode="const")
    options = small_options(epochs=1, eval_samples=0, lr_weights=1e-2, out_dir=str(tmp_path / "run"))
    qmodel = recipes.quantize(model, "lsq-qat", config=W4, inputs=latents, **options)
    resumed = recipes.quantize(model, "lsq-qat", config=W4, inputs=latents, **{**options, "resume": True})
    assert _same(qmodel.state_dict().values(), resumed.state_dict().values())
    recipes.save(qmodel, tmp_path / "q.safetensors")
    loaded = recipes.load(tmp_path / "q.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(latents[:4]), qmodel(latents[:4]))
    reference = recipes.quantize(model, "vanilla-ptq", config=W4, inputs=latents[16:], num_samples=32, progress=False)
    trained, initial = dict(qmodel.named_parameters()), dict(reference.named_parameters())
    frozen = {n for n, p in trained.items() if not p.requires_grad}
    unused_blocks = {n for n in trained if any(f"progression.{i}." in n for i in range(2, 9))}
    assert unused_blocks and unused_blocks <= frozen
    assert not any("progression.0." in n or "progression.1." in n for n in frozen)
    for name in unused_blocks & set(initial):
        if "weight_quant" in name:  # initialised from the weight quantiles, never trained
            assert float(trained[name]) != 1.0, name
        else:
            assert torch.equal(trained[name], initial[name]), name
    name = "generator.progression.0.conv2.weight"
    assert not torch.equal(trained[name], initial[name])
