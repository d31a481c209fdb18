"""The reference set of alignment scores: loaded, checked and tokenized exactly as scored rows are.

A reference set is a small dataset of trusted samples (same formats as a train set). Its rows go through the
trainer's own preparation, so the reference step R is taken on the tokens the trainer would train on.
"""

import dataclasses
import os
import warnings
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from .engine.alignment import attach_reference
from .engine.fingerprint import json_digest
from .engine.rows import ROW_ID, STATUS_OK, check_no_row_id, check_rows
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


def reference_rows(setup, reference: Dataset | str | os.PathLike) -> tuple[list[dict], dict]:
    """The tokenized rows ({"input_ids", "labels", "row"}) of `reference` and what the provenance says about them.

    `setup` is the `ScoringSetup` of the scoring (its row checks and TRL preparation). Rows the scorer could not
    score (empty completions, no loss tokens after truncation) are left out; a set with no usable row is an error.
    Malformed rows fail with the row index, as in `score()`.
    """
    source = str(reference) if isinstance(reference, (str, os.PathLike)) else None
    dataset = load_reference(reference) if source is not None else reference
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`resonance_reference` must be a datasets.Dataset or a path, got {type(dataset).__name__}.")
    try:
        check_no_row_id(dataset.column_names)
        mapping = setup.settings.column_map(dataset, setup.formatting_func)
        dataset = mapping.apply(dataset) if mapping else dataset
        statuses = check_rows(dataset, setup.settings.text_field, setup.formatting_func)
    except ValueError as err:
        raise ValueError(f"`resonance_reference` {err}") from err
    eligible = [i for i, status in enumerate(statuses) if status == STATUS_OK]
    with_ids = dataset.add_column(ROW_ID, list(range(len(dataset)))).select(eligible)
    prepared = setup.prepare(with_ids, True) if eligible else with_ids
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"], "row": r[ROW_ID]} for r in prepared]
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

    def __init__(self, setup, reference: Dataset | str | os.PathLike):
        self.rows, self.info = reference_rows(setup, reference)
        self.digest = self.info.pop("digest")

    @classmethod
    def of(cls, setup, reference=None) -> "ReferenceSet | None":
        """The set given, else the setup's default (`resonance_reference`), else None."""
        reference = reference if reference is not None else setup.settings.reference
        return None if reference is None else cls(setup, reference)

    def attach(self, scorer) -> None:
        """R on the scorer's model state, once. Reference rows whose step is not finite (NaN/inf loss or gradient)
        are left out of R, named in a warning and counted in the provenance."""
        if scorer.spec.reference is not None:
            return
        step = attach_reference(scorer, self.rows)
        left_out = sorted(self.rows[i]["row"] for i in step.nonfinite)
        self.info.update(n_used=step.n_rows, n_nonfinite=len(left_out), fingerprint=step.fingerprint)
        if left_out:
            warnings.warn(
                f"{len(left_out)} of the {len(self.rows)} usable `resonance_reference` rows have a non-finite step "
                f"(NaN/inf loss or gradient) and are left out of the reference step: rows {left_out[:5]}.",
                UserWarning,
                stacklevel=2,
            )


def inflight_reference(setup, recorder, optimizer: str) -> dict | None:
    """In flight: R once, when `train()` starts, from the model as the trainer holds it then: before any step, and
    on resume before the checkpoint's weights are loaded (so a resumed run keeps the first run's R). Under the
    configured transform (`optimizer`: `resonance_optimizer`, also with `resonance_inflight_state="live"`); into
    `recorder`."""
    reference = ReferenceSet.of(setup)
    if reference is None:
        return None
    scorer = setup.scorer()
    transform = dataclasses.replace(scorer.spec.transform, optimizer=optimizer)
    scorer.spec = dataclasses.replace(scorer.spec, transform=transform)
    reference.attach(scorer)
    recorder.spec = dataclasses.replace(recorder.spec, reference=scorer.spec.reference)
    return {**reference.info, "state": "the model before training (before a resumed checkpoint is loaded)"}
