"""Attack the command line the way a careless or hostile user would, and count the outcomes.

    python benchmarks/hostile_attack.py      # writes benchmarks/results/hostile_attack.{json,md}

Every case runs ``gan-brevitas ...`` in this process (``cli.main``) against files made here
(malicious pickles, tampered quantized files, device nodes, symlinks, FIFOs, corrupt images,
huge declared sizes) and is classified:

- ``clear error``: exit status 1 or 2 with a ``gan-brevitas ...: error:`` message;
- ``ok``: exit 0 where success is the right answer (e.g. an odd but valid image);
- ``raw traceback``: any exception escaping ``cli.main``;
- ``hang``: still running after the per-case time limit;
- ``silent wrong result``: exit 0 where the input should have been refused;
- ``file lost or replaced``: a victim file, symlink target or device node changed;
- ``code execution``: a malicious pickle's marker file appeared.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from gan_brevitas import cli, recipes
from gan_brevitas.harness.writer import Report, markdown_table, write_report

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
TIME_LIMIT_S = 240
SAGAN = dict(image_size=32, z_dim=32, conv_dim=8)


class WritesMarker:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@dataclass
class Case:
    name: str
    argv: list[str]
    expect_error: bool = True
    check: Optional[Callable[[], Optional[str]]] = None  # returns a problem, or None
    env: dict[str, str] = field(default_factory=dict)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def run_case(case: Case, marker: Path) -> dict:
    err, out = io.StringIO(), io.StringIO()
    previous = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = cli.main(case.argv)
        outcome = None
    except Hang:
        code, outcome = None, "hang"
    except SystemExit as exit_:  # argparse usage errors
        code, outcome = exit_.code, None
    except BaseException as exc:  # noqa: BLE001 - this is what we count
        code, outcome = None, "raw traceback"
        err.write(f"{type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    problem = case.check() if case.check else None
    if marker.exists():
        outcome = "code execution"
        marker.unlink()
    elif problem:
        outcome = "file lost or replaced"
    elif outcome is None:
        if code == 0:
            outcome = "silent wrong result" if case.expect_error else "ok"
        else:
            message = err.getvalue()
            outcome = "clear error" if "error:" in message and "Traceback" not in message else "raw traceback"
    return {"case": case.name, "argv": " ".join(case.argv), "exit": code, "outcome": outcome,
            "message": (err.getvalue().strip().splitlines() or [""])[-1][:300], "problem": problem,
            "seconds": round(time.perf_counter() - start, 2)}


def _rewrite_metadata(source: Path, target: Path, change: Callable[[dict], None], tensor_edit=None) -> Path:
    raw = source.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header, data = json.loads(raw[8 : 8 + size]), bytearray(raw[8 + size :])
    change(header)
    if tensor_edit:
        tensor_edit(header, data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    target.write_bytes(struct.pack("<Q", len(text)) + text + bytes(data))
    return target


def _rehash(path: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from gan_brevitas.quant.file_schema import HASH_KEY, content_sha256

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    digest = content_sha256(metadata, load_file(str(path)))
    return _rewrite_metadata(path, path, lambda h: h["__metadata__"].update({HASH_KEY: digest}))


def _scale_edit(value: float):
    def edit(header: dict, data: bytearray) -> None:
        name = next(k for k in header if k.endswith("output_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value"))
        start, _ = header[name]["data_offsets"]
        data[start : start + 4] = struct.pack("<f", value)
    return edit


def _victims(work: Path) -> dict[str, Path]:
    victim = work / "victim.txt"
    victim.write_text("precious")
    paths = {"victim": victim, "dir": work / "a_dir", "link": work / "link.out", "fifo": work / "fifo.out"}
    paths["dir"].mkdir()
    paths["link"].symlink_to(victim)
    os.mkfifo(paths["fifo"])
    try:
        os.mknod(work / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        paths["node"] = work / "null"
    except PermissionError:
        pass
    return paths


def _intact(paths: dict[str, Path]) -> Callable[[], Optional[str]]:
    def check() -> Optional[str]:
        if paths["victim"].read_text() != "precious":
            return "victim file changed"
        if not paths["link"].is_symlink():
            return "symlink replaced"
        if not stat.S_ISFIFO(os.lstat(paths["fifo"]).st_mode):
            return "FIFO replaced"
        if not paths["dir"].is_dir() or any(paths["dir"].iterdir()):
            return "directory changed"
        if "node" in paths and not stat.S_ISCHR(os.lstat(paths["node"]).st_mode):
            return "device node replaced"
        leftovers = [p.name for p in paths["victim"].parent.iterdir() if p.name.endswith(".tmp")]
        return f"temporary files left: {leftovers}" if leftovers else None
    return check


def _external_traversal_onnx(path: Path) -> None:
    """A float Conv whose weight claims to live in ../../../../etc/passwd (external data)."""
    import onnx
    from onnx import TensorProto, helper

    weight = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 1, 1, 1])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../../etc/passwd"), ("offset", "0"), ("length", "4")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@dataclass
class Fixtures:
    """The files the cases attack: victims that must stay intact, checkpoints (a malicious pickle
    among them), a quantized file and tampered copies, image folders, ONNX files."""

    work: Path
    paths: dict[str, Path]
    intact: Callable[[], Optional[str]]
    model: torch.nn.Module
    ckpt: Path
    cyc_ckpt: Path
    evil: Path
    junk: Path
    quantized: Path
    images: dict[str, Path] = field(default_factory=dict)
    tampered: dict[str, Path] = field(default_factory=dict)
    small_onnx: str = ""
    huge_onnx: str = ""

    @property
    def q(self) -> list[str]:
        return ["quantize", "--model", "sagan", "--checkpoint", str(self.ckpt), "--size", "32", "--num-samples", "4"]

    @property
    def out(self) -> list[str]:
        return ["--out", str(self.work / "q_out.safetensors")]

    def with_checkpoint(self, checkpoint: str | Path) -> list[str]:
        """The SAGAN quantize command with another --checkpoint, and --out."""
        return self.q[:3] + ["--checkpoint", str(checkpoint)] + self.q[5:] + self.out

    def config(self, text: str) -> str:
        path = self.work / f"config_{abs(hash(text))}.json"
        path.write_text(text)
        return str(path)


def _model_files(work: Path, marker: Path) -> Fixtures:
    paths = _victims(work)
    model = recipes.build_generator("sagan", **SAGAN)
    ckpt = work / "sagan.pth"
    torch.save(model.state_dict(), ckpt)
    cyc = recipes.build_generator("cyclegan", ngf=4, n_blocks=1, image_size=16)
    cyc_ckpt = work / "cyclegan.pth"
    torch.save(cyc.state_dict(), cyc_ckpt)
    evil = work / "evil.pth"
    torch.save({"weight": WritesMarker(str(marker))}, evil)
    junk = work / "junk.bin"
    junk.write_bytes(os.urandom(4096))
    quantized = work / "q.safetensors"
    z = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    recipes.save(recipes.quantize(model, "vanilla-ptq", inputs=z, num_samples=8, progress=False), quantized)
    return Fixtures(work, paths, _intact(paths), model, ckpt, cyc_ckpt, evil, junk, quantized)


def _image_folders(work: Path) -> dict[str, Path]:
    from PIL import Image

    images = {"good": work / "imgs_good", "corrupt": work / "imgs_corrupt", "empty": work / "imgs_empty",
              "grey": work / "imgs_grey", "textpng": work / "imgs_textpng"}
    for folder in images.values():
        folder.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 20), (i * 40, 10, 10)).save(images["good"] / f"{i}.png")
        Image.new("L", (16, 16), i * 40).save(images["grey"] / f"{i}.png")
    (images["corrupt"] / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    Image.new("RGB", (20, 20)).save(images["corrupt"] / "b.png")
    (images["textpng"] / "readme.png").write_text("not an image")
    return images


def _tampered_files(quantized: Path, work: Path) -> dict[str, Path]:
    tampered = {
        "missing-key": lambda h: h["__metadata__"].pop("method"),
        "config-list": lambda h: h["__metadata__"].update({"config": "[1]"}),
        "generator-string": lambda h: h["__metadata__"].update({"generator": '"sagan"'}),
        "bits-edited": lambda h: h["__metadata__"].update({"config": json.dumps({"weight_bits": 4})}),
        "huge-generator": lambda h: h["__metadata__"].update({"generator": json.dumps(
            {"name": "sagan", "kwargs": {"image_size": 1024, "z_dim": 32, "conv_dim": 4096}})}),
        "dtype-relabelled": lambda h: h[next(k for k in h if k.endswith(".weight"))].update({"dtype": "I32"}),
    }
    files = {name: _rewrite_metadata(quantized, work / f"t_{name}.safetensors", change)
             for name, change in tampered.items()}
    for name, value in (("nan-scale", float("nan")), ("zero-scale", 0.0), ("negative-scale", -1.0)):
        for rehash in (False, True):
            path = _rewrite_metadata(quantized, work / f"t_{name}_{rehash}.safetensors", lambda h: None,
                                     _scale_edit(value))
            files[f"{name}{'-rehashed' if rehash else ''}"] = _rehash(path) if rehash else path
    _rehash(files["dtype-relabelled"])
    return files


def _relu_onnx(path: Path, side: int) -> str:
    """A one-Relu ONNX model declaring a [1, 3, side, side] input."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, side, side])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def build_fixtures(work: Path, marker: Path) -> Fixtures:
    fixtures = _model_files(work, marker)
    fixtures.images = _image_folders(work)
    fixtures.tampered = _tampered_files(fixtures.quantized, work)
    fixtures.small_onnx, fixtures.huge_onnx = _relu_onnx(work / "small.onnx", 4), _relu_onnx(work / "huge.onnx", 100_000)
    return fixtures


