"""W8A8 and 4-bit quality of every tool, side by side, on the real-generator suite.

    python -m benchmarks.quality_suite                         # all suite models, all methods
    python -m benchmarks.quality_suite --models srgan_x4 --methods ours-default,nncf

For each suite generator (public pretrained checkpoints, `benchmarks/suite`), in one run, each
method quantizes the SAME float model from the SAME calibration inputs (8 photos, or 64
latents) and is scored on held-out inputs none of them saw (4 other photos, or 1024 other
latents): PSNR (dB) of its output against the float model's output, per image and averaged, and
for the noise-to-image generator qFID as well (`benchmarks.suite.qfid`).
Methods:

* ``ours-default``: ``recipes.quantize(gen, inputs=calib)``, no method, no config (GPTQ
  rounding on the default scheme);
* ``paper``: the paper's scheme (``QuantConfig.paper()`` where the library has it, else the
  ``QuantConfig()`` defaults, which were the paper's) with vanilla PTQ;
* ``minmax-ptq``: vanilla PTQ, the paper's scheme with min-max weight and activation ranges
  (per-tensor weights, asymmetric activations);
* ``ort-static``: ONNX Runtime ``quantize_static`` (QDQ, per-channel, otherwise defaults) on
  our fp32 ONNX export, run by ONNX Runtime;
* ``nncf``: ``nncf.quantize`` (default preset) on the OpenVINO model read from the same fp32
  ONNX, run by OpenVINO on the CPU;
* ``modelopt-int8``: NVIDIA ModelOpt INT8 through our plugin (fake-quant in torch);
* ``ours-vanilla-w8``: vanilla PTQ on the default scheme (the default until GPTQ replaced it);
* ``ours-qronos-w8``: the default scheme (8-bit weights) with the weights rounded by Qronos on
  the same calibration inputs (the other candidate for the default);
* ``ours-best-w4a8``: the best 4-bit-weight recipe the library offers (see ``W4_CANDIDATES``;
  each candidate is measured and reported, the best is named);
* ``minmax-w4a8``: vanilla PTQ at 4-bit per-channel weights, the paper's scheme with min-max ranges;
* ``ours-mixed-5bit``: mixed precision at <= 5.0 effective weight bits (``effective_bits=5.0``),
  refined after the bit allocation as ``MIXED_REFINE`` says (``ours-mixed-5bit-brecq``: refined by
  STE-BRECQ, ``MIXED_BRECQ``; ``ours-mixed-5bit-qronos``: by Qronos rounding, on the calibration
  photos and crops of them, ``ROUNDING_INPUTS``; ``ours-mixed-5bit-qat``: by LSQ-QAT distillation on crops of the
  calibration photos or fresh latents, ``MIXED_QAT`` / ``MIXED_QAT_LATENTS``; run only when named
  in ``--methods``);
* ``ours-uniform-5bit``: the same budget spent uniformly: the default scheme at 5-bit weights,
  vanilla PTQ (what mixed precision has to beat);
* ``ours-uniform-6bit-qronos``: a control above the budget (run only when named): every layer at
  6 bits, Qronos on ``ROUNDING_INPUTS``. Where even it is not within 2 dB of our W8A8, the
  mixed-precision target asks of 5.0 bits more than a whole extra bit gives with these roundings.

A method the library does not offer yet is reported as "not available" with the reason. The
wall time is the quantization call (for ORT / NNCF: the tool's calibration + quantization, the
shared fp32 ONNX export counted once, separately). "Left float" lists the conv / linear layers
each tool did not quantize. Writes ``quality_suite.json``, ``.md`` and ``.png`` to ``--out``.

Each run (a generator x a method, and per generator the fp32 export with its ONNX Runtime vs
torch noise floor) is measured by the harness (`gan_brevitas.harness.sweep`, under torch seed 0)
and cached in ``--cache`` (``benchmarks/.cache/quality_suite``), keyed by the generator's and the
inputs' content, the code and the tools' versions: an interrupted benchmark resumes, a repeated
one measures nothing (``--fresh`` measures every run again).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import math
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.suite import SuiteEntry, load_suite, training_inputs
from benchmarks.suite.qfid import QFID_FAMILIES, SOURCE_SHA256 as QFID_SOURCE, qfid_scores
from gan_brevitas import QuantConfig, recipes
from gan_brevitas.backends import backend_for
from gan_brevitas.errors import MetricError
from gan_brevitas.harness import Report, ResultRow, Run, RunCache, package_fingerprint, sweep, write_report
from gan_brevitas.metrics.psnr import psnr
from gan_brevitas.qat.checkpoint import module_sha256, tensor_sha256
from gan_brevitas.quant.convert import quant_layers

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("quality_suite")
CACHE = Path(__file__).resolve().parent / ".cache" / "quality_suite"
CACHE_FORMAT = "benchmarks/quality_suite/1"

W8_TOOLS = ("ort-static", "nncf", "modelopt-int8")
CONV_OPS_ONNX = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CONV_OPS_OV = ("Convolution", "ConvolutionBackpropData", "GroupConvolution", "MatMul")


class NotAvailable(Exception):
    """The library (or this machine) does not offer the method yet."""


@dataclass
class Outcome:
    """What a method produced: its test outputs, the layers left float, candidates tried, and
    its outputs on the calibration inputs (ours only: how a best candidate is picked without
    looking at the test images)."""

    output: Tensor
    left_float: list[str]
    detail: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    calib_output: Optional[Tensor] = None


# ----------------------------------------------------------------------------- helpers


def _per_image_psnr(out: Tensor, ref: Tensor, data_range: float) -> list[float]:
    return [psnr(out[i : i + 1], ref[i : i + 1], data_range=data_range) for i in range(out.shape[0])]


def _run_torch(model: nn.Module, inputs: Tensor) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(batch) for batch in inputs.split(8)])


def _left_float_ours(qmodel: nn.Module) -> list[str]:
    """What the model's own backend (Brevitas or ModelOpt) reports as kept float."""
    return [f"{r.name} ({r.note})" for r in backend_for(qmodel).describe_rows(qmodel) if r.kind == "float"]


