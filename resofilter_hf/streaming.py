"""Scoring a stream (`IterableDataset`): a window of rows at a time, each window's scored rows one Parquet part.

The same `ScoringJob` as for a `Dataset` (fingerprinted folder, shards, resume, processes); the folder's key
covers the first window's rows, and each part is the window's rows joined to its scores, written atomically,
so `load_dataset("parquet", data_files=...)` reads the scored stream back in order.
"""

from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset, IterableDataset, concatenate_datasets, load_dataset
from datasets.table import InMemoryTable

from .engine.fingerprint import table_digest
from .engine.rows import STATUS_OK, check_rows_at
from .provenance import write_parquet
from .scoring import WINDOW_ROWS, ScoringJob, without_result_columns


if TYPE_CHECKING:
    from .trainer import ResonanceTrainer


def score_stream(
    trainer: "ResonanceTrainer", stream: IterableDataset, parts_dir: str | None, max_rows: int | None
) -> IterableDataset:
    """Score a stream a window at a time; each window's scored rows become one Parquet part in `parts_dir`."""
    args = trainer.args
    rows = iter(stream if max_rows is None else stream.take(max_rows))
    first = list(islice(rows, WINDOW_ROWS))
    features = stream.features

    def as_dataset(batch: list[dict]) -> Dataset:
        window = Dataset.from_list(batch, features=features) if features else Dataset.from_list(batch)
        return without_result_columns(window, args.resonance_column)

    window_rows = as_dataset(first)
    job = ScoringJob(trainer, table_digest(window_rows.with_format("arrow").iter(batch_size=WINDOW_ROWS)), max_rows)
    out = Path(parts_dir) if parts_dir else Path(args.output_dir) / "scored"
    parts, offset, window, all_statuses = [], 0, 0, []
    while len(window_rows):
        statuses = check_rows_at(window_rows, args.dataset_text_field, offset)
        names = job.run_window(window, window_rows, offset, statuses)
        job.accelerator.wait_for_everyone()
        path = out / f"part-{window:05d}.parquet"
        table = job.join(names, offset, len(window_rows))
        all_statuses += table.column("resonance_status").to_pylist()
        if job.accelerator.is_main_process:
            scored = concatenate_datasets([window_rows, Dataset(InMemoryTable(table))], axis=1)
            n_scored = table.column("resonance_status").to_pylist().count(STATUS_OK)
            provenance = {"scoring": trainer.resonance_provenance(len(window_rows), n_scored)}
            write_parquet(scored, path, provenance)
        parts.append(str(path))
        offset, window = offset + len(window_rows), window + 1
        batch = list(islice(rows, WINDOW_ROWS))
        window_rows = as_dataset(batch) if batch else window_rows.select([])
    job.finish(offset, all_statuses)
    job.accelerator.wait_for_everyone()
    if not parts:
        raise ValueError("score(): the stream has no rows.")
    return load_dataset("parquet", data_files=parts, split="train", streaming=True)
