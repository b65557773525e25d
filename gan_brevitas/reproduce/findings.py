"""The paper's findings F1..F6, decided from qFID numbers by fixed rules.

The same rules run on our measured numbers and on the paper's own (from each recipe's
[paper] section), so a reader sees both how our evidence came out and whether the rule is fair
to the paper. A finding is a list of checks (one per model, bit width, ...); a check that lacks
one of its numbers is "not measured". The verdict:

* reproduced: every measured check held;
* not reproduced: none held;
* partly reproduced: some held;
* not measured: no check could be made.

Rules (qFID, lower is better; where several rows match, the best one counts):

* "A beats B" means qFID(A) < (1 - TIE_MARGIN) * qFID(B): closer values are a tie.
* "per-channel brings little" means per-channel qFID within LITTLE_GAIN of per-tensor qFID,
  either way (a per-channel row far WORSE than per-tensor does not support the finding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gan_brevitas.reproduce.spec import MODELS, PTQ_METHODS, QAT_METHODS

#: Relative qFID difference under which two rows tie (noise of a finite-sample FID).
TIE_MARGIN = 0.05
#: Relative qFID gain of per-channel weights that still counts as "little" (F5).
LITTLE_GAIN = 0.25
MIN_MAX = (0.0, 1.0)

REPRODUCED = "reproduced"
PARTLY = "partly reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Point:
    """One row's qFID and what identifies the row.

    Attributes:
        model, method: the paper model and recipe ("full-precision" rows are not used).
        weight_bits, per_channel: the weight scheme.
        act_quantiles: the activation quantile pair (low, high); (0, 1) is min-max.
        loss: the QAT distillation loss ("perceptual", "perceptual-disc", "mse"); None otherwise.
        qfid: the measured (or the paper's) qFID.
    """

    model: str
    method: str
    weight_bits: int
    per_channel: bool
    act_quantiles: tuple[float, float]
    loss: str | None
    qfid: float


@dataclass(frozen=True)
class Check:
    """One comparison: ``held`` is None when a number it needs is missing."""

    what: str
    held: bool | None
    detail: str


@dataclass(frozen=True)
class Finding:
    """A finding of the paper with the checks that decide it."""

    id: str
    claim: str
    checks: tuple[Check, ...]
    note: str = ""

    @property
    def verdict(self) -> str:
        measured = [c.held for c in self.checks if c.held is not None]
        if not measured:
            return NOT_MEASURED
        if all(measured):
            return REPRODUCED
        return PARTLY if any(measured) else NOT_REPRODUCED

    @property
    def measured(self) -> int:
        return sum(c.held is not None for c in self.checks)


def beats(a: float, b: float) -> bool:
    """qFID ``a`` is better than ``b`` by more than the tie margin."""
    return a < (1.0 - TIE_MARGIN) * b


def _best(points: Sequence[Point], model: str, methods: Sequence[str], bits: int | None = None,
          per_channel: bool | None = None, *, loss: str | None = None, not_loss: str | None = None,
          min_max: bool | None = None) -> float | None:
    """The lowest qFID among the points that match (None: no point does).

    ``loss`` / ``not_loss`` keep / drop one distillation loss; ``min_max`` keeps only the rows
    with (True) or without (False) the 1.0/0.0 activation quantile pair.
    """
    values = [
        p.qfid for p in points
        if p.model == model and p.method in methods
        and (bits is None or p.weight_bits == bits)
        and (per_channel is None or p.per_channel == per_channel)
        and (loss is None or p.loss == loss)
        and (not_loss is None or p.loss != not_loss)
        and (min_max is None or (p.act_quantiles == MIN_MAX) == min_max)
    ]
    return min(values) if values else None


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4g}"


def _compare(what: str, a: float | None, b: float | None, a_name: str, b_name: str) -> Check:
    """Check that ``a`` beats ``b``."""
    detail = f"{a_name} {_fmt(a)} vs {b_name} {_fmt(b)}"
    return Check(what, None if a is None or b is None else beats(a, b), detail)


def f1_quantiles_beat_min_max(points: Sequence[Point]) -> Finding:
    checks = []
    for model in MODELS:
        min_max = _best(points, model, ("vanilla-ptq",), 8, False, min_max=True)
        quantile = _best(points, model, ("vanilla-ptq",), 8, False, min_max=False)
        checks.append(_compare(f"{model} W8A8 per-tensor: best quantile pair beats 1.0/0.0 (min-max)",
                               quantile, min_max, "quantile", "min-max"))
    return Finding("F1", "Quantile activation ranges beat min-max ranges in vanilla PTQ.", tuple(checks))


def f2_qat_needed(points: Sequence[Point]) -> Finding:
    checks = []
    for model in MODELS:
        for bits in (8, 4):
            ptq = _best(points, model, PTQ_METHODS, bits)
            qat = _best(points, model, QAT_METHODS, bits, not_loss="mse")
            checks.append(_compare(f"{model} W{bits}A8: best QAT beats best PTQ", qat, ptq, "QAT", "PTQ"))
    return Finding("F2", "PTQ alone is not enough: QAT is needed.", tuple(checks))


def f3_lsq_beats_ma(points: Sequence[Point]) -> Finding:
    checks = []
    for model in MODELS:
        gaps = {}
        for bits in (8, 4):
            ma = _best(points, model, ("ma-qat",), bits, False, not_loss="mse")
            lsq = _best(points, model, ("lsq-qat",), bits, False, not_loss="mse")
            checks.append(_compare(f"{model} W{bits}A8 per-tensor: LSQ-QAT beats MA-QAT", lsq, ma, "LSQ", "MA"))
            gaps[bits] = None if ma is None or lsq is None else ma - lsq
        held = None if gaps[8] is None or gaps[4] is None else gaps[4] > gaps[8]
        checks.append(Check(f"{model}: the gain of LSQ over MA is larger at W4 than at W8", held,
                            f"MA - LSQ: W4 {_fmt(gaps[4])} vs W8 {_fmt(gaps[8])}"))
    return Finding("F3", "LSQ-QAT beats MA-QAT, most at 4-bit weights.", tuple(checks))


def f4_ste_vs_ar(points: Sequence[Point]) -> Finding:
    ste = {bits: _best(points, "stylegan", ("ste-brecq",), bits, False) for bits in (8, 4)}
    ar = {bits: _best(points, "stylegan", ("ar-brecq",), bits, False) for bits in (8, 4)}
    checks = (
        _compare("stylegan W8A8 per-tensor: STE-BRECQ beats AR-BRECQ", ste[8], ar[8], "STE", "AR"),
        _compare("stylegan W4A8 per-tensor: AR-BRECQ beats STE-BRECQ", ar[4], ste[4], "AR", "STE"),
    )
    return Finding("F4", "STE-BRECQ beats AR-BRECQ at 8-bit weights and loses at 4-bit.", checks)


def f5_per_channel_little(points: Sequence[Point]) -> Finding:
    checks = []
    for model in MODELS:
        for bits in (8, 4):
            channel = _best(points, model, ("ma-qat",), bits, True, not_loss="mse")
            tensor = _best(points, model, ("ma-qat",), bits, False, not_loss="mse")
            detail = f"per-channel {_fmt(channel)} vs per-tensor {_fmt(tensor)}"
            held = None
            if channel is not None and tensor is not None:
                # "little" either way: per-channel far worse is not "little difference" either
                held = abs(channel - tensor) <= LITTLE_GAIN * tensor
                detail += f" ({(channel - tensor) / tensor:+.0%})" if tensor > 0 else ""
            checks.append(Check(f"{model} W{bits}A8 MA-QAT: per-channel within {LITTLE_GAIN:.0%} of per-tensor",
                                held, detail))
    return Finding("F5", "Per-channel weight scales bring little under QAT.", tuple(checks))


def f6_perceptual_beats_mse(points: Sequence[Point]) -> Finding:
    checks, stand_in = [], []
    for model in ("stylegan", "sagan"):
        mse = _best(points, model, ("ma-qat",), 8, True, loss="mse")
        perceptual = _best(points, model, ("ma-qat",), 8, True, loss="perceptual")
        checks.append(_compare(f"{model} W8A8 per-channel MA-QAT: perceptual (VGG16) beats pixel MSE",
                               perceptual, mse, "perceptual", "MSE"))
        disc = _best(points, model, ("ma-qat",), 8, True, loss="perceptual-disc")
        if disc is not None and mse is not None:
            stand_in.append(f"{model}: discriminator-feature perceptual {_fmt(disc)} vs MSE {_fmt(mse)}"
                            f" ({'beats' if beats(disc, mse) else 'does not beat'})")
    note = ""
    if stand_in:
        note = ("Stand-in evidence, not the paper's objective (content + style losses on the discriminator's "
                "features instead of VGG16's): " + "; ".join(stand_in) + ".")
    return Finding("F6", "Perceptual (VGG16) distillation beats pixel MSE.", tuple(checks), note)


FINDINGS: tuple[Callable[[Sequence[Point]], Finding], ...] = (
    f1_quantiles_beat_min_max,
    f2_qat_needed,
    f3_lsq_beats_ma,
    f4_ste_vs_ar,
    f5_per_channel_little,
    f6_perceptual_beats_mse,
)


def decide(points: Sequence[Point]) -> list[Finding]:
    """F1..F6 from ``points``."""
    return [finding(points) for finding in FINDINGS]