def _quantize_cases(f: Fixtures) -> list[Case]:
    q, out, paths, intact = f.q, f.out, f.paths, f.intact
    cq = ["quantize", "--model", "cyclegan", "--checkpoint", str(f.cyc_ckpt), "--num-samples", "4"]
    return [
        Case("quantize: checkpoint missing", f.with_checkpoint(f.work / "none.pth")),
        Case("quantize: checkpoint is a directory", f.with_checkpoint(paths["dir"])),
        Case("quantize: checkpoint is random bytes", f.with_checkpoint(f.junk)),
        Case("quantize: checkpoint is a malicious pickle", f.with_checkpoint(f.evil)),
        Case("quantize: CycleGAN checkpoint given as SAGAN", f.with_checkpoint(f.cyc_ckpt)),
        Case("quantize: --out is a directory", q + ["--out", str(paths["dir"])], check=intact),
        Case("quantize: --out is a symlink", q + ["--out", str(paths["link"])], check=intact),
        Case("quantize: --out is a FIFO", q + ["--out", str(paths["fifo"])], check=intact),
        Case("quantize: --out in a missing directory", q + ["--out", str(f.work / "nope" / "q.safetensors")]),
        Case("quantize: --config missing", q + out + ["--config", str(f.work / "none.json")]),
        Case("quantize: --config not JSON", q + out + ["--config", f.config("{oops")]),
        Case("quantize: --config a list", q + out + ["--config", f.config("[8]")]),
        Case("quantize: --config unknown key", q + out + ["--config", f.config('{"bitz": 8}')]),
        Case("quantize: --config wrong type", q + out + ["--config", f.config('{"weight_bits": "8"}')]),
        Case("quantize: --config skip not a list", q + out + ["--config", f.config('{"skip": 3}')]),
        Case("quantize: --set unknown option", q + out + ["--set", "stepz=10"]),
        Case("quantize: --set without =", q + out + ["--set", "steps"]),
        Case("quantize: --set wrong value type", q + out + ["--set", "num_samples=\"many\""]),
        Case("quantize: --weight-bits 9", q + out + ["--weight-bits", "9"]),
        Case("quantize: --weight-bits 0", q + out + ["--weight-bits", "0"]),
        Case("quantize: --act-quantiles reversed", q + out + ["--act-quantiles", "0.999", "0.001"]),
        Case("quantize: --num-samples 0", q[:-1] + ["0"] + out),
        Case("quantize: --num-samples -5", q[:-1] + ["-5"] + out),
        Case("quantize: --num-samples 100000000", q[:-1] + ["100000000"] + out),
        Case("quantize: --size 0", q[:6] + ["--size", "0", "--num-samples", "4"] + out),
        Case("quantize cyclegan: no --images", cq + out),
        Case("quantize cyclegan: --images missing folder", cq + out + ["--images", str(f.work / "none")]),
        Case("quantize cyclegan: --images empty folder", cq + out + ["--images", str(f.images["empty"])]),
        Case("quantize cyclegan: --images with a corrupt PNG", cq + out + ["--images", str(f.images["corrupt"])]),
        Case("quantize cyclegan: --images with a text file named .png",
             cq + out + ["--images", str(f.images["textpng"])]),
        Case("quantize cyclegan: --images is a file", cq + out + ["--images", str(f.junk)]),
        Case("quantize cyclegan: grey images (valid)", cq + out + ["--images", str(f.images["grey"])],
             expect_error=False),
    ]


