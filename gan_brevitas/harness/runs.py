"""Runs, their metrics rows, and a resumable sweep over them.

A `Run` is one experiment: a generator x a method x a config. Measuring it gives a `ResultRow`
(its metrics, n, seconds and any other columns). `sweep` measures a list of runs in order and
stores each finished row in a `RunCache` at once, so a run already in the cache is never
measured again and an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Optional, TypeVar

from torch import Tensor
from tqdm.auto import tqdm

from gan_brevitas.errors import ConfigError
from gan_brevitas.harness.cache import RunCache

log = logging.getLogger(__name__)

SpecT = TypeVar("SpecT")

RAN = "ran"
CACHED = "cached"
NOT_RUN = "not run"


@dataclass(frozen=True)
class Run(Generic[SpecT]):
    """One experiment: a generator x a method x a config.

    Attributes:
        model: the generator's name.
        method: the method's name ("-" or "full-precision" for the float model).
        label: how tables and plots name the run.
        config: JSON data: everything besides the model's content that the numbers depend on
            (QuantConfig, method options, evaluation settings); the cache key hashes it.
        spec: the caller's own description of the run, handed back to its measure function
            (never hashed).
    """

    model: str
    method: str
    label: str
    config: Mapping[str, Any] = field(default_factory=dict)
    spec: Optional[SpecT] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        try:
            json.dumps(dict(self.config), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"run {self.model} / {self.label!r}: its config must be JSON data (numbers, text, lists, dicts), "
                f"the cache key hashes it ({err}); put objects in `spec` and what identifies them in the config."
            ) from err

    def key_parts(self) -> dict[str, Any]:
        return {"model": self.model, "method": self.method, "config": dict(self.config)}


#: ResultRow's own record keys; anything else in a record is one of its `fields`.
_ROW_KEYS = ("model", "method", "label", "metrics", "n", "seconds")


@dataclass
class ResultRow:
    """The metrics row of one run: what the JSON, the tables and the plots are made of.

    Attributes:
        metrics: name -> value (None where not measured, e.g. FID without real images).
        n: images (or samples) per metric.
        seconds: wall time of the run.
        fields: other columns, JSON data (weight bits, the recipe, the machine, ...).
    """

    model: str
    method: str
    label: str
    metrics: dict[str, Any]
    n: int
    seconds: float
    fields: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        """One flat JSON object: model, label, method, the fields, the metrics, seconds, n."""
        return {"model": self.model, "label": self.label, "method": self.method, **self.fields, **self.metrics,
                "seconds": self.seconds, "n": self.n}

    def record(self) -> dict[str, Any]:
        """The cache's record: metrics nested, the fields at the top level."""
        return {"model": self.model, "method": self.method, "label": self.label, "metrics": dict(self.metrics),
                "n": self.n, "seconds": self.seconds, **self.fields}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ResultRow:
        fields = {k: v for k, v in record.items() if k not in _ROW_KEYS and k not in ("format", "key")}
        return cls(**{k: record[k] for k in _ROW_KEYS}, fields=fields)


@dataclass
class Outcome(Generic[SpecT]):
    """What became of one run: its row (None when it did not run) and why."""

    run: Run[SpecT]
    key: str
    status: str
    row: Optional[ResultRow] = None
    reason: str = ""

    @property
    def spec(self) -> SpecT:
        return self.run.spec


#: measure(run, key) -> its row and the sample images to keep with it ({} for none); the key
#: names the run's own work directory where it keeps one (QAT resumes from it).
Measure = Callable[[Run[SpecT], str], tuple[ResultRow, Mapping[str, Tensor]]]


def sweep(
    runs: Sequence[Run[SpecT]],
    measure: Measure,
    cache: RunCache,
    context: Callable[[Run[SpecT]], Mapping[str, Any]] = lambda run: {},
    *,
    cannot_run: Callable[[Run[SpecT]], str] = lambda run: "",
    progress: bool = True,
    desc: str = "runs",
) -> list[Outcome[SpecT]]:
    """Measure every run that is not in ``cache`` yet, in order, storing each as it finishes.

    Args:
        context: the parts of a run's key besides its own (model content hashes, extractor).
        cannot_run: why a run that is not cached cannot run ("" when it can): such a run is
            reported as not run, and not cached.
    """
    outcomes = []
    bar = tqdm(runs, desc=desc, unit="run", disable=not progress)
    for run in bar:
        bar.set_postfix_str(run.label)
        key = cache.key({**run.key_parts(), **context(run)})
        record = cache.load(key)
        if record is not None:
            outcomes.append(Outcome(run, key, CACHED, ResultRow.from_record(record)))
            continue
        reason = cannot_run(run)
        if reason:
            outcomes.append(Outcome(run, key, NOT_RUN, reason=reason))
            continue
        log.info("running %s / %s", run.model, run.label)
        row, samples = measure(run, key)
        stored = cache.store(key, row.record(), samples)
        outcomes.append(Outcome(run, key, RAN, ResultRow.from_record(stored)))  # as a later sweep reads it
    return outcomes
