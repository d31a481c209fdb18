"""In-flight scores as a dataset: every process's share gathered through shard files, one column per epoch.

The trainer hands down its recorder, its train rows and its provenance; nothing here calls back into the trainer.
The dataset gets the same warnings and provenance as `score()`'s (`pipeline.results`): strong confounds with
length, and a loss that falls on the prompt too.
"""

from pathlib import Path

import numpy as np
from datasets import Dataset, concatenate_datasets

from .confounds import confound_report
from .engine.inflight import InflightRecorder
from .engine.rows import claim_result_columns
from .pipeline.results import warn_confounds, warn_loss_on_prompt
from .provenance import read_provenance, run_scoring, with_provenance


def gather_inflight(recorder: InflightRecorder, processes, output_dir: str, gather: int) -> None:
    """Fold every process's in-flight scores into each process's recorder, through shard files (the `gather`-th
    gather of the run names its folder)."""
    if processes.num_processes == 1:
        return
    folder = Path(output_dir) / "resonance" / "inflight" / f"gather-{gather:05d}"
    recorder.gather(folder, processes.process_index, processes.num_processes, processes.wait_for_everyone)


def inflight_dataset(
    recorder: InflightRecorder,
    source: Dataset,
    column: str,
    provenance: dict,
    lengths: np.ndarray,
    *,
    reference_info: dict | None = None,
    on_prompt: bool = False,
    warn: bool = False,
) -> Dataset:
    """The train rows with one score column per epoch (NaN for rows not trained in that epoch), and one alignment
    column per epoch with a reference set; the confound report (against `lengths`, each row's loss tokens: there is
    no separate loss in flight) and the row counts in the provenance. `warn`: say what the scores show (once, at
    the end of training, not at every checkpoint)."""
    n = len(source)
    columns = {}
    for epoch in sorted(recorder.epochs):
        values, alignment = np.full(n, np.nan), np.full(n, np.nan)
        for row_id, (score, _, aligned) in recorder.epochs[epoch].items():
            values[row_id], alignment[row_id] = score, aligned
        columns[f"{column}_epoch{epoch}"] = values
        if reference_info is not None:
            columns[f"{column}_alignment_epoch{epoch}"] = alignment
    earlier = (read_provenance(source).get("scoring") or {}).get("column")
    clean = source.remove_columns(claim_result_columns(source.column_names, column, earlier, written=columns))
    scored = concatenate_datasets([clean, Dataset.from_dict(columns)], axis=1) if columns else clean
    ever_scored = np.zeros(n, dtype=bool)
    for values in columns.values():
        ever_scored |= np.isfinite(values)
    confounds = confound_report(columns, lengths, None)
    if warn:
        warn_confounds(confounds, column, stacklevel=4)
        if on_prompt:
            warn_loss_on_prompt(column, stacklevel=4)
    scoring = {
        **provenance,
        "n_rows": n,
        "n_scored": int(ever_scored.sum()),
        "n_unscored": n - int(ever_scored.sum()),
        "when": "inflight",
        "confounds": confounds,
        "loss_on_prompt": on_prompt,
        **({"reference": reference_info} if reference_info is not None else {}),
    }
    return with_provenance(scored, replace_all=True, scoring=run_scoring(scoring, clean.column_names, columns))