def _info_cases(f: Fixtures) -> list[Case]:
    cases = [
        Case("info: random bytes", ["info", str(f.junk)]),
        Case("info: missing file", ["info", str(f.work / "none.safetensors")]),
        Case("info: a directory", ["info", str(f.paths["dir"])]),
    ]
    return cases + [Case(f"info: tampered file ({name})", ["info", str(path)]) for name, path in f.tampered.items()]


def _evaluate_export_cases(f: Fixtures) -> list[Case]:
    paths, intact, quantized = f.paths, f.intact, str(f.quantized)
    ev = ["evaluate", quantized, "--checkpoint", str(f.ckpt), "--n", "16"]
    return [
        Case("evaluate: --n 0", ev[:-1] + ["0"]),
        Case("evaluate: --n 1", ev[:-1] + ["1"]),
        Case("evaluate: --n 10000000", ev[:-1] + ["10000000"]),
        Case("evaluate: quantized file missing", ["evaluate", str(f.work / "none.safetensors"), "--checkpoint",
                                                  str(f.ckpt)]),
        Case("evaluate: --checkpoint of another size", ev[:2] + ["--checkpoint", str(f.cyc_ckpt), "--n", "16"]),
        Case("evaluate: --inception-weights malicious pickle", ev + ["--inception-weights", str(f.evil)]),
        Case("evaluate: --inception-weights missing", ev + ["--inception-weights", str(f.work / "none.pth")]),
        Case("evaluate: --inception-weights random bytes", ev + ["--inception-weights", str(f.junk)]),
        Case("evaluate: --grid is a symlink", ev + ["--grid", str(paths["link"])], check=intact),
        Case("evaluate: --grid is a directory", ev + ["--grid", str(paths["dir"])], check=intact),
        Case("export: --out is a symlink", ["export", quantized, "--out", str(paths["link"])], check=intact),
        Case("export: --out is a FIFO", ["export", quantized, "--out", str(paths["fifo"])], check=intact),
        Case("export: source is random bytes", ["export", str(f.junk), "--out", str(f.work / "g.onnx")]),
        Case("export: tampered source (NaN scale, rehashed)",
             ["export", str(f.tampered["nan-scale-rehashed"]), "--out", str(f.work / "g.onnx")]),
        Case("export: --opset 5", ["export", quantized, "--out", str(f.work / "g.onnx"), "--opset", "5"]),
    ]