def _quantize_ours(entry: SuiteEntry, method: Optional[str], config: Optional[QuantConfig], **options: Any) -> Outcome:
    args: dict[str, Any] = {"inputs": options.pop("inputs", entry.calib)}
    if config is not None:
        args["config"] = config
    if method in (None, "vanilla-ptq", "mixed-precision", "bound-distill", "gptq", "qronos"):
        options.setdefault("progress", False)
    if method in ("vanilla-ptq", "mixed-precision", "bound-distill", "gptq", "qronos"):
        options.setdefault("num_samples", entry.calib.shape[0])
    qmodel = recipes.quantize(entry.model, method, **args, **options) if method else recipes.quantize(
        entry.model, **args, **options
    )
    info = getattr(qmodel, "gan_brevitas", None)
    detail = f"method={getattr(info, 'method', method)}, effective weight bits {_effective_bits(qmodel):.2f}"
    return Outcome(_run_torch(qmodel, entry.test), _left_float_ours(qmodel), detail,
                   calib_output=_run_torch(qmodel, entry.calib))


def _effective_bits(qmodel: nn.Module) -> float:
    """Average weight bits of the quantized layers, weighted by parameter count."""
    layers = [(layer.weight.numel(), float(layer.quant_weight().bit_width)) for _, layer in quant_layers(qmodel)]
    total = sum(n for n, _ in layers)
    return sum(n * b for n, b in layers) / total if total else float("nan")


def _paper_config(**changes: Any) -> QuantConfig:
    paper = getattr(QuantConfig, "paper", None)
    return paper(**changes) if callable(paper) else QuantConfig(**changes)


# ----------------------------------------------------------------------------- ONNX anchors


def export_fp32_onnx(model: nn.Module, example: Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example[:1],), str(path), input_names=["x"], output_names=["y"], opset_version=17,
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False,
        )  # fmt: skip


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_run(path: Path, inputs: Tensor, threads: int) -> Tensor:
    session = _ort_session(path, threads)
    outs = [session.run(None, {"x": inputs[i : i + 1].numpy()})[0] for i in range(inputs.shape[0])]
    return torch.from_numpy(np.concatenate(outs))


def _onnx_float_layers(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path)).graph
    producers = {out: node for node in graph.node for out in node.output}
    left = []
    for node in graph.node:
        if node.op_type not in CONV_OPS_ONNX:
            continue
        weight = producers.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None or weight.op_type != "DequantizeLinear":
            left.append(f"{node.name} ({node.op_type})")
    return left


def ort_static(entry: SuiteEntry, fp32: Path, work: Path, threads: int) -> Outcome:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self, batches: Tensor) -> None:
            self.items = iter([{"x": batches[i : i + 1].numpy()} for i in range(batches.shape[0])])

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            return next(self.items, None)

    out_path = work / f"{entry.name}.ort-int8.onnx"
    quantize_static(str(fp32), str(out_path), Reader(entry.calib), quant_format=QuantFormat.QDQ, per_channel=True)
    return Outcome(_ort_run(out_path, entry.test, threads), _onnx_float_layers(out_path), "QDQ, per_channel=True")


def _ov_float_layers(model: Any) -> list[str]:
    left = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in CONV_OPS_OV:
            continue
        sources = [op.input(i).get_source_output().get_node() for i in range(min(2, op.get_input_size()))]
        if not any(s.get_type_name() == "FakeQuantize" for s in sources):
            left.append(f"{op.get_friendly_name()} ({op.get_type_name()})")
    return left


