"""Experiment recipes: one TOML file per row of the paper's tables (or one sweep of Figure 1).

A recipe file is made of the package's own config dataclasses, one table each:

    [experiment]   `Experiment`: table, the paper's row, model, method
    [quant]        `gan_brevitas.quant.config.QuantConfig` (keys left out: `QuantConfig.paper()`)
    [options]      the method's options: the fields of its config in `gan_brevitas.methods`
                   (`VanillaPTQ`, `SteBRECQ`, `ArBRECQ`, `MAQAT`, `LSQQAT`; nothing for
                   "full-precision"); QAT rows resolve them to `QATOptions` for their model
    [eval]         `EvalSettings`: images per metric, seeds
    [paper]        `PaperResult`: the paper's FID / qFID for this row
    [sweep]        optional: one QuantConfig field and the values it takes (Figure 1)
    [cpu], [tiny]  profiles: ``[cpu.options]`` / ``[cpu.eval]`` replace keys of [options] /
                   [eval]; the "paper" profile is the file as written (the paper's values)

Profiles scale compute only (steps, epochs, sample counts; on a machine without VGG16 weights
the distillation loss): the quantization scheme is the experiment, so ``[cpu.quant]`` is refused.
Every profile of a file is built, hence validated, when the file is loaded; unknown keys and bad
values raise ConfigError naming the file, the table and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from gan_brevitas.errors import ConfigError
from gan_brevitas.methods import method_config, method_spec
from gan_brevitas.models.registry import ARCHITECTURES
from gan_brevitas.quant.config import QuantConfig

PROFILES: tuple[str, ...] = ("paper", "cpu", "tiny")
#: Profiles a file may scale; "paper" is the file itself.
SCALED_PROFILES: tuple[str, ...] = ("cpu", "tiny")
#: What a profile may replace: compute and sample counts, never the quantization scheme.
PROFILE_TABLES: tuple[str, ...] = ("options", "eval")
TABLES: tuple[str, ...] = ("table3", "table4", "figure1")
MODELS: tuple[str, ...] = tuple(ARCHITECTURES)
FULL_PRECISION = "full-precision"
SECTIONS: tuple[str, ...] = ("experiment", "quant", "options", "eval", "paper", "sweep", *SCALED_PROFILES)

PTQ_METHODS: tuple[str, ...] = ("vanilla-ptq", "ste-brecq", "ar-brecq")
BRECQ_METHODS: tuple[str, ...] = ("ste-brecq", "ar-brecq")
QAT_METHODS: tuple[str, ...] = ("ma-qat", "lsq-qat")
#: The methods a recipe may name: the paper's (their options: `gan_brevitas.methods`).
RECIPE_METHODS: tuple[str, ...] = (FULL_PRECISION, *PTQ_METHODS, *QAT_METHODS)
#: Option fields `gan-brevitas reproduce` sets itself (where files go, progress, device); a
#: recipe must not set them, and they never enter the cache key.
RUNNER_FIELDS: frozenset[str] = frozenset(
    {"progress", "out_dir", "cache_dir", "data_dir", "resume", "device", "backend"}
)
#: QATOptions fields that come from [experiment] (method, model), not from [options].
EXPERIMENT_FIELDS: frozenset[str] = frozenset({"method", "preset"})


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}.")


def _int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")


@dataclass(frozen=True)
class Experiment:
    """What a recipe reproduces.

    Attributes:
        table: "table3", "table4" or "figure1": the section of RESULTS.md the row goes to.
        row: the paper's row in words, e.g. "STE-BRECQ, per-tensor, a8/w8".
        model: "stylegan", "sagan" or "cyclegan" (the demo generator, or ``--checkpoint``).
        method: "full-precision" or a paper method of `gan_brevitas.methods` (`RECIPE_METHODS`).
    """

    table: str
    row: str
    model: str
    method: str

    def __post_init__(self) -> None:
        _choice("table", self.table, TABLES)
        _choice("model", self.model, MODELS)
        _choice("method", self.method, RECIPE_METHODS)
        if not isinstance(self.row, str) or not self.row.strip():
            raise ConfigError(f"row must name the paper's row in words, got {self.row!r}.")


@dataclass(frozen=True)
class EvalSettings:
    """How a row is measured (FID vs real images, qFID and PSNR vs the full-precision outputs).

    Attributes:
        n: generated images per metric (the paper: 50,000).
        n_real: real images for FID; None means ``n``.
        input_seed: seed of the calibration / training inputs.
        eval_seed: seed of the held-out inputs of every metric (never calibrated or trained on).
        real_seed: seed of the real images.
        grid: samples of this row shown in the RESULTS.md picture.
    """

    n: int = 50_000
    n_real: int | None = None
    input_seed: int = 0
    eval_seed: int = 1
    real_seed: int = 2
    grid: int = 8

    def __post_init__(self) -> None:
        _int("n", self.n, 2)  # FID needs a covariance
        if self.n_real is not None:
            _int("n_real", self.n_real, 2)
        for name in ("input_seed", "eval_seed", "real_seed"):
            _int(name, getattr(self, name), 0)
        if self.input_seed == self.eval_seed:
            raise ConfigError(
                f"input_seed and eval_seed are both {self.input_seed}: the held-out inputs of the "
                "metrics must differ from the calibration / training inputs; change one of them."
            )
        _int("grid", self.grid, 1)
        if self.grid > self.n:
            raise ConfigError(f"grid={self.grid} shows more samples than n={self.n} generates; lower grid.")

    @property
    def real_count(self) -> int:
        return self.n if self.n_real is None else self.n_real


@dataclass(frozen=True)
class PaperResult:
    """The paper's numbers for this row (Inception features; FFHQ, CelebA or horse2zebra).

    Attributes:
        source: where they are printed: "Table 3", "Table 4", "Appendix B" or "Figure 1".
        fid: FID against real images; None where the paper prints none.
        qfid: qFID against the full-precision outputs; None where the paper prints none.
        note: what a reader needs to know, e.g. "LSQ only in the last 50 epochs".
    """

    source: str
    fid: float | None = None
    qfid: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(f"source must say where the paper prints the numbers, got {self.source!r}.")
        for name in ("fid", "qfid"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ConfigError(f"{name} must be the paper's number (>= 0) or be left out, got {value!r}.")
        if not isinstance(self.note, str):
            raise ConfigError(f"note must be text, got {self.note!r}.")


@dataclass(frozen=True)
class Sweep:
    """One QuantConfig field and the values it takes, one row per value (the paper's Figure 1)."""

    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Row:
    """One measurement: a recipe (at one sweep value) under one profile, fully resolved."""

    recipe: str
    path: str
    profile: str
    experiment: Experiment
    quant: QuantConfig
    options: Any | None
    eval: EvalSettings
    paper: PaperResult
    sweep: tuple[str, Any] | None = None

    @property
    def id(self) -> str:
        if self.sweep is None:
            return self.recipe
        name, value = self.sweep
        return f"{self.recipe}[{name}={_show(value)}]"

    @property
    def label(self) -> str:
        if self.sweep is None:
            return self.experiment.row
        name, value = self.sweep
        return f"{self.experiment.row}, {name} {_show(value)}"

    @property
    def method(self) -> str:
        return self.experiment.method

    @property
    def model(self) -> str:
        return self.experiment.model

    def method_options(self) -> dict[str, Any]:
        """The options as keywords of `recipes.quantize` (the runner adds its own fields)."""
        if self.options is None:
            return {}
        values = dataclasses.asdict(self.options)
        return {k: v for k, v in values.items() if k not in RUNNER_FIELDS and k != "method"}

    def config(self) -> dict[str, Any]:
        """Everything the row's numbers depend on, as JSON data (the cache key is built on it)."""
        return json.loads(json.dumps({
            "profile": self.profile,
            "model": self.model,
            "method": self.method,
            "quant": None if self.method == FULL_PRECISION else self.quant.to_dict(),
            "options": self.method_options(),
            "eval": dataclasses.asdict(self.eval),
        }, sort_keys=True))


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(_show(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Recipe:
    """A loaded, validated recipe file."""

    path: Path
    experiment: Experiment
    quant: QuantConfig
    options: Mapping[str, Any]
    eval: Mapping[str, Any]
    paper: PaperResult
    sweep: Sweep | None = None
    profiles: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """``<folder>/<file stem>``, e.g. "table3/stylegan_ste_brecq_w8"."""
        return f"{self.path.parent.name}/{self.path.stem}"

    def rows(self, profile: str) -> list[Row]:
        """The rows of this recipe under ``profile`` ("paper", "cpu" or "tiny")."""
        _choice("profile", profile, PROFILES)
        overrides = self.profiles.get(profile, {})
        options = build_options(self.experiment, {**self.options, **overrides.get("options", {})}, self.path,
                                _where("options", profile, overrides))
        evaluation = _build(EvalSettings, {**self.eval, **overrides.get("eval", {})}, self.path,
                            _where("eval", profile, overrides))
        if self.sweep is None:
            points = [(self.quant, None)]
        else:
            points = [(_sweep_config(self.quant, self.sweep.field, value, self.path), (self.sweep.field, value))
                      for value in self.sweep.values]
        return [
            Row(recipe=self.id, path=str(self.path), profile=profile, experiment=self.experiment, quant=quant,
                options=options, eval=evaluation, paper=self.paper, sweep=sweep)
            for quant, sweep in points
        ]


# --------------------------------------------------------------------------- loading


def _where(table: str, profile: str, overrides: Mapping[str, Any]) -> str:
    """How an error names the table(s) a profile's values came from."""
    return f"[{table}] with [{profile}.{table}]" if overrides.get(table) else f"[{table}]"


def _fail(path: Path, where: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {where} {message}")


def _check_keys(values: Mapping[str, Any], allowed: Iterable[str], path: Path, where: str, what: str) -> None:
    allowed = sorted(allowed)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        listed = ", ".join(repr(key) for key in unknown)
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(path, where, f"unknown key {listed}{hint}; {what} are: {', '.join(allowed)}.")


def _table(data: Mapping[str, Any], name: str, path: Path, where: str | None = None) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise _fail(path, where or f"[{name}]", f"must be a TOML table ([{name}] with key = value lines), got {value!r}.")
    return dict(value)


def _build(cls: type, values: Mapping[str, Any], path: Path, where: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(values, names, path, where, f"the fields of {cls.__name__}")
    try:
        return cls(**values)
    except ConfigError as err:
        raise _fail(path, where, str(err)) from None


def option_fields(method: str) -> list[str]:
    """The keys a recipe's [options] may hold for ``method``."""
    if method == FULL_PRECISION:
        return []
    return sorted(name for name in method_spec(method).fields if name not in RUNNER_FIELDS | EXPERIMENT_FIELDS)


def build_options(experiment: Experiment, values: Mapping[str, Any], path: Path, where: str) -> Any | None:
    """The method's options dataclass from a recipe's keys (QAT: `QATOptions`, the paper's
    defaults for the model replaced key by key)."""
    if experiment.method == FULL_PRECISION:
        if values:
            raise _fail(path, where, f"full precision runs no method; remove {sorted(values)}.")
        return None
    for key in sorted(values):
        if key in RUNNER_FIELDS:
            raise _fail(path, where, f"{key!r} is set by `gan-brevitas reproduce` itself (see --out, --device); "
                                     "remove it from the recipe.")
        if key in EXPERIMENT_FIELDS:
            raise _fail(path, where, f"{key!r} comes from [experiment] (method, model); remove it here.")
    cls = method_spec(experiment.method).config_type
    _check_keys(values, option_fields(experiment.method), path, where,
                f"the {experiment.method} options ({cls.__module__}.{cls.__name__})")
    try:
        options = method_config(experiment.method, **values)
        return options.resolve(experiment.model) if experiment.method in QAT_METHODS else options
    except ConfigError as err:
        raise _fail(path, where, str(err)) from None


def _quant_config(values: Mapping[str, Any], path: Path) -> QuantConfig:
    names = [f.name for f in dataclasses.fields(QuantConfig)]
    _check_keys(values, names, path, "[quant]", "the fields of QuantConfig")
    try:
        # the paper's scheme, not QuantConfig()'s defaults, fills the keys a file leaves out
        return QuantConfig.from_dict({**QuantConfig.paper().to_dict(), **values})
    except ConfigError as err:
        raise _fail(path, "[quant]", str(err)) from None


def _sweep_config(base: QuantConfig, name: str, value: Any, path: Path) -> QuantConfig:
    try:
        return QuantConfig.from_dict({**base.to_dict(), name: value})
    except ConfigError as err:
        raise _fail(path, "[sweep]", str(err)) from None


def _sweep(values: Mapping[str, Any], base: QuantConfig, path: Path) -> Sweep | None:
    if not values:
        return None
    names = [f.name for f in dataclasses.fields(QuantConfig)]
    _check_keys(values, names, path, "[sweep]", "the fields of QuantConfig a sweep can vary")
    if len(values) != 1:
        raise _fail(path, "[sweep]", f"varies one QuantConfig field, got {sorted(values)}; split the recipe.")
    (name, points), = values.items()
    if not isinstance(points, list) or not points:
        raise _fail(path, "[sweep]", f"{name} must be a non-empty list of values, got {points!r}.")
    for point in points:
        _sweep_config(base, name, point, path)
    return Sweep(name, tuple(tuple(p) if isinstance(p, list) else p for p in points))


def _profiles(data: Mapping[str, Any], path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    profiles = {}
    for profile in SCALED_PROFILES:
        tables = _table(data, profile, path)
        for name in tables:
            if name not in PROFILE_TABLES:
                raise _fail(path, f"[{profile}.{name}]",
                            f"is not allowed: a profile scales compute only, through "
                            f"{', '.join(f'[{profile}.{t}]' for t in PROFILE_TABLES)}; the quantization "
                            "scheme ([quant], [sweep]) is the experiment itself.")
        profiles[profile] = {name: _table(tables, name, path, f"[{profile}.{name}]") for name in tables}
    return profiles


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate one recipe file; every profile is built once to check it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read recipe {path}: {err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown section {', '.join(f'[{name}]' for name in unknown)}; the sections are "
            f"{', '.join(f'[{name}]' for name in SECTIONS)} (profiles: {', '.join(PROFILES)}; "
            "'paper' is the file as written)."
        )
    for required in ("experiment", "paper"):
        if required not in data:
            raise ConfigError(f"{path}: the [{required}] section is missing.")
    experiment = _build(Experiment, _table(data, "experiment", path), path, "[experiment]")
    quant_values = _table(data, "quant", path)
    if experiment.method == FULL_PRECISION and (quant_values or data.get("sweep")):
        raise _fail(path, "[quant]", "full precision is not quantized; remove [quant] and [sweep].")
    quant = _quant_config(quant_values, path)
    recipe = Recipe(
        path=path,
        experiment=experiment,
        quant=quant,
        options=_table(data, "options", path),
        eval=_table(data, "eval", path),
        paper=_build(PaperResult, _table(data, "paper", path), path, "[paper]"),
        sweep=_sweep(_table(data, "sweep", path), quant, path),
        profiles=_profiles(data, path),
    )
    if recipe.sweep is not None and (recipe.paper.fid is not None or recipe.paper.qfid is not None):
        raise _fail(path, "[paper]", "a sweep gives several rows: put the paper's reading in note, not fid / qfid.")
    for profile in PROFILES:
        recipe.rows(profile)
    return recipe


def load_recipes(paths: Sequence[str | Path]) -> list[Recipe]:
    """Load several recipe files (a directory stands for the *.toml files under it)."""
    files: list[Path] = []
    for item in paths:
        item = Path(item)
        files.extend(sorted(item.rglob("*.toml")) if item.is_dir() else [item])
    if not files:
        raise ConfigError("no recipe files given: pass TOML files or folders, e.g. recipes/table3/*.toml.")
    recipes = [load_recipe(path) for path in files]
    seen: dict[str, Path] = {}
    for recipe in recipes:
        if recipe.id in seen:
            raise ConfigError(f"recipe {recipe.id} is given twice ({seen[recipe.id]} and {recipe.path}); give it once.")
        seen[recipe.id] = recipe.path
    return recipes