def _bench_reproduce_demo_cases(f: Fixtures) -> list[Case]:
    results_md = f.work / "repro" / "RESULTS.md"
    results_md.parent.mkdir()
    results_md.write_text("measured rows")

    def results_unchanged() -> Optional[str]:
        return None if results_md.read_text() == "measured rows" else "RESULTS.md overwritten"

    small, recipe = f.small_onnx, str(ROOT / "recipes" / "figure1" / "sagan_act_quantiles.toml")
    return [
        Case("check-trt: random bytes", ["check-trt", str(f.junk)]),
        Case("check-trt: missing file", ["check-trt", str(f.work / "none.onnx")]),
        Case("bench: --batch 0", ["bench", small, "--batch", "0"]),
        Case("bench: --batch -1", ["bench", small, "--batch", "-1"]),
        Case("bench: --runs 0", ["bench", small, "--runs", "0"]),
        Case("bench: huge declared input", ["bench", f.huge_onnx, "--batch", "1"]),
        Case("bench: random bytes", ["bench", str(f.junk)]),
        Case("bench: --json is a symlink", ["bench", small, "--batch", "1", "--runs", "1", "--warmup", "0",
                                           "--json", str(f.paths["link"])], check=f.intact),
        Case("reproduce: --report-only without cache",
             ["reproduce", recipe, "--profile", "tiny", "--report-only", "--out", str(results_md.parent)],
             check=results_unchanged),
        Case("reproduce: recipe file missing", ["reproduce", str(f.work / "none.toml"), "--out", str(f.work / "r2")]),
        Case("reproduce: recipe not TOML", ["reproduce", str(f.junk), "--out", str(f.work / "r3")]),
        Case("demo: --out-dir is a file", ["demo", "--out-dir", str(f.paths["victim"]), "--models", "sagan",
                                            "--sections", "ptq", "--n", "8"], check=f.intact),
        Case("demo: --n 0", ["demo", "--n", "0", "--out-dir", str(f.work / "d")]),
    ]


