"""The experiment harness: a run = a generator x a method x a config -> a metrics row.

* `runs`: `Run`, `ResultRow`, `Outcome` and `sweep` (measure the runs not cached yet, store
  each as it finishes: a cached run is never measured again, an interrupted sweep resumes;
  ``fresh=True`` measures all again); `sweep_together` for runs measured in groups (timed in
  the same interleaved rounds).
* `cache`: `RunCache`, one JSON record (and sample images) per finished run, keyed by a hash
  of everything its numbers depend on.
* `measure`: `measure_method`, one quantization measured against the float outputs.
* `writer`: `Report` and `write_report`, the one writer of JSON + markdown + plots.
* `figures`: labelled sample grids and the Figure 1 plot.

`gan-brevitas demo`, `gan-brevitas reproduce` and the benchmarks in ``benchmarks/`` use it.
"""

from gan_brevitas.harness.cache import RunCache, package_fingerprint, run_key
from gan_brevitas.harness.runs import (
           CACHED,
           NOT_RUN,
           RAN,
           Outcome,
           ResultRow,
           Run,
           sweep,
           sweep_together,
)
from gan_brevitas.harness.writer import (
           Report,
           machine_description,
           markdown_table,
           strict_json,
           write_report,
)

__all__ = ["CACHED", "NOT_RUN", "RAN", "Outcome", "Report", "ResultRow", "Run", "RunCache", "machine_description",
           "markdown_table", "package_fingerprint", "run_key", "strict_json", "sweep", "sweep_together", "write_report"]
