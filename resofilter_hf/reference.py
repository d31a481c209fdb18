"""The reference set of alignment scores: loaded, checked and tokenized exactly as scored rows are.

A reference set is a small dataset of trusted samples (same formats as a train set). Its rows go through the
trainer's own preparation, so the reference step R is taken on the tokens the trainer would train on.
"""

import dataclasses
import os
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from .engine.alignment import attach_reference
from .engine.fingerprint import json_digest
from .engine.rows import ROW_ID, STATUS_OK, check_rows
from .provenance import load_scored


ALIGNMENT_COLUMN = "resonance_alignment"


def load_reference(source: str | os.PathLike) -> Dataset:
    """A local parquet / JSON Lines file or `save_to_disk` folder, else a Hub dataset id (its train split)."""
    path = Path(source)
    if path.exists():
        try:
            dataset = load_scored(path)
        except ValueError as err:
            raise ValueError(f"`resonance_reference`: {err}") from err
        if isinstance(dataset, DatasetDict):
            if "train" not in dataset:
                raise ValueError(f"`resonance_reference` {source} has splits {list(dataset)} and no 'train' split.")
            dataset = dataset["train"]
        return dataset
    return load_dataset(str(source), split="train")


def reference_rows(trainer, reference: Dataset | str | os.PathLike) -> tuple[list[dict], dict]:
    """The tokenized rows ({"input_ids", "labels"}) of `reference` and what the provenance says about them.

    Rows the scorer could not score (empty completions, no loss tokens after truncation) are left out; a set with
    no usable row is an error. Malformed rows fail with the row index, as in `score()`.
    """
    source = str(reference) if isinstance(reference, (str, os.PathLike)) else None
    dataset = load_reference(reference) if source is not None else reference
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`resonance_reference` must be a datasets.Dataset or a path, got {type(dataset).__name__}.")
    try:
        statuses = check_rows(dataset, trainer.args.dataset_text_field)
    except ValueError as err:
        raise ValueError(f"`resonance_reference` {err}") from err
    eligible = [i for i, status in enumerate(statuses) if status == STATUS_OK]
    with_ids = dataset.add_column(ROW_ID, list(range(len(dataset)))).select(eligible)
    prepared = trainer.prepare_scoring_dataset(with_ids) if eligible else with_ids
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in prepared]
    if not rows:
        raise ValueError(
            f"`resonance_reference` has no row to take a step on: all {len(dataset)} rows are empty, truncated away "
            "or without loss tokens."
        )
    info = {
        "source": source or f"datasets.Dataset {dataset._fingerprint}",
        "n_rows": len(dataset),
        "n_used": 0,
        "step": "mean of per-row steps",
        "state": "the scored model state",
        "digest": json_digest([[r["input_ids"], r["labels"]] for r in rows]),  # keys the scoring folder
    }
    return rows, info


class ReferenceSet:
    """A scoring job's reference set: its rows (whose digest keys the scoring folder) and, once `attach`ed to
    the job's scorer (after any settled moments), the mean step R the alignment scores are cosines against."""

    def __init__(self, trainer, reference: Dataset | str | os.PathLike):
        self.rows, self.info = reference_rows(trainer, reference)
        self.digest = self.info.pop("digest")

    @classmethod
    def of(cls, trainer, reference=None) -> "ReferenceSet | None":
        """The set given, else `resonance_reference`, else None."""
        reference = reference if reference is not None else trainer.args.resonance_reference
        return None if reference is None else cls(trainer, reference)

    def attach(self, scorer) -> None:
        if scorer.spec.reference is None:
            step = attach_reference(scorer, self.rows)
            self.info.update(n_used=step.n_rows, fingerprint=step.fingerprint)


def inflight_reference(trainer, recorder) -> dict | None:
    """In flight: R once, when `train()` starts, from the model as the trainer holds it then: before any step, and
    on resume before the checkpoint's weights are loaded (so a resumed run keeps the first run's R). Under the
    configured transform (`resonance_optimizer`, also with `resonance_inflight_state="live"`); into `recorder`."""
    reference = ReferenceSet.of(trainer)
    if reference is None:
        return None
    scorer = trainer.scorer()
    transform = dataclasses.replace(scorer.spec.transform, optimizer=trainer.args.resonance_optimizer)
    scorer.spec = dataclasses.replace(scorer.spec, transform=transform)
    reference.attach(scorer)
    recorder.spec = dataclasses.replace(recorder.spec, reference=scorer.spec.reference)
    return {**reference.info, "state": "the model before training (before a resumed checkpoint is loaded)"}