def _inf_checkpoint(f: Fixtures) -> Path:
    path = f.work / "sagan_inf.pth"
    state = f.model.state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point() and v.dim() > 1)
    state[first] = torch.full_like(state[first], float("inf"))
    torch.save(state, path)
    return path


def _edge_cases(f: Fixtures) -> list[Case]:
    q, out, paths, intact = f.q, f.out, f.paths, f.intact
    inf_ckpt = _inf_checkpoint(f)
    demo_out = f.work / "demo_out"
    demo_out.mkdir()
    (demo_out / "report.md").symlink_to(paths["victim"])
    repro_out = f.work / "repro_dir"
    (repro_out / "RESULTS.md").mkdir(parents=True)
    traversal = f.work / "traversal.onnx"
    _external_traversal_onnx(traversal)
    recipe = str(ROOT / "recipes" / "figure1" / "sagan_act_quantiles.toml")
    cases = [
        Case("quantize: checkpoint with Inf weights", f.with_checkpoint(inf_ckpt)),
        Case("quantize: --act-quantiles nan 0.5", q + out + ["--act-quantiles", "nan", "0.5"]),
        Case("quantize: --config with NaN momentum", q + out + ["--config", f.config('{"quantile_momentum": NaN}')]),
        Case("quantize: --seed -1 (valid)", q + out + ["--seed", "-1"], expect_error=False),
        Case("quantize: --out is '.'", q + ["--out", "."]),
        Case("info: /dev/zero", ["info", "/dev/zero"]),
        Case("info: /dev/urandom", ["info", "/dev/urandom"]),
        Case("quantize: checkpoint is /dev/zero", f.with_checkpoint("/dev/zero")),
        Case("demo: report.md in --out-dir is a symlink", ["demo", "--out-dir", str(demo_out), "--models", "sagan",
                                                          "--sections", "ptq", "--n", "8"], check=intact),
        Case("reproduce: RESULTS.md is a directory", ["reproduce", recipe, "--profile", "tiny", "--out", str(repro_out)]),
        Case("reproduce: --threads 0", ["reproduce", recipe, "--profile", "tiny", "--report-only", "--threads", "0",
                                        "--out", str(f.work / "r4")]),
        Case("bench: --threads -1", ["bench", f.small_onnx, "--batch", "1", "--runs", "1", "--threads", "-1"]),
        Case("check-trt: external data path traversal (graph only, valid)", ["check-trt", str(traversal)],
             expect_error=False),
        Case("bench: external data path traversal", ["bench", str(traversal), "--batch", "1", "--runs", "1"]),
    ]
    if "node" in paths:
        cases += [
            Case("quantize: --out is a device node", q + ["--out", str(paths["node"])], check=intact),
            Case("export: --out is a device node", ["export", str(f.quantized), "--out", str(paths["node"])],
                 check=intact),
        ]
    return cases


def build_cases(work: Path, marker: Path) -> list[Case]:
    """Every attack, in a fixed order, against fixtures made in ``work``."""
    f = build_fixtures(work, marker)
    return _quantize_cases(f) + _info_cases(f) + _evaluate_export_cases(f) + _bench_reproduce_demo_cases(f) + \
        _edge_cases(f)


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        marker = work / "MARKER"
        cases = build_cases(work, marker)
        rows = []
        for case in cases:
            row = run_case(case, marker)
            rows.append(row)
            print(f"{row['outcome']:22s} {row['exit']!s:5s} {case.name}: {row['message'][:120]}", flush=True)
    counts = Counter(row["outcome"] for row in rows)
    payload = {"cases": len(rows), "counts": dict(counts), "rows": rows, "python": sys.version.split()[0],
               "torch": torch.__version__}
    lines = ["# Hostile and careless input: `python benchmarks/hostile_attack.py`", "",
             f"{len(rows)} command lines; outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), ""]
    lines += markdown_table(["case", "exit", "outcome", "message (last line)"],
                            [(r["case"], r["exit"], r["outcome"], r["message"].replace("|", "/")[:160]) for r in rows])
    write_report(Report.at(RESULTS, "hostile_attack", payload, lines))
    print(dict(counts))


if __name__ == "__main__":
    main()
