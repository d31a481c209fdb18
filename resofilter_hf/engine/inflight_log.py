"""Per-epoch statistics of in-flight scores, logged through the Trainer's own `log()`.

Whatever `report_to` the run uses (TensorBoard, W&B, trackio, the console) then shows how the scores of each epoch
are spread without opening the scores file. The statistics go under ``<column>/<statistic>`` at the global step
where the epoch ends: mean, std, quantiles over the finite scores, the number of rows scored in the epoch, and the
share of those whose score is NaN or infinite (no loss token, a non-finite gradient).
"""

from collections.abc import Callable, Sequence

import numpy as np
from transformers import TrainerCallback

from .inflight import InflightRecorder


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def score_statistics(scores: Sequence[float], prefix: str) -> dict[str, float]:
    """``{prefix}/mean``, ``/std``, ``/q05`` ... ``/q95`` (finite scores, fp64), ``/rows`` and ``/nan_share`` (not finite)."""
    values = np.asarray(scores, dtype=np.float64)
    finite = values[np.isfinite(values)]
    stats = {f"{prefix}/rows": float(len(values)), f"{prefix}/nan_share": 0.0}
    if len(values):
        stats[f"{prefix}/nan_share"] = float(1 - len(finite) / len(values))
    if len(finite):
        stats[f"{prefix}/mean"] = float(finite.mean())
        stats[f"{prefix}/std"] = float(finite.std())
        for q, value in zip(QUANTILES, np.quantile(finite, QUANTILES)):
            stats[f"{prefix}/q{round(q * 100):02d}"] = float(value)
    return stats


class InflightScoreLog(TrainerCallback):
    """At each epoch's end, `log` the statistics of the in-flight scores recorded in that epoch (all processes'
    rows, folded in first by `gather`, the trainer's shard-file exchange), once per epoch."""

    def __init__(
        self,
        recorder: InflightRecorder,
        column: str,
        log: Callable[[dict[str, float]], None],
        gather: Callable[[], None] = lambda: None,
    ):
        self.recorder = recorder
        self.column = column
        self.log = log
        self.gather = gather
        self.logged: set[int] = set()

    def on_epoch_end(self, args, state, control, **kwargs):
        if not self.recorder.epochs:
            return
        epoch = max(self.recorder.epochs)
        if epoch in self.logged:
            return
        self.logged.add(epoch)
        self.gather()  # every process takes part; afterwards each recorder holds every process's rows
        scores = [value[0] for value in self.recorder.epochs[epoch].values()]  # (score, step, alignment)
        self.log(score_statistics(scores, self.column))