def nncf_ptq(entry: SuiteEntry, fp32: Path, threads: int) -> Outcome:
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(fp32))
    dataset = nncf.Dataset([entry.calib[i : i + 1].numpy() for i in range(entry.calib.shape[0])])
    quantized = nncf.quantize(model, dataset, subset_size=entry.calib.shape[0])
    left = _ov_float_layers(quantized)
    compiled = core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads})
    outs = [compiled(entry.test[i : i + 1].numpy())[0] for i in range(entry.test.shape[0])]
    return Outcome(torch.from_numpy(np.concatenate(outs)), left, f"nncf {nncf.__version__}, default preset")


# ----------------------------------------------------------------------------- our 4-bit and mixed


#: Bound distillation in ``ours-best-w4a8`` (W4A8, 1 thread: srvgg_x4 26.7 dB vs 25.0 vanilla in 85 s,
#: srgan_x4 34.1 vs 28.7 in 290 s; benchmarks/results/quality_suite_w4_mixed.md).
W4_DISTILL = {"steps": 100, "lr": 3e-2}
#: The refinement ``ours-mixed-5bit`` runs after the bit allocation (srvgg_x4 29.2 dB vs 27.2 plain,
#: STE-BRECQ 50 27.9, AR-BRECQ 100 27.8; srgan_x4 44.4 vs 42.2 plain, STE-BRECQ 50 44.5).
MIXED_REFINE = {"refine": "bound-distill", "refine_steps": 100}
#: The same allocation refined by block reconstruction instead (column "ours-mixed-5bit-brecq").
MIXED_BRECQ = {"refine": "ste-brecq", "refine_steps": 150}


def _w4_candidates(brecq_steps: int) -> list[tuple[str, str, QuantConfig, dict[str, Any]]]:
    """(label, method, config, options) of the 4-bit-weight recipes this library offers: the
    default scheme at 4 bits (per-channel MSE weights, MSE activations, bias correction, float
    tail), GPTQ and Qronos rounding from it, bound distillation from it (``W4_DISTILL``), and
    with ``brecq_steps`` AdaRound block reconstruction (AR-BRECQ) and STE-BRECQ started from it."""
    w4 = QuantConfig(weight_bits=4)
    candidates = [("vanilla, default scheme at W4 (mse weights + mse acts + bias correction)", "vanilla-ptq", w4, {}),
                  ("gptq from the default scheme at W4", "gptq", w4, {}),
                  ("qronos from the default scheme at W4", "qronos", w4, {}),
                  (f"bound-distill {W4_DISTILL['steps']} steps from the default scheme at W4", "bound-distill", w4,
                   W4_DISTILL)]  # fmt: skip
    if brecq_steps:
        for method in ("ar-brecq", "ste-brecq"):
            candidates.append((f"{method} {brecq_steps} steps/block from the default scheme at W4", method, w4,
                               {"steps": brecq_steps}))  # fmt: skip
    return candidates


def ours_w4_best(entry: SuiteEntry, reference: Tensor, data_range: float, brecq_steps: int) -> Outcome:
    """The 4-bit candidate closest to the float model on the CALIBRATION inputs (what a user
    can check); each candidate's test PSNR is recorded beside it."""
    calib_reference = _run_torch(entry.model, entry.calib)
    best: Optional[tuple[float, Outcome]] = None
    tried = []
    for label, method, config, options in _w4_candidates(brecq_steps):
        start = time.perf_counter()
        if method.endswith("brecq"):
            n = entry.calib.shape[0]
            options = {**options, "num_samples": n, "calibration_samples": n, "batch_size": min(4, n), "progress": False}
        try:
            outcome = _quantize_ours(entry, method, config, **options)
        except Exception as error:  # a candidate the library rejects: record and go on
            tried.append({"candidate": label, "error": f"{type(error).__name__}: {error}"[:300]})
            continue
        per_image = _per_image_psnr(outcome.output, reference, data_range)
        score = float(np.mean(_per_image_psnr(outcome.calib_output, calib_reference, data_range)))
        tried.append({"candidate": label, "psnr_db": round(float(np.mean(per_image)), 2), "calib_psnr_db": round(score, 2),
                      "seconds": round(time.perf_counter() - start, 1),
                      "psnr_per_image": [round(v, 2) for v in per_image]})  # fmt: skip
        if best is None or score > best[0]:
            best = (score, dataclasses.replace(outcome, detail=label))
    if best is None:
        raise NotAvailable(f"no 4-bit candidate ran: {tried}")
    return dataclasses.replace(best[1], candidates=tried)


