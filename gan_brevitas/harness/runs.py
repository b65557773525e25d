"""Runs, their metrics rows, and a resumable sweep over them.

A `Run` is one experiment: a generator x a method x a config. Measuring it gives a `ResultRow`
(its metrics, n, seconds and any other columns). `sweep` measures a list of runs in order and
stores each finished row in a `RunCache` at once, so a run already in the cache is never
measured again and an interrupted sweep resumes where it stopped. `sweep_together` does the
same for runs that must be measured together (timed in the same rounds), a group at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
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
#: measure_together(runs, keys) -> one (row, samples) per run, in their order: runs that can only
#: be measured together (e.g. timed in the same interleaved rounds).
MeasureTogether = Callable[[Sequence[Run[SpecT]], Sequence[str]], Sequence[tuple[ResultRow, Mapping[str, Tensor]]]]


def sweep(
    runs: Sequence[Run[SpecT]],
    measure: Measure,
    cache: RunCache,
    context: Callable[[Run[SpecT]], Mapping[str, Any]] = lambda run: {},
    *,
    cannot_run: Callable[[Run[SpecT]], str] = lambda run: "",
    progress: bool = True,
    desc: str = "runs",
    fresh: bool = False,
) -> list[Outcome[SpecT]]:
    """Measure every run that is not in ``cache`` yet, in order, storing each as it finishes.

    Args:
        context: the parts of a run's key besides its own (model content hashes, extractor).
        cannot_run: why a run that is not cached cannot run ("" when it can): such a run is
            reported as not run, and not cached.
        fresh: measure every run again (its new record replaces the cached one).
    """
    return sweep_together(runs, lambda pending, keys: [measure(pending[0], keys[0])], cache, context,
                          group=None, cannot_run=cannot_run, progress=progress, desc=desc, fresh=fresh)


def sweep_together(
    runs: Sequence[Run[SpecT]],
    measure_together: MeasureTogether,
    cache: RunCache,
    context: Callable[[Run[SpecT]], Mapping[str, Any]] = lambda run: {},
    *,
    group: Optional[Callable[[Run[SpecT]], Hashable]],
    cannot_run: Callable[[Run[SpecT]], str] = lambda run: "",
    progress: bool = True,
    desc: str = "runs",
    fresh: bool = False,
) -> list[Outcome[SpecT]]:
    """`sweep` for runs measured in groups: the runs of one ``group`` (None: each run alone) that
    are not cached are measured by one ``measure_together`` call, in order of their first run,
    and stored when it returns. An interrupted sweep resumes at the first unfinished group."""
    outcomes: list[Optional[Outcome[SpecT]]] = [None] * len(runs)
    keys = [cache.key({**run.key_parts(), **context(run)}) for run in runs]
    pending: dict[Hashable, list[int]] = {}
    first: dict[str, int] = {}  # key -> the first run with it: a repeated run is measured once
    for i, (run, key) in enumerate(zip(runs, keys)):
        if first.setdefault(key, i) != i:
            continue
        record = None if fresh else cache.load(key)
        reason = "" if record is not None else cannot_run(run)
        if record is not None:
            outcomes[i] = Outcome(run, key, CACHED, ResultRow.from_record(record))
        elif reason:
            outcomes[i] = Outcome(run, key, NOT_RUN, reason=reason)
        else:
            pending.setdefault(i if group is None else ("group", group(run)), []).append(i)
    bar = tqdm(list(pending.values()), desc=desc, unit="run" if group is None else "group", disable=not progress)
    for indices in bar:
        chosen = [runs[i] for i in indices]
        bar.set_postfix_str(chosen[0].label)
        log.info("running %s / %s%s", chosen[0].model, chosen[0].label,
                 f" and {len(chosen) - 1} more" if len(chosen) > 1 else "")
        measured = list(measure_together(chosen, [keys[i] for i in indices]))
        if len(measured) != len(indices):
            raise ConfigError(f"measuring {len(indices)} runs together gave {len(measured)} rows: one per run, please")
        for i, (row, samples) in zip(indices, measured):
            stored = cache.store(keys[i], row.record(), samples)
            outcomes[i] = Outcome(runs[i], keys[i], RAN, ResultRow.from_record(stored))  # as a later sweep reads it
    for i, key in enumerate(keys):
        if first[key] != i and outcomes[first[key]] is not None:
            done = outcomes[first[key]]
            outcomes[i] = Outcome(runs[i], key, CACHED if done.row else done.status, done.row, done.reason)
    return [outcome for outcome in outcomes if outcome is not None]
