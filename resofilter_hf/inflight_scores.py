"""In-flight scores as a dataset: every process's share gathered through shard files, one column per epoch."""

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from datasets import Dataset, concatenate_datasets

from .provenance import with_provenance


if TYPE_CHECKING:
    from .trainer import ResonanceTrainer


def gather_inflight(trainer: "ResonanceTrainer") -> None:
    """Fold every process's in-flight scores into each process's recorder, through shard files."""
    accelerator = trainer.accelerator
    if accelerator.num_processes == 1:
        return
    trainer._resonance_gathers = getattr(trainer, "_resonance_gathers", 0) + 1
    folder = Path(trainer.args.output_dir) / "resonance" / "inflight" / f"gather-{trainer._resonance_gathers:05d}"
    trainer._resonance_recorder.gather(
        folder, accelerator.process_index, accelerator.num_processes, accelerator.wait_for_everyone
    )


def inflight_dataset(trainer: "ResonanceTrainer") -> Dataset:
    """The train rows with one score column per epoch (NaN for rows not trained in that epoch)."""
    recorder, source = trainer._resonance_recorder, trainer._resonance_source
    n = len(source)
    columns = {}
    for epoch in sorted(recorder.epochs):
        values = np.full(n, np.nan)
        for row_id, (score, _) in recorder.epochs[epoch].items():
            values[row_id] = score
        columns[f"{trainer.args.resonance_column}_epoch{epoch}"] = values
    clean = source.remove_columns([c for c in source.column_names if c in columns])
    scored = concatenate_datasets([clean, Dataset.from_dict(columns)], axis=1) if columns else clean
    ever_scored = np.zeros(n, dtype=bool)
    for values in columns.values():
        ever_scored |= np.isfinite(values)
    provenance = trainer.resonance_provenance(n, int(ever_scored.sum()))
    provenance.update(when="inflight", inflight_state=trainer.args.resonance_inflight_state)
    return with_provenance(scored, scoring=provenance)