def ours_mixed(entry: SuiteEntry, refine: dict[str, Any] = MIXED_REFINE) -> Outcome:
    """Mixed precision at <= 5.0 effective weight bits, refined after the bit allocation."""
    return _quantize_ours(entry, "mixed-precision", None, effective_bits=5.0, **refine)


#: Calibration inputs of ``ours-mixed-5bit-qronos``: a rounding method fits each layer to its
#: inputs, so it gets more of them from the same calibration side: the calibration photos and
#: random crops of them (64 in all), or 512 fresh latents. Exploratory runs, srvgg_x4, uniform
#: 5-bit weights + Qronos: 8 photos 33.64 dB, 64 crops 34.40, 256 crops 34.53 (4x the time).
ROUNDING_INPUTS = {"images": 64, "latents": 512}


def rounding_inputs(entry: SuiteEntry) -> Tensor:
    """The calibration inputs and more from the same side (`ROUNDING_INPUTS`)."""
    if entry.calib.dim() == 2:
        return training_inputs(entry)(ROUNDING_INPUTS["latents"])
    torch.manual_seed(0)
    extra = training_inputs(entry)(ROUNDING_INPUTS["images"] - entry.calib.shape[0])
    return torch.cat([entry.calib, extra])


def ours_mixed_rounded(entry: SuiteEntry) -> Outcome:
    """Mixed precision at <= 5.0 effective weight bits, Qronos rounding with the chosen bits,
    on `rounding_inputs`."""
    return _quantize_ours(entry, "mixed-precision", None, inputs=rounding_inputs(entry), effective_bits=5.0,
                          refine="qronos", num_samples=ROUNDING_INPUTS["latents"])


#: LSQ-QAT distillation after the bit allocation (``ours-mixed-5bit-qat``): weights and quantizers
#: trained at the chosen bits against the float model's outputs (MSE, no discriminator) on random
#: crops of the calibration photos, or fresh latents. Exploratory runs, 1 thread: srvgg_x4 27.2 ->
#: 32.7 dB (12 epochs x 512 crops, lr 2e-4, 691 s). A noise-to-image generator's inputs cost
#: nothing, and a small fixed set is memorised (dcgan_mnist, 60 epochs x 2048 latents: training
#: loss 0.013 -> 0.0023, held-out PSNR flat at 27 dB), so it trains on many more, for fewer epochs
#: (4 x 16384: 27.9 dB, vs 26.2 with 20 x 512).
MIXED_QAT = {"epochs": 20, "num_train": 512, "batch_size": 8, "loss": "mse", "adv_weight": 0.0,
             "lr_weights": 2e-4, "lr_quant": 2e-5}
MIXED_QAT_LATENTS = {**MIXED_QAT, "epochs": 4, "num_train": 16384}


def ours_mixed_qat(entry: SuiteEntry) -> Outcome:
    """Mixed precision at <= 5.0 effective weight bits, then LSQ-QAT at those bits (``MIXED_QAT``)."""
    n = entry.calib.shape[0]
    mixed = recipes.quantize(entry.model, "mixed-precision", inputs=entry.calib, effective_bits=5.0, num_samples=n,
                             progress=False)
    with tempfile.TemporaryDirectory() as out_dir:
        return _quantize_ours(entry, "lsq-qat", mixed.gan_brevitas.config, inputs=training_inputs(entry),
                              num_samples=n, eval_samples=n, out_dir=out_dir, progress=False,
                              **(MIXED_QAT_LATENTS if entry.calib.dim() == 2 else MIXED_QAT))


# ----------------------------------------------------------------------------- the run


class Workspace:
    """What one suite generator's runs share, each made on first use (a cached run needs
    neither): the float model's outputs for the test inputs, and its fp32 ONNX export (which
    ONNX Runtime and NNCF quantize)."""

    def __init__(self, entry: SuiteEntry, work: Path, threads: int) -> None:
        self.entry, self.work, self.threads = entry, work, threads
        self.data_range = entry.output_range[1] - entry.output_range[0]
        self.export_s = math.nan
        self._reference: Optional[Tensor] = None
        self._fp32: Optional[Path] = None

    def reference(self) -> Tensor:
        if self._reference is None:
            self._reference = _run_torch(self.entry.model, self.entry.test)
        return self._reference

    def fp32(self) -> Path:
        if self._fp32 is None:
            path = self.work / f"{self.entry.name}.fp32.onnx"
            start = time.perf_counter()
            export_fp32_onnx(self.entry.model, self.entry.calib, path)
            self.export_s, self._fp32 = time.perf_counter() - start, path
        return self._fp32


def method_table(ws: Optional[Workspace], brecq_steps: int = 0) -> dict[str, Callable[[SuiteEntry], Outcome]]:
    """method -> how it quantizes and runs a suite entry (``ws`` None: just the names)."""
    minmax = dict(weight_range="minmax", act_range="minmax")
    return {
        "ours-default": lambda e: _quantize_ours(e, None, None),
        "paper": lambda e: _quantize_ours(e, "vanilla-ptq", _paper_config()),
        "minmax-ptq": lambda e: _quantize_ours(e, "vanilla-ptq", _paper_config(**minmax)),
        "ort-static": lambda e: ort_static(e, ws.fp32(), ws.work, ws.threads),
        "nncf": lambda e: nncf_ptq(e, ws.fp32(), ws.threads),
        "modelopt-int8": lambda e: _quantize_ours(e, "modelopt-int8", None),
        "ours-vanilla-w8": lambda e: _quantize_ours(e, "vanilla-ptq", None),
        "ours-qronos-w8": lambda e: _quantize_ours(e, "qronos", None),
        "ours-best-w4a8": lambda e: ours_w4_best(e, ws.reference(), ws.data_range, brecq_steps),
        "minmax-w4a8": lambda e: _quantize_ours(e, "vanilla-ptq", _paper_config(weight_bits=4, per_channel=True, **minmax)),
        "ours-mixed-5bit": ours_mixed,
        "ours-mixed-5bit-brecq": lambda e: ours_mixed(e, MIXED_BRECQ),
        "ours-mixed-5bit-qronos": ours_mixed_rounded,
        "ours-mixed-5bit-qat": ours_mixed_qat,
        "ours-uniform-5bit": lambda e: _quantize_ours(e, "vanilla-ptq", QuantConfig(weight_bits=5)),
        MIXED_CONTROL: lambda e: _quantize_ours(e, "qronos", QuantConfig(weight_bits=6), inputs=rounding_inputs(e),
                                                num_samples=ROUNDING_INPUTS["latents"]),
    }


MIXED_CONTROL = "ours-uniform-6bit-qronos"  # reported beside the mixed-precision target
METHODS = tuple(method_table(None))
#: Run only when named in --methods (QAT takes 10-20 min per generator on 2 cores; Qronos on
#: 64 inputs an hour on SRGAN x4).
OPT_IN_METHODS = ("ours-mixed-5bit-qat", MIXED_CONTROL)
MIXED_METHODS = ("ours-mixed-5bit", "ours-mixed-5bit-brecq", "ours-mixed-5bit-qronos", "ours-mixed-5bit-qat")  # each held to the mixed-precision target
ONNX_METHODS = ("ort-static", "nncf")  # quantize the shared fp32 export (made before their timer starts)
FLOAT_RUN = "fp32-onnx"  # per generator: the fp32 export and its ONNX Runtime vs torch noise floor


def suite_runs(entries: list[SuiteEntry], methods: list[str], brecq_steps: int) -> list[Run[None]]:
    """Per generator: the fp32 noise-floor run, then one run per method."""
    runs: list[Run[None]] = []
    for entry in entries:
        runs.append(Run(entry.name, FLOAT_RUN, "fp32 ONNX Runtime vs torch"))
        runs += [Run(entry.name, m, m, {"brecq_steps": brecq_steps} if m == "ours-best-w4a8" else {}) for m in methods]
    return runs


def noise_floor_row(ws: Workspace) -> ResultRow:
    """The fp32 ONNX export (its wall time) and PSNR of ONNX Runtime's fp32 output vs torch's."""
    entry = ws.entry
    output = _ort_run(ws.fp32(), entry.test, ws.threads)
    floor = _per_image_psnr(output, ws.reference(), ws.data_range)
    metrics: dict[str, Any] = {"psnr_db": round(float(np.mean(floor)), 1)}
    if entry.family in QFID_FAMILIES:
        metrics["qfid"] = qfid_scores(output, ws.reference())["qfid"]
    return ResultRow(entry.name, FLOAT_RUN, "fp32 ONNX Runtime vs torch", metrics,
                     int(entry.test.shape[0]), round(ws.export_s, 2),
                     {"n_calib": int(entry.calib.shape[0]), "input_size": entry.input_size})


def _qfid_fields(output: Tensor, reference: Tensor) -> dict[str, Any]:
    """The qFID scores, or None with the reason when the images cannot be scored (NaN, out of range)."""
    try:
        return qfid_scores(output, reference)
    except MetricError as err:
        return {"qfid": None, "qfid_halves": None, "qfid_error": str(err)[:300]}


def method_row(ws: Workspace, method: str, quantize: Callable[[SuiteEntry], Outcome]) -> ResultRow:
    """One method on one generator: PSNR per image vs the float output; a method that is not
    available or fails is a row with that status, not a stopped comparison."""
    entry, reference = ws.entry, ws.reference()
    if method in ONNX_METHODS:
        ws.fp32()
    fields: dict[str, Any] = {"family": entry.family, "status": "ok", "psnr_per_image": [], "left_float": [],
                              "detail": "", "candidates": []}  # fmt: skip
    psnr_db = None
    start = time.perf_counter()
    try:
        outcome = quantize(entry)
        seconds = round(time.perf_counter() - start, 2)
        per_image = [round(v, 2) for v in _per_image_psnr(outcome.output, reference, ws.data_range)]
        psnr_db = round(float(np.mean(per_image)), 2)
        fields.update(psnr_per_image=per_image, left_float=outcome.left_float, detail=outcome.detail,
                      candidates=outcome.candidates)  # fmt: skip
        if entry.family in QFID_FAMILIES:
            fields.update(_qfid_fields(outcome.output, reference))
    except NotAvailable as error:
        seconds = round(time.perf_counter() - start, 2)
        fields.update(status="not available", detail=str(error)[:400])
    except Exception as error:  # one failing tool must not sink the whole comparison
        seconds = round(time.perf_counter() - start, 2)
        log.exception("%s / %s failed", entry.name, method)
        fields.update(status="error", detail=f"{type(error).__name__}: {error}"[:400])
    log.info("%s %-16s %s %s dB %s s", entry.name, method, fields["status"], psnr_db, seconds)
    return ResultRow(entry.name, method, method, {"psnr_db": psnr_db}, int(entry.test.shape[0]), seconds, fields)


def measure_run(run: Run[None], spaces: dict[str, Workspace], brecq_steps: int) -> ResultRow:
    """One run, under torch seed 0 whatever ran before it (a resumed sweep measures the same)."""
    ws = spaces[run.model]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if run.method == FLOAT_RUN:
            return noise_floor_row(ws)
        return method_row(ws, run.method, method_table(ws, brecq_steps)[run.method])


def run_context(entries: list[SuiteEntry], threads: int, versions: dict[str, str]) -> Callable[[Run[None]], dict]:
    """A run's key besides its own: the generator's and inputs' content, the code, the tools."""
    common = {"package": package_fingerprint(), "benchmark": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
              "qfid": QFID_SOURCE, "versions": versions, "threads": threads}  # fmt: skip
    ids = {e.name: {"generator": module_sha256(e.model), "output_range": list(e.output_range),
                    "inputs": tensor_sha256([("calib", e.calib), ("test", e.test)])} for e in entries}  # fmt: skip
    return lambda run: {**common, "entry": ids[run.model]}


def measure_suite(entries: list[SuiteEntry], methods: list[str], args: argparse.Namespace,
                  versions: dict[str, str]) -> list[ResultRow]:
    """Every run not in the cache yet (all with ``--fresh``), each stored as it finishes."""
    with tempfile.TemporaryDirectory() as tmp:
        spaces = {e.name: Workspace(e, Path(tmp), args.threads) for e in entries}
        outcomes = sweep(suite_runs(entries, methods, args.brecq_steps),
                         lambda run, key: (measure_run(run, spaces, args.brecq_steps), {}),
                         RunCache(args.cache, CACHE_FORMAT), run_context(entries, args.threads, versions),
                         progress=False, fresh=args.fresh)  # fmt: skip
    return [o.row for o in outcomes]


def meta(row: ResultRow) -> dict[str, Any]:
    """The per-generator facts of the report, from its noise-floor row."""
    return {"fp32_onnx_export_s": row.seconds, "fp32_ort_vs_torch_psnr_db": row.metrics["psnr_db"], "n_test": row.n,
            "n_calib": row.fields["n_calib"], "input_size": row.fields["input_size"],
            "fp32_ort_vs_torch_qfid": row.metrics.get("qfid")}  # fmt: skip


# ----------------------------------------------------------------------------- report


def _get(rows: list[dict[str, Any]], model: str, method: str) -> Optional[dict[str, Any]]:
    return next((r for r in rows if r["model"] == model and r["method"] == method and r["status"] == "ok"), None)


def _paired(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    diffs = [x - y for x, y in zip(a["psnr_per_image"], b["psnr_per_image"])]
    return float(np.mean(diffs)), float(np.min(diffs))


def targets(rows: list[dict[str, Any]], models: list[str]) -> list[dict[str, Any]]:
    """The three quality targets per model (default W8A8 >= the best other tool + 0.5 dB, best
    W4A8 >= W4A8 min-max + 3 dB on the super-resolution and image-to-image generators, mixed <= 5
    bits within 2 dB of our W8A8): met or missed, by
    how much (paired per image); ``rows`` as the report holds them."""
    out = []
    for model in models:
        ours, w4, w4mm = (_get(rows, model, m) for m in ("ours-default", "ours-best-w4a8", "minmax-w4a8"))
        anchors = [r for r in (_get(rows, model, m) for m in W8_TOOLS) if r is not None]
        if ours and anchors:
            best = max(anchors, key=lambda r: r["psnr_db"] or -math.inf)
            mean, worst = _paired(ours, best)
            out.append({"model": model, "target": "default W8A8 >= best anchor + 0.5 dB", "anchor": best["method"],
                        "margin_db": round(mean, 2), "worst_image_db": round(worst, 2), "met": mean >= 0.5})  # fmt: skip
            if ours.get("qfid") is not None:
                out.append(_qfid_target(model, ours, anchors))
        if w4 and w4mm and w4.get("family") != "noise-to-image":  # the 4-bit goal is for SR and image-to-image
            mean, worst = _paired(w4, w4mm)
            out.append({"model": model, "target": "best W4A8 >= W4A8 min-max + 3 dB", "anchor": "minmax-w4a8",
                        "margin_db": round(mean, 2), "worst_image_db": round(worst, 2), "met": mean >= 3.0})  # fmt: skip
        labels = {m: f"{m} (<= 5.0 bits)" for m in MIXED_METHODS}
        labels[MIXED_CONTROL] = f"control: {MIXED_CONTROL} (6.0 bits, above the budget)"  # how far an extra bit gets
        for method, label in labels.items():
            mixed = _get(rows, model, method)
            if mixed and ours:
                mean, worst = _paired(mixed, ours)
                out.append({"model": model, "target": f"{label} within 2 dB of our W8A8", "anchor": "ours-default",
                            "margin_db": round(mean, 2), "worst_image_db": round(worst, 2), "met": mean >= -2.0})
    return out


def _qfid_target(model: str, ours: dict[str, Any], anchors: list[dict[str, Any]]) -> dict[str, Any]:
    """Default W8A8 qFID below the lowest anchor qFID, on all test latents and on each half
    (an anchor whose images could not be scored is left out)."""
    best = min((r for r in anchors if r.get("qfid") is not None), key=lambda r: r["qfid"], default=None)
    if best is None:
        return {"model": model, "target": "default W8A8 qFID < best anchor's (all latents and each half)",
                "anchor": "none scored", "qfid": [ours["qfid"], math.nan],
                "qfid_halves": [ours["qfid_halves"], [math.nan, math.nan]], "met": False}
    met = ours["qfid"] < best["qfid"] and all(a < b for a, b in zip(ours["qfid_halves"], best["qfid_halves"]))
    return {"model": model, "target": "default W8A8 qFID < best anchor's (all latents and each half)",
            "anchor": best["method"], "qfid": [ours["qfid"], best["qfid"]],
            "qfid_halves": [ours["qfid_halves"], best["qfid_halves"]], "met": met}


def _margin_cells(t: dict[str, Any]) -> str:
    """The margin and worst-case cells of a target row: dB, or qFID ours vs anchor (with the halves)."""
    if "qfid" in t:
        (ours, anchor), (ours_halves, anchor_halves) = t["qfid"], t["qfid_halves"]
        halves = ", ".join(f"{a:.4f} vs {b:.4f}" for a, b in zip(ours_halves, anchor_halves))
        return f"qFID {ours:.4f} vs {anchor:.4f} | halves: {halves}"
    return f"{t['margin_db']:+.2f} | {t['worst_image_db']:+.2f}"


def _cell(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return row["status"]
    qfid = f", qFID {row['qfid']:.4f}" if row.get("qfid") is not None else ""
    return f"{row['psnr_db']:.2f}{qfid} ({row['seconds']:.0f} s)"


def _processor() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
        features = sorted({f for f in ("avx512_vnni", "avx_vnni", "avx2", "amx_int8") if f" {f}" in flags})
        name = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "")
        return f"{name} ({', '.join(features)})"
    except OSError:
        return platform.processor()


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def write_markdown(report: dict[str, Any], models: list[str], methods: list[str]) -> str:
    rows = report["rows"]
    lines = ["# Quality on the real-generator suite: our recipes vs ORT, NNCF, ModelOpt", "",
             f"`{report['command']}` on {report['processor']}, {report['threads']} threads, "
             f"load average {report['load_start']} at start; torch {report['versions']['torch']}, "
             f"onnxruntime {report['versions'].get('onnxruntime')}, nncf {report['versions'].get('nncf')}, "
             f"openvino {report['versions'].get('openvino')}.", "",
             "PSNR (dB) of each method's output vs the float model's output on held-out inputs "
             "(n test images / latents per model in the header); higher is better. For the noise-to-image "
             "generator also qFID (Fréchet distance to the float model's images for the same latents, lower "
             "is better) in the offline demo CNN's features, not comparable with Inception FIDs. "
             "Time: the quantization call in seconds.", ""]  # fmt: skip
    header = "| method | " + " | ".join(f"{m} (n={report['meta'][m]['n_test']})" for m in models) + " |"
    lines += [header, "|---" * (len(models) + 1) + "|"]
    for method in methods:
        cells = [_cell(next(r for r in rows if r["model"] == model and r["method"] == method)) for model in models]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Noise floor: fp32 ONNX Runtime vs torch float, PSNR: " + ", ".join(
        f"{m} {report['meta'][m]['fp32_ort_vs_torch_psnr_db']} dB" for m in models) + "."
        + "".join(f" qFID {m}: {report['meta'][m]['fp32_ort_vs_torch_qfid']}." for m in models
                  if report["meta"][m].get("fp32_ort_vs_torch_qfid") is not None), ""]
    lines += ["## Targets (issue 14), paired per image", "", "| model | target | vs | mean margin (dB) | worst image (dB) | met |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for t in report["targets"]:
        lines.append(f"| {t['model']} | {t['target']} | {t['anchor']} | {_margin_cells(t)} | {'yes' if t['met'] else 'NO'} |")
    lines += ["", "## Layers left float, per tool", ""]
    for model in models:
        for row in rows:
            left = row["left_float"]
            if row["model"] == model and row["status"] == "ok" and left:
                lines.append(f"- {model} / {row['method']}: " + "; ".join(left[:8])
                             + (f" (+{len(left) - 8} more)" if len(left) > 8 else ""))  # fmt: skip
    lines += ["", "## Details", ""]
    for row in rows:
        if row["detail"] or row["candidates"]:
            shown = [{k: v for k, v in c.items() if k != "psnr_per_image"} for c in row["candidates"]]
            extra = f" candidates: {shown}" if shown else ""
            lines.append(f"- {row['model']} / {row['method']} [{row['status']}]: {row['detail']}{extra}")
    return "\n".join(lines) + "\n"


def figure(report: dict[str, Any], models: list[str], methods: list[str]) -> Figure:
    """PSNR per model and method, grouped bars."""
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(1.6 * len(models) * len(methods) / 4 + 4, 4.5))
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        values = []
        for model in models:
            row = next(r for r in rows if r["model"] == model and r["method"] == method)
            values.append(row["psnr_db"] if row["status"] == "ok" else 0.0)
        ax.bar([i + j * width for i in range(len(models))], values, width, label=method)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models)
    ax.set_ylabel("PSNR vs float (dB), held-out inputs")
    ax.set_title("Quality on the real-generator suite (0 = not available)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def _versions() -> dict[str, str]:
    versions = {"torch": torch.__version__}
    for name in ("onnxruntime", "nncf", "openvino", "brevitas"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # not installed: the method rows say so
            versions[name] = "not installed"
    return versions


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated suite names (default: all)")
    parser.add_argument("--methods", default="", help="comma-separated methods (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="quality_suite", help="output file stem")
    parser.add_argument("--sizes", default="", help="input size overrides in px, e.g. sketch_translator=256")
    parser.add_argument("--brecq-steps", type=int, default=0,
                        help="also try STE-BRECQ at W4 with this many steps per block (slow on a CPU; 0 = skip)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="finished runs (default benchmarks/.cache/quality_suite)")
    parser.add_argument("--fresh", action="store_true", help="measure every run again (the cache is ignored, then updated)")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m] or [m for m in METHODS if m not in OPT_IN_METHODS]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    for noisy in ("nncf", "modelopt", "brevitas"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    sizes = {name: int(px) for name, px in (item.split("=") for item in args.sizes.split(",") if item)}
    entries = load_suite([m for m in args.models.split(",") if m] or None, sizes=sizes)
    versions = _versions()
    report: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.quality_suite", *(sys.argv[1:] if argv is None else argv)]),
        "processor": _processor(), "threads": args.threads, "load_start": _load(), "versions": versions,
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "sources": {e.name: dataclasses.asdict(e.source) for e in entries}, "meta": {}, "rows": [],
    }  # fmt: skip
    start = time.perf_counter()
    rows = measure_suite(entries, args.methods, args, versions)
    models = [e.name for e in entries]
    report["meta"] = {r.model: meta(r) for r in rows if r.method == FLOAT_RUN}
    report["rows"] = [r.flat() for r in rows if r.method != FLOAT_RUN]
    report["targets"] = targets(report["rows"], models)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    report["load_end"] = _load()
    markdown = write_markdown(report, models, args.methods)
    write_report(Report.at(args.out, args.name, report, markdown, plot=lambda: figure(report, models, args.methods)))
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
